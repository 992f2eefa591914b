"""What `trainrun resume` restores, and how it is written so a kill never breaks it.

A saved state is a directory ``state/ckpt-NNNNNN/`` holding

* ``arrays.npz``: every variable of the model (weights, non-trainable
  variables and Dropout's seed-generator state), of the optimizer (iterations,
  learning rate, moments), the metric accumulators of the epoch in progress,
  array-valued callback state (EarlyStopping's best weights) and NumPy's RNG;
* ``meta.json``: epoch and step within it, the history so far, each stateful
  callback's scalars, Python's RNG state.

``state/LATEST`` names the newest complete directory and is replaced
atomically after that directory is fsynced; older directories are removed only
then. A kill at any instant therefore leaves LATEST pointing at a complete
state. Loading falls back to the newest complete directory if LATEST is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainrun.errors import RunDirError
from trainrun.runs.files import fsync_dir, write_atomic

META = "meta.json"
ARRAYS = "arrays.npz"


@dataclass
class Snapshot:
    epoch: int  # the epoch in progress (or the next one when step == 0)
    step: int  # optimizer steps already taken within `epoch`
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


class StateStore:
    """The state/ directory of a run."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def _complete(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(
            p for p in self.dir.glob("ckpt-*") if (p / META).is_file() and (p / ARRAYS).is_file()
        )

    def save(self, snap: Snapshot) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        existing = self._complete()
        seq = int(existing[-1].name.split("-")[1]) + 1 if existing else 1
        target = self.dir / f"ckpt-{seq:06d}"
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        with open(target / ARRAYS, "wb") as f:
            np.savez(f, **snap.arrays)
            f.flush()
            os.fsync(f.fileno())
        meta = {"epoch": snap.epoch, "step": snap.step, **snap.meta}
        write_atomic(
            target / META, json.dumps(meta, allow_nan=True)
        )  # written last: marks complete
        fsync_dir(self.dir)
        write_atomic(self.dir / "LATEST", target.name)
        for old in self.dir.glob("ckpt-*"):
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target

    def load(self) -> Snapshot | None:
        candidates = self._complete()
        with contextlib.suppress(OSError):
            latest = self.dir / (self.dir / "LATEST").read_text().strip()
            if latest in candidates:
                candidates.remove(latest)
                candidates.append(latest)
        for path in reversed(candidates):
            try:
                meta = json.loads((path / META).read_text())
                with np.load(path / ARRAYS, allow_pickle=False) as f:
                    arrays = {k: f[k] for k in f.files}
            except (OSError, ValueError, json.JSONDecodeError):
                continue  # damaged: fall back to an older complete one
            return Snapshot(meta.pop("epoch"), meta.pop("step"), arrays, meta)
        return None


# ---------------------------------------------------------------- variables


def training_variables(model: Any) -> dict[str, Any]:
    """Every variable whose value a bitwise-exact continuation needs, by stable key."""
    out: dict[str, Any] = {}
    for i, v in enumerate(model.variables):  # includes seed-generator states
        out[f"model/{i}"] = v
    if model.optimizer is not None:
        for i, v in enumerate(model.optimizer.variables):
            out[f"optimizer/{i}"] = v
    for i, v in enumerate(model.metrics_variables):
        out[f"metrics/{i}"] = v
    return out


def read_variables(model: Any) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        for k, v in training_variables(model).items()
    }


def assign_variables(
    model: Any, arrays: dict[str, np.ndarray], *, prefixes: tuple[str, ...]
) -> None:
    variables = training_variables(model)
    for key, var in variables.items():
        if not key.startswith(prefixes):
            continue
        if key not in arrays:
            raise RunDirError(
                f"the saved state has no value for {key} ({var.path}); the model in config.yaml "
                "no longer matches the saved run"
            )
        value = arrays[key]
        if tuple(value.shape) != tuple(var.shape):
            raise RunDirError(
                f"saved state for {var.path} has shape {value.shape}, the model has {tuple(var.shape)}"
            )
        var.assign(value)


# ---------------------------------------------------------------- RNG


def rng_state() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, int(pos), int(has_gauss), float(cached)],
    }
    return meta, {"rng/numpy": keys}


def set_rng_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in meta and "rng/numpy" in arrays:
        kind, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, arrays["rng/numpy"], pos, has_gauss, cached))


# ---------------------------------------------------------------- callbacks

# Attributes that make up each Keras callback's state between epochs.
CALLBACK_ATTRS: dict[str, tuple[str, ...]] = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": (
        "best",
        "_last_batch_seen",
        "_batches_seen_since_last_saving",
        "_current_epoch",
    ),
    "TensorBoard": ("_global_train_batch",),
}


def _callback_attrs(cb: Any) -> tuple[str, ...]:
    for klass in type(cb).__mro__:
        if klass.__name__ in CALLBACK_ATTRS and klass.__module__.startswith("keras"):
            return CALLBACK_ATTRS[klass.__name__]
    return ()


def callback_state(callbacks: list[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
    """JSON state per callback (by position), and array parts (best weights)."""
    metas: list[Any] = []
    arrays: dict[str, np.ndarray] = {}
    for i, cb in enumerate(callbacks):
        entry: dict[str, Any] = {"class": type(cb).__name__}
        for attr in _callback_attrs(cb):
            if not hasattr(cb, attr):
                continue
            value = getattr(cb, attr)
            if attr == "best_weights":
                if value is not None:
                    for j, w in enumerate(value):
                        arrays[f"callbacks/{i}/best_weights/{j}"] = np.asarray(w)
                entry["best_weights"] = None if value is None else len(value)
            else:
                entry[attr] = (
                    value.item()
                    if isinstance(value, np.generic)
                    else (float(value) if hasattr(value, "numpy") else value)
                )
        if callable(getattr(cb, "get_state", None)):
            entry["custom"] = cb.get_state()
        metas.append(entry)
    return metas, arrays


def set_callback_state(
    callbacks: list[Any], metas: list[Any], arrays: dict[str, np.ndarray]
) -> None:
    for i, (cb, entry) in enumerate(zip(callbacks, metas, strict=False)):
        if entry.get("class") != type(cb).__name__:
            continue  # the callback list changed; leave this one fresh
        for attr, value in entry.items():
            if attr in ("class", "custom"):
                continue
            if attr == "best_weights":
                if value is not None:
                    setattr(
                        cb, attr, [arrays[f"callbacks/{i}/best_weights/{j}"] for j in range(value)]
                    )
                continue
            setattr(cb, attr, value)
        if "custom" in entry and callable(getattr(cb, "set_state", None)):
            cb.set_state(entry["custom"])
