"""`trainrun predict`: a run's saved model on arrays from a .npy or .npz file.

Inputs get the run's own preprocessing (data.flatten / reshape / scale, as
training applied it) unless `preprocess=False`, and are checked against the
model's input shapes before predicting. Input that looks scaled already
(floats in [0, 1] where training divided raw integers by `data.scale`) is
refused: dividing it again gives confident nonsense. A single-output model
writes one .npy file; a multi-output model writes one file per output, named
after it; where they go is checked before the model runs.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainrun.builders.compile import output_names
from trainrun.config import LoadedConfig, load_config
from trainrun.data.arrays import NUMERIC_KINDS, ArrayFileError, check_array_file, fmt_scale
from trainrun.data.feed import Batching, preprocess, raw_x_dtypes
from trainrun.engine.saved import (
    Checkpoint,
    choose_checkpoint,
    load_model,
    model_inputs,
)
from trainrun.errors import DataError, RunError
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
        check_array_file(path)  # before any data is read: a header may claim terabytes
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            arrays: np.ndarray | dict[str, np.ndarray] = loaded
        else:
            with loaded:
                arrays = {k: loaded[k] for k in loaded.files}
    except ArrayFileError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as {path.suffix}: {exc}") from None
    except MemoryError:
        raise DataError(
            f"{path} is too large to load into memory; predict on parts of it"
        ) from None
    for key, a in arrays.items() if isinstance(arrays, dict) else [(None, arrays)]:
        what = f"array '{key}' of {path.name}" if key is not None else path.name
        if a.dtype.kind not in NUMERIC_KINDS + TEXT_KINDS:
            raise DataError(
                f"{what} holds {a.dtype} values ({_kind(a.dtype)}); predict needs numbers "
                "(integers or floats), or text for a model whose input is text"
            )
        if a.ndim == 0:
            raise DataError(
                f"{what} is a 0-d array (one value); give an array of samples, shape (N, ...)"
            )
        if len(a) == 0:
            raise DataError(f"{what} holds no samples: its shape is {_fmt_shape(a.shape)}")
    return arrays


TEXT_KINDS = "US"  # str and bytes arrays: inputs of a text model (dtype string)


def check_dtypes(arrays: dict[str, np.ndarray], model: Any, source: Path) -> None:
    """Text for a model input of dtype string, numbers for every other input."""
    wanted = {t.name: str(t.dtype) for t in model.inputs}
    for name, a in arrays.items():
        text_input = wanted.get(name) == "string"
        if text_input and a.dtype.kind not in TEXT_KINDS:
            raise DataError(
                f"{source.name}: model input '{name}' takes text (dtype string), but the array "
                f"holds {a.dtype} values; give an array of strings"
            )
        if not text_input and a.dtype.kind in TEXT_KINDS:
            raise DataError(
                f"{source.name}: array for '{name}' holds {a.dtype} values ({_kind(a.dtype)}); "
                "predict needs numbers (integers or floats), as the model was trained on"
            )


def _as_tensor(a: np.ndarray) -> Any:
    """Text as a string tensor: Keras' NumPy path has no dtype for str arrays."""
    if a.dtype.kind not in TEXT_KINDS:
        return a
    import tensorflow as tf

    return tf.constant(a)


def _kind(dtype: np.dtype) -> str:
    return {
        "U": "strings",
        "S": "bytes",
        "c": "complex numbers",
        "M": "dates",
        "m": "durations",
    }.get(dtype.kind, "not numbers")


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


def _describe(dtype: Any) -> str:
    if dtype is None:
        return ""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return f"{dtype} values ({info.min}-{info.max})"
    return f"{dtype} values"


def check_not_scaled(
    arrays: dict[str, np.ndarray], loaded: LoadedConfig, source: Path, trained: Any
) -> None:
    """Refuse input that the run's data.scale would divide a second time.

    Training divided raw values by `scale`; floats that all lie in [0, 1] (not
    all zero) where scale > 1 and training read integers (or data of unknown
    type) were divided already.
    """
    if loaded.config.data.scale is None or np.min(loaded.config.data.scale) <= 1:
        return
    scale = fmt_scale(loaded.config.data.scale)
    for name, a in arrays.items():
        want = trained.get(name) if isinstance(trained, dict) else trained
        if a.dtype.kind != "f" or (want is not None and np.dtype(want).kind == "f"):
            continue
        finite = a[np.isfinite(a)]
        if not finite.size or finite.min() < 0 or not 0 < finite.max() <= 1:
            continue
        what = f"input '{name}' in {source.name}" if len(arrays) > 1 else source.name
        read = (
            f"training read {_describe(want)} and divided them by data.scale {scale}"
            if want is not None
            else f"training divided its raw values by data.scale {scale}"
        )
        raise DataError(
            f"{what} is {a.dtype} with values in [0, 1]: it looks scaled already, but {read}, "
            f"and predict does the same, so it would be divided twice; give the raw values "
            f"(x * {scale}), or pass --no-preprocess to feed it as it is (then each sample "
            "must already have the model's input shape: no flatten/reshape either)"
        )


def _flag(given: Path | None) -> str:
    return f"--out {given}" if given is not None else "predictions"


def check_writable(folder: Path, given: Path | None) -> None:
    """Files can be created in `folder` (or in the folders it would be made in);
    nothing is created here."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = ""
    if not existing.is_dir():
        problem = f"{existing} is not a directory"
    else:
        try:
            fd, probe = tempfile.mkstemp(prefix=".trainrun-probe.", dir=existing)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problem = f"cannot create a file there: {exc.strerror or exc}"
    if problem:
        raise DataError(
            f"{_flag(given)}: cannot write into {folder} ({problem}); choose a writable place"
        )


def check_targets(files: dict[str, Path], source: Path, given: Path | None) -> None:
    """Before predicting: every output file can be written, and none is a directory
    or the input itself (which the predictions would replace)."""
    for path in files.values():
        if path.is_dir():
            raise DataError(
                f"{_flag(given)}: {path} is an existing directory; give a file name, "
                f"e.g. --out {path / 'predictions.npy'}"
            )
        if path.exists() and source.exists() and os.path.samefile(path, source):
            raise DataError(
                f"{_flag(given)}: {path} is the INPUT file itself, which the predictions would "
                "replace; give another file"
            )
    for folder in dict.fromkeys(p.parent for p in files.values()):
        check_writable(folder, given)


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, buf.getvalue())
    except OSError as exc:  # checked writable a moment ago: a full disk, say
        raise RunError(f"cannot write predictions to {path}: {exc.strerror or exc}") from None


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
    target = out if out is not None else run.path / "predictions" / f"{source.stem}.npy"
    check_writable(target.parent, out)  # before the model loads
    model = load_model(run, loaded, chosen)
    inputs = model_inputs(model)
    arrays = match_inputs(raw, inputs, source)
    check_dtypes(arrays, model, source)
    given = {n: tuple(a.shape) for n, a in arrays.items()}
    note = ""
    if use_preprocessing:
        check_not_scaled(arrays, loaded, source, raw_x_dtypes(loaded))
        arrays, note = preprocess(loaded, arrays)
    samples = check_shapes(arrays, inputs, note, given)
    names = output_names(model)
    check_targets(output_files(target, names or ["output"]), source, out)
    feed: Any = {n: _as_tensor(a) for n, a in arrays.items()}
    feed = feed if len(feed) > 1 else next(iter(feed.values()))
    preds = model.predict(feed, batch_size=Batching.of(loaded).train, verbose=0)
    outputs = _as_outputs(preds, names)
    files = output_files(target, list(outputs))
    check_targets(files, source, out)  # the same files, unless the model named its outputs anew
    for name, array in outputs.items():
        _save_npy(files[name], array)
    return Prediction(
        checkpoint=chosen,
        samples=samples,
        files=files,
        shapes={n: tuple(a.shape) for n, a in outputs.items()},
        preprocessing=note,
    )
