"""`trainrun predict`: a run's saved model on arrays from a .npy or .npz file.

Inputs get the run's own preprocessing (data.flatten / reshape / scale, as
training applied it) unless `preprocess=False`, and are checked against the
model's input shapes before predicting. A single-output model writes one .npy
file; a multi-output model writes one file per output, named after it.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainrun.config import LoadedConfig, load_config
from trainrun.engine.saved import (
    Checkpoint,
    choose_checkpoint,
    load_model,
    model_inputs,
    output_names,
)
from trainrun.errors import DataError
from trainrun.runs.files import write_atomic
from trainrun.runs.rundir import RunDir


@dataclass
class Prediction:
    checkpoint: Checkpoint
    samples: int
    files: dict[str, Path] = field(default_factory=dict)  # output name -> file
    shapes: dict[str, tuple] = field(default_factory=dict)
    preprocessing: str = ""


def _fmt_shape(shape: tuple) -> str:
    parts = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def read_inputs(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy array, or the arrays of an .npz file by key."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    if path.suffix not in (".npy", ".npz"):
        raise DataError(f"{path.name}: expected an .npy array or an .npz file of named arrays")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as {path.suffix}: {exc}") from None


def match_inputs(
    raw: np.ndarray | dict[str, np.ndarray], inputs: list[tuple[str, tuple]], source: Path
) -> dict[str, np.ndarray]:
    """Input name -> array: an .npy for a one-input model, .npz keys by input name."""
    names = [n for n, _ in inputs]
    if isinstance(raw, np.ndarray):
        if len(inputs) != 1:
            raise DataError(
                f"{source.name} holds one array, but the model has {len(inputs)} inputs "
                f"({', '.join(f'{n} {_fmt_shape(s)}' for n, s in inputs)}); give an .npz file "
                f"with one array per input name: np.savez(file, {'=..., '.join(names)}=...)"
            )
        return {names[0]: raw}
    if len(inputs) == 1:
        for key in (names[0], "x"):
            if key in raw:
                return {names[0]: raw[key]}
        if len(raw) == 1:
            return {names[0]: next(iter(raw.values()))}
        raise DataError(
            f"{source.name} has arrays {', '.join(raw) or 'none'}; for this one-input model "
            f"name the array '{names[0]}' or 'x', or give an .npy file"
        )
    missing = [n for n in names if n not in raw]
    if missing:
        raise DataError(
            f"{source.name} lacks arrays for model input(s) {', '.join(missing)}; it has: "
            f"{', '.join(raw) or 'none'}; the model's inputs are {', '.join(names)}"
        )
    return {n: raw[n] for n in names}


def preprocess(
    arrays: dict[str, np.ndarray], loaded: LoadedConfig
) -> tuple[dict[str, np.ndarray], str]:
    """Training's x preprocessing, in the order the data pipeline applies it."""
    cfg = loaded.config.data
    steps = []
    out = {}
    for name, a in arrays.items():
        if cfg.flatten:
            a = a.reshape((len(a), -1))
        elif cfg.reshape:
            try:
                a = a.reshape((len(a), *cfg.reshape))
            except ValueError:
                raise DataError(
                    f"input '{name}' of shape {a.shape} cannot be reshaped to "
                    f"(N, {', '.join(map(str, cfg.reshape))}) as the run's data.reshape says"
                ) from None
        if cfg.scale is not None:
            a = a.astype(np.float32) / np.float32(cfg.scale)
        out[name] = a
    if cfg.flatten:
        steps.append("flatten")
    elif cfg.reshape:
        steps.append(f"reshape to {cfg.reshape}")
    if cfg.scale is not None:
        steps.append(f"divide by {cfg.scale:g}")
    return out, ", ".join(steps)


def check_shapes(
    arrays: dict[str, np.ndarray],
    inputs: list[tuple[str, tuple]],
    note: str,
    given: dict[str, tuple] | None = None,
) -> int:
    """Number of samples; a DataError naming the input if a shape does not fit."""
    counts = set()
    for name, expected in inputs:
        a = arrays[name]
        if a.ndim == 0:
            raise DataError(f"input '{name}' is a scalar; give an array of samples")
        got = tuple(a.shape[1:])
        want = tuple(expected[1:])
        if len(got) != len(want) or any(
            w is not None and g != w for g, w in zip(got, want, strict=False)
        ):
            after = ""
            if note:
                raw = (given or {}).get(name)
                after = f" ({_fmt_shape(raw)} given, then the run's preprocessing: {note})"
            raise DataError(
                f"input '{name}' has samples of shape {_fmt_shape(got)}{after}, but the model "
                f"expects {_fmt_shape(want)} per sample (input shape {_fmt_shape(expected)})"
            )
        counts.add(len(a))
    if len(counts) > 1:
        raise DataError(f"the inputs have different numbers of samples: {sorted(counts)}")
    n = counts.pop()
    if n == 0:
        raise DataError("the input holds no samples")
    return n


def output_files(out: Path, names: list[str]) -> dict[str, Path]:
    """One output: OUT itself; several: OUT.<name>.npy beside it."""
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    if len(names) == 1:
        return {names[0]: out}
    return {n: out.with_name(f"{out.stem}.{n}.npy") for n in names}


def _as_outputs(preds: Any, names: list[str]) -> dict[str, np.ndarray]:
    if isinstance(preds, dict):
        return {k: np.asarray(preds[k]) for k in names if k in preds} or {
            k: np.asarray(v) for k, v in preds.items()
        }
    if isinstance(preds, list | tuple):
        return {
            names[i] if i < len(names) else f"output_{i}": np.asarray(p)
            for i, p in enumerate(preds)
        }
    return {names[0] if names else "output": np.asarray(preds)}


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())


def predict(
    run: RunDir,
    source: Path,
    *,
    out: Path | None = None,
    checkpoint: str = "last",
    use_preprocessing: bool = True,
) -> Prediction:
    """Predict on `source`; default output: <run>/predictions/<input stem>.npy."""
    loaded = load_config(run.config_file)
    chosen = choose_checkpoint(run, loaded, checkpoint)
    raw = read_inputs(source)
    model = load_model(run, loaded, chosen)
    inputs = model_inputs(model)
    arrays = match_inputs(raw, inputs, source)
    given = {n: tuple(a.shape) for n, a in arrays.items()}
    note = ""
    if use_preprocessing:
        arrays, note = preprocess(arrays, loaded)
    samples = check_shapes(arrays, inputs, note, given)
    feed: Any = arrays if len(arrays) > 1 else next(iter(arrays.values()))
    preds = model.predict(feed, batch_size=loaded.config.fit.batch_size, verbose=0)
    outputs = _as_outputs(preds, output_names(model))
    target = out if out is not None else run.path / "predictions" / f"{source.stem}.npy"
    files = output_files(target, list(outputs))
    for name, array in outputs.items():
        _save_npy(files[name], array)
    return Prediction(
        checkpoint=chosen,
        samples=samples,
        files=files,
        shapes={n: tuple(a.shape) for n, a in outputs.items()},
        preprocessing=note,
    )
