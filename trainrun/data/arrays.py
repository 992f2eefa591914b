"""In-memory datasets: nests of NumPy arrays, their preprocessing, and the checks
made on .npy/.npz files before their data is read."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from trainrun.errors import ConfigError

Nest = Any  # an array, or a dict of arrays keyed by model input/output name

NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats


class ArrayFileError(ValueError):
    """An .npy file or .npz member that cannot be read safely; `key` names the member."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def _fmt_shape(shape: tuple) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _check_header(f: IO[bytes], size: int, key: str | None) -> np.dtype:
    """The dtype an .npy stream's header declares, read without touching its data.

    Refuses a header that promises more bytes than the stream has (a truncated
    file, or a hand-made header: believing it would allocate whatever it claims)
    and object arrays, which only pickle could read.
    """
    what = f"array '{key}'" if key is not None else "the array"
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:  # 2.0, and 3.0 (utf-8 field names) has the same layout
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, EOFError, OSError) as exc:
        raise ArrayFileError(f"{what} has no valid .npy header ({exc})", key) from None
    if dtype.hasobject:
        raise ArrayFileError(
            f"{what} holds Python objects (dtype {dtype}), which only pickle can read, and "
            "trainrun never unpickles data files; save a numeric array instead "
            "(rows of equal length: np.stack(rows).astype('float32'))",
            key,
        )
    needed = math.prod(shape) * dtype.itemsize
    held = size - f.tell()
    if needed > held:
        raise ArrayFileError(
            f"{what}'s header declares shape {_fmt_shape(shape)} of {dtype} ({needed:,} bytes), "
            f"but only {max(held, 0):,} bytes follow it: the file is truncated or damaged",
            key,
        )
    return dtype


def check_array_file(path: Path) -> dict[str | None, np.dtype]:
    """Check an .npy file, or every member of an .npz, before reading it.

    Returns the dtype of each array (key None for an .npy file). Raises
    ArrayFileError naming the member at fault.
    """
    path = Path(path)
    if path.suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as z:
                out: dict[str | None, np.dtype] = {}
                for info in z.infolist():
                    key = info.filename.removesuffix(".npy")
                    with z.open(info) as member:
                        out[key] = _check_header(member, info.file_size, key)
                return out
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise ArrayFileError(f"not a complete .npz (zip) file: {exc}") from None
    with path.open("rb") as f:
        return {None: _check_header(f, path.stat().st_size, None)}


def scale_array(a: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """`data.scale` on an array, as the pipeline does it: float32, then one divisor, or
    one per feature of the last axis."""
    return a.astype(np.float32) / np.asarray(scale, np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """`data.flatten` / `reshape` / `scale` on NumPy inputs: written once, for the arrays
    a run trains on, the batch its checks build with, the samples a layer adapts on
    and the inputs of `trainrun predict`. (A tf.data dataset gets the same steps as
    tensor ops in `pipeline.scaled`.)"""

    flatten: bool = False
    reshape: tuple[int, ...] | None = None
    scale: float | np.ndarray | None = None  # one divisor, or float32 divisors of the last axis

    @classmethod
    def of(cls, data: Any) -> Preprocessing:
        """From a config's `data` section."""
        scale = np.asarray(data.scale, np.float32) if isinstance(data.scale, list) else data.scale
        return cls(bool(data.flatten), tuple(data.reshape) if data.reshape else None, scale)

    def shaped(self, a: np.ndarray) -> np.ndarray:
        """Flatten or reshape each sample; ValueError naming both shapes if it cannot."""
        if not (self.flatten or self.reshape):
            return a
        # flatten names the size: -1 cannot be inferred for 0 samples
        shape = (math.prod(a.shape[1:]),) if self.flatten else tuple(self.reshape or ())
        try:
            return a.reshape((len(a), *shape))
        except ValueError as exc:
            raise ValueError(
                f"cannot reshape inputs of shape {a.shape[1:]} to {list(shape)}"
            ) from exc

    def scaled(self, a: np.ndarray) -> np.ndarray:
        return a if self.scale is None else scale_array(a, self.scale)

    def steps(self) -> str:
        """What is done, in order, for a reader: 'flatten, divide by 255'."""
        steps = []
        if self.flatten:
            steps.append("flatten")
        elif self.reshape:
            steps.append(f"reshape to {list(self.reshape)}")
        if self.scale is not None:
            steps.append(f"divide by {fmt_scale(self.scale)}")
        return ", ".join(steps)


def fmt_scale(scale: Any) -> str:
    if np.ndim(scale):
        return f"[{', '.join(f'{float(s):g}' for s in np.ravel(scale))}]"
    return f"{float(scale):g}"


def check_scale(scale: Any, shape: tuple) -> None:
    """A list of divisors must have one per feature of the last axis (ValueError if not)."""
    if np.ndim(scale) == 0:
        return
    n = len(scale)
    last = shape[-1] if shape else None
    if last is not None and last != n:
        raise ValueError(
            f"data.scale has {n} divisors, but the inputs have {last} features on their "
            f"last axis (samples of shape {_fmt_shape(tuple(shape))}); give one divisor per "
            "feature, or one number for all"
        )
    if not shape:
        raise ValueError(
            f"data.scale has {n} divisors, but the inputs are single values; give one number"
        )


def one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    """Integer class labels (N,) or (N, 1) -> float32 one-hot rows (N, classes), as
    keras.utils.to_categorical; ValueError saying what is wrong with the labels."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(
            f"labels of shape {_fmt_shape(y.shape[1:])} per sample are not class indices "
            "(one integer per sample); are they one-hot already?"
        )
    if y.dtype.kind not in "biuf":
        raise ValueError(f"labels of dtype {y.dtype} are not class indices")
    if y.dtype.kind == "f" and len(y) and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise ValueError("labels are not whole numbers, so not class indices")
    labels = y.astype(np.int64)
    if len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise ValueError(f"labels include {low}; class indices start at 0")
        if high >= classes:
            raise ValueError(
                f"labels go up to {high}, beyond {classes} classes (0 to {classes - 1})"
            )
    out = np.zeros((len(labels), classes), np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def _leaves(nest: Nest) -> list[np.ndarray]:
    if isinstance(nest, dict):
        return [v for v in nest.values()]
    return [nest]


def _map(fn, nest: Nest) -> Nest:
    if isinstance(nest, dict):
        return {k: fn(v) for k, v in nest.items()}
    return fn(nest)


@dataclass
class ArraySplit:
    """One split held in memory. `x`/`y` are arrays or dicts of arrays."""

    x: Nest
    y: Nest | None = None
    sample_weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(_leaves(self.x)[0])

    def take(self, n: int | None) -> ArraySplit:
        if n is None or n >= len(self):
            return self
        cut = lambda a: a[:n]  # noqa: E731 - views, no copies
        return ArraySplit(
            _map(cut, self.x),
            None if self.y is None else _map(cut, self.y),
            None if self.sample_weight is None else self.sample_weight[:n],
        )

    def split_off(self, fraction: float) -> tuple[ArraySplit, ArraySplit | None]:
        """Keras' validation_split: the last `fraction` of samples, before any shuffling."""
        if not fraction:
            return self, None
        n = len(self)
        at = int(math.ceil(n * (1.0 - fraction)))
        if at >= n > 0:
            need = next(m for m in range(2, 10**9) if math.ceil(m * (1.0 - fraction)) < m)
            raise ConfigError(
                f"validation_split {fraction:g} of {n} training sample{'s' if n != 1 else ''} "
                f"leaves no sample for validation; it needs at least {need} training samples "
                "(data.limit.train, if set, counts before the split): give more samples, "
                "or set data.validation_split: 0",
                path="data.validation_split",
            )
        head = lambda a: a[:at]  # noqa: E731
        tail = lambda a: a[at:]  # noqa: E731
        parts = []
        for fn in (head, tail):
            parts.append(
                ArraySplit(
                    _map(fn, self.x),
                    None if self.y is None else _map(fn, self.y),
                    None if self.sample_weight is None else fn(self.sample_weight),
                )
            )
        return parts[0], parts[1]

    def map_x(self, fn) -> ArraySplit:
        """The split with `fn` applied to each of its input arrays."""
        return ArraySplit(_map(fn, self.x), self.y, self.sample_weight)

    def with_labels(self, y: Nest) -> ArraySplit:
        return ArraySplit(self.x, y, self.sample_weight)

    def input_shapes(self) -> Nest:
        return _map(lambda a: tuple(a.shape[1:]), self.x)
