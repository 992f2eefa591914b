"""In-memory data kept on the JAX device: batches gathered there, not copied per step.

`DeviceGather` is `numpy_feed._Gather` on the device: the split's arrays are put
on the accelerator once, and each batch is one jitted gather there, so training
moves only the batch's sample indices from the host. Its batches are bitwise
those of the NumPy feed, so a run gives the same result with its data on the
device or not, and a run resumed either way continues exactly:

- unscaled arrays are gathered as they are;
- uint8 arrays with one divisor (MNIST's ``scale: 255``) go to the device as
  uint8, with a 256-entry table of ``float32(v) / scale`` computed in NumPy; a
  batch is looked up in it. (XLA's float division on the CPU is not correctly
  rounded, NumPy's is, so dividing on the device would differ in the last bit.)
- other scaled arrays are scaled once in NumPy, as float32, before they go.

`placement` decides, for ``data.on_device: auto``, whether the arrays fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainrun.data.arrays import ArraySplit

# 'auto' keeps the data on an accelerator when it takes at most this share of the
# device memory that is free.
AUTO_SHARE = 0.5


def nbytes(splits: list[ArraySplit], scale: float | np.ndarray | None) -> int:
    """The bytes the arrays of `splits` take on the device (see `DeviceGather`)."""
    from trainrun.data.numpy_feed import _parts

    total = 0
    for split in splits:
        x, *rest = _parts(split)
        if scale is not None and not _by_table(x, scale):
            total += sum(a.size * 4 for a in _leaves(x))  # scaled to float32 before it goes
        else:
            total += sum(a.nbytes for a in _leaves(x))
        total += sum(a.nbytes for part in rest for a in _leaves(part))
    return total


def _leaves(nest: np.ndarray | dict[str, np.ndarray]) -> list[np.ndarray]:
    return list(nest.values()) if isinstance(nest, dict) else [nest]


def _by_table(x: np.ndarray | dict[str, np.ndarray], scale: float | np.ndarray) -> bool:
    """Whether x is scaled on the device by a 256-entry table (uint8, one divisor)."""
    return np.ndim(scale) == 0 and all(a.dtype == np.uint8 for a in _leaves(x))


def free_bytes() -> int | None:
    """Free memory of JAX's first device (an accelerator), or None where it is not told."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    if limit is None:
        return None
    return int(limit) - int(stats.get("bytes_in_use", 0))


def placement(setting: str | bool, size: int) -> tuple[bool, str | None]:
    """(whether the data goes to the device, a note for the run) for `data.on_device`:
    `auto` puts it on an accelerator where it fits, never on the CPU."""
    if isinstance(setting, bool):
        return setting, None
    import jax

    if jax.devices()[0].platform == "cpu":
        return False, None
    free = free_bytes()
    if free is None:
        return False, "data.on_device: auto: the device's free memory is unknown; data kept on host"
    if size <= AUTO_SHARE * free:
        return True, None
    return False, (
        f"data.on_device: auto: the in-memory data ({size / 2**30:.2f} GiB) is more than "
        f"{AUTO_SHARE:.0%} of the device's free memory ({free / 2**30:.2f} GiB); it stays in "
        "host memory and each batch is copied to the device (data.on_device: true forces it)"
    )


class DeviceGather:
    """`numpy_feed._Gather` with the split on the device: one jitted gather a batch."""

    def __init__(self, split: ArraySplit, scale: float | np.ndarray | None) -> None:
        import jax
        import jax.numpy as jnp

        from trainrun.data.numpy_feed import _map, _parts

        parts = _parts(split)
        scale = None if scale is None else np.asarray(scale, np.float32)
        table = None
        x = parts[0]
        if scale is not None:
            if _by_table(x, scale):
                table = np.arange(256, dtype=np.float32) / scale
            else:
                x = _map(lambda a: a.astype(np.float32) / scale, x)
        self.parts = jax.device_put((x, *parts[1:]))
        self.table = None if table is None else jax.device_put(table)

        def gather(parts: tuple, table: Any, index: Any) -> tuple:
            taken = tuple(_map(lambda a: jnp.take(a, index, axis=0), p) for p in parts)
            if table is not None:
                taken = (_map(lambda a: table[a], taken[0]), *taken[1:])
            return taken

        self._gather = jax.jit(gather)

    def __call__(self, index: np.ndarray) -> tuple:
        return self._gather(self.parts, self.table, index.astype(np.int32))
