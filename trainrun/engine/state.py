"""What `trainrun resume` restores, and how it is written so a kill never breaks it.

A saved state is a directory ``state/ckpt-NNNNNN/`` holding

* ``arrays.npz``: every variable of the model (weights, non-trainable
  variables and Dropout's seed-generator state), of the optimizer (iterations,
  learning rate, moments), the metric accumulators of the epoch in progress,
  array-valued callback state (EarlyStopping's best weights), NumPy's RNG and,
  on the torch backend, torch's (its unseeded Dropout draws from it);
* ``meta.json``: epoch and step within it, the history so far, each stateful
  callback's scalars, Python's RNG state.

``state/LATEST`` names the newest complete directory and is replaced
atomically after that directory is fsynced; only then are directories older
than the previous one removed, so two complete states are always kept. A kill
at any instant therefore leaves LATEST pointing at a complete state. Loading
checks what it reads (a damaged file, or a meta.json whose epoch, step,
history or types are wrong) and falls back to the previous state; when no
state is usable it refuses rather than start the run over.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import zipfile
from collections.abc import Callable
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


KEEP = 2  # complete states kept: the newest, and the one to fall back to


class StateStore:
    """The state/ directory of a run."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        # States `load` passed over, newest first, with why: (directory, reason).
        self.skipped: list[tuple[Path, str]] = []

    def _complete(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(
            p for p in self.dir.glob("ckpt-*") if (p / META).is_file() and (p / ARRAYS).is_file()
        )

    def exists(self) -> bool:
        """Whether any state directory (complete or not) is here."""
        return self.dir.is_dir() and any(self.dir.glob("ckpt-*"))

    def _latest_name(self) -> str | None:
        try:
            return (self.dir / "LATEST").read_text().strip() or None
        except OSError:
            return None

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
        previous = self._latest_name()
        write_atomic(self.dir / "LATEST", target.name)
        keep = {target.name}
        if previous and (self.dir / previous) in existing:
            keep.add(previous)  # the state to fall back to if this one is damaged later
        for old in reversed(existing):
            if len(keep) >= KEEP:
                break
            keep.add(old.name)
        for old in self.dir.glob("ckpt-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return target

    def _candidates(self) -> list[Path]:
        """Complete states, oldest first, LATEST last."""
        candidates = self._complete()
        latest = self._latest_name()
        if latest and self.dir / latest in candidates:
            candidates.remove(self.dir / latest)
            candidates.append(self.dir / latest)
        return candidates

    def positions(self) -> list[tuple[int, int]]:
        """(epoch, step) of each complete state whose meta.json reads, newest first: what
        the workers of a cluster compare to find the newest state they all have."""
        found = (_position(path) for path in reversed(self._candidates()))
        return [p for p in found if p is not None]  # load() says why one is unreadable

    def load(
        self,
        *,
        max_epoch: int | None = None,
        check: Callable[[Snapshot], str | None] | None = None,
        at: tuple[int, int] | None = None,
    ) -> Snapshot | None:
        """The newest usable state; None when there is none at all.

        LATEST first, then older complete directories. A state whose files are
        damaged, whose meta.json fails `validate_meta`, or that `check` rejects
        is skipped (and listed in `self.skipped`). When states exist but none is
        usable, raises RunDirError naming each one and why: resuming from the
        start instead would silently throw the run's progress away. `at`: the
        state of that (epoch, step), newer ones passed over (kept, not skipped).
        """
        self.skipped = []
        candidates = self._candidates()
        if at is not None:
            candidates = [p for p in candidates if (pos := _position(p)) is None or pos <= at]
        for path in reversed(candidates):
            snap, reason = _read(path, max_epoch)
            if snap is not None and check is not None:
                reason = check(snap)
            if reason is None and snap is not None:
                return snap
            self.skipped.append((path, reason or "unreadable"))
        if self.skipped:
            raise RunDirError(damaged_message(self.dir, self.skipped))
        return None

    def set_aside(self, path: Path) -> Path:
        """Rename a damaged state out of the way (kept for inspection, never loaded again)."""
        dest = self.dir / f"damaged-{path.name}"
        n = 1
        while dest.exists():
            n += 1
            dest = self.dir / f"damaged-{path.name}.{n}"
        os.replace(path, dest)
        fsync_dir(self.dir)
        return dest


def damaged_message(directory: Path, skipped: list[tuple[Path, str]]) -> str:
    run = directory.parent
    what = "; ".join(f"{p.name}: {why}" for p, why in skipped)
    return (
        f"no usable resume state in {directory} ({what}); resuming from the start would "
        f"silently drop the run's progress, so it is refused. Put back {directory} from a "
        f"backup, or train again as a new run: trainrun fit {run / 'config.yaml'}"
    )


def _position(path: Path) -> tuple[int, int] | None:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        return int(meta["epoch"]), int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read(path: Path, max_epoch: int | None) -> tuple[Snapshot | None, str | None]:
    try:
        meta = json.loads((path / META).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{META} is unreadable ({exc})"
    reason = validate_meta(meta, max_epoch=max_epoch)
    if reason is not None:
        return None, f"{META}: {reason}"
    try:
        # Opened here: np.load leaks the file it opened when the zip is bad.
        with (path / ARRAYS).open("rb") as fh, np.load(fh, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return None, f"{ARRAYS} is unreadable ({type(exc).__name__}: {exc})"
    bad = [k for k, v in arrays.items() if v.dtype.kind not in "biuf"]
    if bad:
        return None, f"{ARRAYS} holds non-numeric arrays ({', '.join(bad[:3])})"
    if "rng/numpy" in arrays and arrays["rng/numpy"].shape != (624,):
        return None, f"{ARRAYS}: rng/numpy has shape {arrays['rng/numpy'].shape}, not (624,)"
    return Snapshot(meta.pop("epoch"), meta.pop("step"), arrays, meta), None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_meta(meta: Any, *, max_epoch: int | None = None) -> str | None:
    """What is wrong with a state's meta.json as read back, or None when it is usable.

    A state is only ever saved with the epoch in progress, the steps taken in it,
    and one history row per finished epoch (0 .. epoch-1): anything else was
    damaged or edited, and resuming from it would corrupt the run.
    """
    if not isinstance(meta, dict):
        return f"expected a JSON object, got {type(meta).__name__}"
    epoch, step = meta.get("epoch"), meta.get("step")
    if not _is_int(epoch) or epoch < 0:
        return f"epoch is {epoch!r}, expected a whole number >= 0"
    if max_epoch is not None and epoch > max_epoch:
        return f"epoch is {epoch}, beyond the run's {max_epoch} epochs"
    if not _is_int(step) or step < 0:
        return f"step is {step!r}, expected a whole number >= 0"
    history = meta.get("history", [])
    if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
        return "history is not a list of rows"
    epochs = [r.get("epoch") for r in history]
    if epochs != list(range(epoch)):
        return (
            f"history has rows for epochs {epochs[:8]}, expected 0 .. {epoch - 1} for epoch {epoch}"
        )
    for row in history:
        bad = [k for k, v in row.items() if not isinstance(k, str) or not _is_number(v)]
        if bad:
            return f"history row {row['epoch']} has non-numeric {bad[0]!r}"
    callbacks = meta.get("callbacks", [])
    if not isinstance(callbacks, list) or not all(
        isinstance(c, dict) and isinstance(c.get("class"), str) for c in callbacks
    ):
        return "callbacks is not a list of {class: ...} entries"
    rng = meta.get("rng", {})
    if not isinstance(rng, dict) or not _valid_rng(rng):
        return "rng is not the saved RNG state"
    seconds = meta.get("train_seconds", 0.0)
    if not _is_number(seconds) or not seconds >= 0:
        return f"train_seconds is {seconds!r}, expected seconds >= 0"
    return None


def _valid_rng(rng: dict[str, Any]) -> bool:
    py, npy = rng.get("python"), rng.get("numpy")
    if py is not None and not (
        isinstance(py, list)
        and len(py) == 3
        and _is_int(py[0])
        and isinstance(py[1], list)
        and len(py[1]) == 625
        and all(_is_int(v) and 0 <= v < 2**32 for v in py[1])
        and (py[2] is None or _is_number(py[2]))
    ):
        return False
    return npy is None or (
        isinstance(npy, list)
        and len(npy) == 4
        and npy[0] == "MT19937"
        and _is_int(npy[1])
        and 0 <= npy[1] <= 624
        and _is_int(npy[2])
        and _is_number(npy[3])
    )


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
    return meta, {"rng/numpy": keys, **_torch_rng_state()}


def set_rng_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    if "python" in meta:
        version, internal, gauss = meta["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in meta and "rng/numpy" in arrays:
        kind, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((kind, arrays["rng/numpy"], pos, has_gauss, cached))
    set_torch_rng_state(arrays)


def _torch_rng_state() -> dict[str, np.ndarray]:
    """torch's global generators, where torch is in use: Keras' torch backend draws
    an unseeded Dropout's mask from them (`torch.nn.functional.dropout`), not from
    a SeedGenerator variable as on TensorFlow and JAX."""
    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    out = {"rng/torch": torch.get_rng_state().numpy()}
    if torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/torch_cuda/{i}"] = state.numpy()
    return out


def set_torch_rng_state(arrays: dict[str, np.ndarray]) -> None:
    """torch's global generators as `_torch_rng_state` saved them (nothing where torch
    is not in use, or the state has none)."""
    torch = sys.modules.get("torch")
    if torch is None or "rng/torch" not in arrays:
        return
    torch.set_rng_state(torch.from_numpy(np.array(arrays["rng/torch"], np.uint8)))
    prefix = "rng/torch_cuda/"
    cuda = sorted((k for k in arrays if k.startswith(prefix)), key=lambda k: int(k[len(prefix) :]))
    if cuda and torch.cuda.is_available():
        states = [torch.from_numpy(np.array(arrays[k], np.uint8)) for k in cuda]
        torch.cuda.set_rng_state_all(states[: torch.cuda.device_count()])


# ---------------------------------------------------------------- callbacks


def callback_state(callbacks: list[Any]) -> tuple[list[Any], dict[str, np.ndarray]]:
    """JSON state per callback (by position), and array parts (best weights)."""
    from trainrun import keras_compat  # imports Keras; the state store itself does not

    metas: list[Any] = []
    arrays: dict[str, np.ndarray] = {}
    for i, cb in enumerate(callbacks):
        entry: dict[str, Any] = {"class": type(cb).__name__}
        for attr in keras_compat.callback_state_attributes(cb):
            if not hasattr(cb, attr):  # not set until training begins
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
