"""`trainrun export`: a run's model as a serving artifact, checked against the model.

The artifact is written by Keras' own ``model.export`` (SavedModel; LiteRT
through TensorFlow's TFLite converter; ONNX through tf2onnx), then loaded with
the runtime that will serve it (TensorFlow's ``serving_default`` signature, the
LiteRT interpreter, onnxruntime) and run on a batch of the run's own test or
validation data, preprocessed as training did. Its outputs are compared with
the Keras model's (``numpy.allclose``-style: ``|a - k| <= atol + rtol * |k|``),
on that batch and on a smaller one, so that a batch dimension frozen by the
conversion is caught too. The result is export.json beside the artifact.

Everything is written into a hidden folder under ``export/`` first and moved
into place at the end: a conversion that fails leaves the run (and an earlier
export of the same format) as it was. An artifact that fails the parity check
is kept, marked in export.json and by a PARITY_FAILED.txt beside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainrun.builders.compile import output_names
from trainrun.config import load_config
from trainrun.data.feed import Feed
from trainrun.engine.evaluate import pick_split
from trainrun.engine.predict import _as_outputs
from trainrun.engine.saved import choose_checkpoint, load_model
from trainrun.errors import ConfigError, DataError, RunError
from trainrun.runs.exports import (
    FAILED_MARK,
    RECORD,
    Format,
    checkpoint_label,
    export_dir,
)
from trainrun.runs.files import write_json
from trainrun.runs.rundir import RunDir, now

DEFAULT_SAMPLES = 64
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass
class Tolerance:
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL


@dataclass
class ExportResult:
    format: str
    folder: Path  # the export's folder in the run (export.json is there)
    artifact: Path
    checkpoint: str
    record: dict[str, Any]
    note: str = ""  # about the checkpoint chosen

    @property
    def passed(self) -> bool:
        return bool(self.record["parity"]["passed"])


@dataclass
class Signature:
    """An artifact's inputs or outputs as its own runtime reports them."""

    names: list[str]
    shapes: list[list[int | None]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "shape": s, "dtype": d}
            for n, s, d in zip(self.names, self.shapes, self.dtypes, strict=True)
        ]


# ---------------------------------------------------------------- the data


def _x_of(element: Any) -> Any:
    return element[0] if isinstance(element, tuple) else element


def _concat(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, list | tuple):
        return [np.concatenate([p[i] for p in parts]) for i in range(len(first))]
    return np.concatenate(parts)


def _cut(x: Any, n: int) -> Any:
    if isinstance(x, dict):
        return {k: v[:n] for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [v[:n] for v in x]
    return x[:n]


def _count(x: Any) -> int:
    first = (
        next(iter(x.values()))
        if isinstance(x, dict)
        else x[0]
        if isinstance(x, list | tuple)
        else x
    )
    return len(first)


def sample_batch(run: RunDir, loaded: Any, split: str | None, samples: int) -> tuple[str, Any]:
    """(split, up to `samples` inputs of it), preprocessed as training fed them."""
    try:
        feed = Feed.build(loaded)
    except ConfigError as exc:  # the data changed since training, say: point into config.yaml
        raise loaded.locate(exc) from None
    split = pick_split(loaded, feed, split)
    ds = feed.eval_batches(split).dataset  # in-memory data: batched and scaled as evaluate does
    parts, have = [], 0
    for element in ds.as_numpy_iterator():  # a repeating dataset stops once `samples` are in
        x = _x_of(element)
        parts.append(x)
        have += _count(x)
        if have >= samples:
            break
    if not parts:
        raise DataError(f"the {split} data of this run is empty; nothing to compare on")
    return split, _cut(_concat(parts), samples)


def _by_input_name(x: Any, model: Any) -> dict[str, np.ndarray]:
    names = [t.name for t in model.inputs]
    if isinstance(x, dict):
        return dict(x)
    if isinstance(x, list | tuple):
        return dict(zip(names, x, strict=False))
    return {names[0]: x}


# ---------------------------------------------------------------- runtimes


@contextlib.contextmanager
def native_output_captured() -> Iterator[list[str]]:
    """Keep the converters' and runtimes' native log lines (fd 2) off the terminal.

    The lines are handed back in the yielded list, for an error to quote.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            # tf2onnx and Keras' patch of it warn about NumPy 2 and TF internals, not ours.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(capture.read().decode(errors="replace").splitlines())


def _np_dtype(dtype: Any) -> np.dtype:
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


class Runner:
    """An artifact loaded in its runtime: `inputs`, `outputs`, and `__call__(feed)`."""

    inputs: Signature
    outputs: Signature

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class SavedModelRunner(Runner):
    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(path))  # kept: the signature needs it alive
        signatures = self._loaded.signatures
        if "serving_default" not in signatures:
            raise RunError(f"{path} has no serving_default signature (TF Serving needs one)")
        self._fn = signatures["serving_default"]
        specs = self._fn.structured_input_signature[1]
        self._specs = specs
        self.inputs = Signature(
            list(specs),
            [list(s.shape.as_list()) for s in specs.values()],
            [s.dtype.name for s in specs.values()],
        )
        outs = self._fn.structured_outputs
        self.outputs = Signature(
            list(outs),
            [list(s.shape.as_list()) for s in outs.values()],
            [s.dtype.name for s in outs.values()],
        )

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tf = self._tf
        args = {k: tf.constant(v, dtype=self._specs[k].dtype) for k, v in feed.items()}
        return {k: v.numpy() for k, v in self._fn(**args).items()}


class LiteRTRunner(Runner):
    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(path))
        signatures = self._interpreter.get_signature_list()
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        self._runner = self._interpreter.get_signature_runner(key)
        details_in = self._runner.get_input_details()
        details_out = self._runner.get_output_details()

        def signature(details: dict[str, dict[str, Any]]) -> Signature:
            return Signature(
                list(details),
                [
                    [None if d < 0 else int(d) for d in v["shape_signature"]]
                    for v in details.values()
                ],
                [np.dtype(v["dtype"]).name for v in details.values()],
            )

        self.inputs, self.outputs = signature(details_in), signature(details_out)
        self._dtypes = {k: np.dtype(v["dtype"]) for k, v in details_in.items()}

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The signature runner resizes the inputs to each call's batch itself.
        args = {k: np.ascontiguousarray(v, dtype=self._dtypes[k]) for k, v in feed.items()}
        return {k: np.array(v) for k, v in self._runner(**args).items()}


ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "object",
}


class OnnxRunner(Runner):
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def signature(args: list[Any]) -> Signature:
            return Signature(
                [a.name for a in args],
                [[d if isinstance(d, int) else None for d in a.shape] for a in args],
                [ONNX_TYPES.get(a.type, a.type) for a in args],
            )

        self.inputs = signature(self._session.get_inputs())
        self.outputs = signature(self._session.get_outputs())
        self._dtypes = dict(zip(self.inputs.names, self.inputs.dtypes, strict=True))

    def __call__(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = {k: np.ascontiguousarray(v, dtype=self._dtypes[k]) for k, v in feed.items()}
        values = self._session.run(None, args)
        return dict(zip(self.outputs.names, values, strict=True))


RUNNERS: dict[str, type[Runner]] = {
    "saved_model": SavedModelRunner,
    "tflite": LiteRTRunner,
    "onnx": OnnxRunner,
}


# ---------------------------------------------------------------- matching names

_NUMBERED = re.compile(r"^output_(\d+)$")


def match_inputs(keras_names: list[str], artifact: list[str]) -> dict[str, str]:
    """Keras input name -> artifact input name: by name, else by position."""
    if set(keras_names) == set(artifact):
        return {n: n for n in keras_names}
    if len(keras_names) != len(artifact):
        raise RunError(
            f"the artifact has {len(artifact)} inputs ({', '.join(artifact)}) but the model "
            f"has {len(keras_names)} ({', '.join(keras_names)})"
        )
    return dict(zip(keras_names, artifact, strict=True))


def match_outputs(keras_names: list[str], artifact: list[str]) -> dict[str, str]:
    """Keras output name -> artifact output name.

    By name where the artifact kept the model's names (dict outputs); SavedModel
    and LiteRT call list outputs ``output_0, output_1, ...``, matched by their
    number; ONNX's ``Identity:0, Identity_1:0, ...`` follow the model's order.
    """
    if set(keras_names) <= set(artifact):
        return {n: n for n in keras_names}
    if len(keras_names) != len(artifact):
        raise RunError(
            f"the artifact has {len(artifact)} outputs ({', '.join(artifact)}) but the model "
            f"has {len(keras_names)} ({', '.join(keras_names)})"
        )
    numbered = {int(m.group(1)): a for a in artifact if (m := _NUMBERED.match(a))}
    if len(numbered) == len(artifact) and set(numbered) == set(range(len(artifact))):
        return {n: numbered[i] for i, n in enumerate(keras_names)}
    return dict(zip(keras_names, artifact, strict=True))


# ---------------------------------------------------------------- comparing


def other_batch_size(n: int) -> int | None:
    """A second batch size, neither n nor (where it can be avoided) 1."""
    if n <= 1:
        return None
    return max(1, n // 2 - 1)


def compare(
    reference: dict[str, np.ndarray],
    got: dict[str, np.ndarray],
    out_map: dict[str, str],
    tolerance: Tolerance,
) -> tuple[float, float, list[str]]:
    """(max abs diff, max rel diff, problems) over every output."""
    max_abs = max_rel = 0.0
    problems = []
    for name, want in reference.items():
        have = got[out_map[name]]
        if tuple(have.shape) != tuple(want.shape):
            problems.append(
                f"output {name}: shape {tuple(have.shape)} from the artifact, "
                f"{tuple(want.shape)} from the Keras model"
            )
            continue
        want64, have64 = want.astype(np.float64), have.astype(np.float64)
        diff = np.abs(have64 - want64)
        if not np.all(np.isfinite(have64) == np.isfinite(want64)):
            problems.append(
                f"output {name}: the artifact gives non-finite values where Keras does not"
            )
            continue
        diff = np.where(np.isfinite(diff), diff, 0.0)
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            floor = max(tolerance.atol, np.finfo(np.float32).tiny)
            max_rel = max(max_rel, float((diff / np.maximum(np.abs(want64), floor)).max()))
            bad = diff > tolerance.atol + tolerance.rtol * np.abs(want64)
            if bad.any():
                problems.append(
                    f"output {name}: {int(bad.sum())} of {diff.size} values differ by more "
                    f"than atol {tolerance.atol:g} + rtol {tolerance.rtol:g} * |keras|"
                )
    return max_abs, max_rel, problems


def keras_outputs(model: Any, x: Any, n: int) -> dict[str, np.ndarray]:
    feed = list(x) if isinstance(x, tuple) else x
    preds = model.predict(feed, batch_size=n, verbose=0)
    return _as_outputs(preds, output_names(model))


def parity_check(
    runner: Runner,
    model: Any,
    x: Any,
    tolerance: Tolerance,
) -> dict[str, Any]:
    """Run the artifact on the batch (and a smaller one); compare with the Keras model."""
    n = _count(x)
    reference = keras_outputs(model, x, n)
    keras_inputs = _by_input_name(x, model)
    in_map = match_inputs(list(keras_inputs), runner.inputs.names)
    out_map = match_outputs(list(reference), runner.outputs.names)
    sizes = [n] + [m for m in (other_batch_size(n),) if m]
    max_abs = max_rel = 0.0
    problems: list[str] = []
    for size in sizes:
        feed = {in_map[k]: v[:size] for k, v in keras_inputs.items()}
        want = {k: v[:size] for k, v in reference.items()}
        try:
            got = runner(feed)
        except Exception as exc:  # the runtime refused the batch: a fixed batch size, say
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            problems.append(f"batch of {size}: the runtime failed: {type(exc).__name__}: {first}")
            continue
        a, r, found = compare(want, got, out_map, tolerance)
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)
        problems += [f"batch of {size}: {p}" for p in found]
    return {
        "passed": not problems,
        "samples": n,
        "batch_sizes": sizes,
        "max_abs_diff": max_abs,
        "max_rel_diff": max_rel,
        "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol},
        "rule": "|artifact - keras| <= atol + rtol * |keras| for every value",
        "outputs": {k: v for k, v in out_map.items()},
        "problems": problems,
    }


# ---------------------------------------------------------------- writing


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _convert(model: Any, fmt: Format, target: Path, x: Any) -> None:
    # Keras' ONNX export wants a model that has been called; a loaded one has not.
    sample = _cut(x, 1)
    model(list(sample) if isinstance(sample, tuple) else sample, training=False)
    with native_output_captured() as log:
        try:
            model.export(str(target), format=fmt.keras_format, verbose=False)
        except Exception as exc:
            hint = next((line for line in reversed(log) if "rror" in line), "")
            raise RunError(
                f"cannot convert the model to {fmt.name}: {type(exc).__name__}: "
                f"{_first_line(exc)}" + (f" ({hint.strip()})" if hint else "")
            ) from exc


def _load_runner(fmt: Format, artifact: Path) -> Runner:
    with native_output_captured():
        return RUNNERS[fmt.name](artifact)


def _scratch(final: Path) -> Path:
    """A hidden folder beside `final` to write into; RunError if that place cannot be written."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    except OSError as exc:
        raise RunError(f"cannot write the export: {final.parent}: {exc.strerror or exc}") from None


def _replace(tmp: Path, final: Path) -> None:
    """Put `tmp` where `final` is, the old one (a file or folder) removed only after."""
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                old.unlink()


def export(
    run: RunDir,
    fmt: Format,
    *,
    checkpoint: str = "last",
    out: Path | None = None,
    split: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    tolerance: Tolerance | None = None,
) -> ExportResult:
    """Write `fmt` of the run's model, check it against the model, write export.json."""
    tolerance = tolerance or Tolerance()
    loaded = load_config(run.config_file)
    chosen = choose_checkpoint(run, loaded, checkpoint)
    folder = export_dir(run, fmt, checkpoint_label(chosen.choice, chosen.path))
    split, x = sample_batch(run, loaded, split, samples)
    model = load_model(run, loaded, chosen)

    tmp = _scratch(folder)
    out_tmp: Path | None = None
    try:
        if out is None:
            artifact_tmp = tmp / fmt.artifact
        else:
            out_tmp = _scratch(out)
            artifact_tmp = out_tmp / out.name
        started = time.perf_counter()
        _convert(model, fmt, artifact_tmp, x)
        seconds = time.perf_counter() - started
        try:
            runner = _load_runner(fmt, artifact_tmp)
        except Exception as exc:  # written, but its own runtime cannot load it
            runner = None
            load_problem = f"{fmt.runtime} cannot load it: {type(exc).__name__}: {_first_line(exc)}"
        if runner is not None:
            with native_output_captured():
                parity = parity_check(runner, model, x, tolerance)
            inputs, outputs = runner.inputs.as_json(), runner.outputs.as_json()
        else:
            parity = {
                "passed": False,
                "samples": _count(x),
                "max_abs_diff": None,
                "max_rel_diff": None,
                "tolerance": {"atol": tolerance.atol, "rtol": tolerance.rtol},
                "problems": [load_problem],
            }
            inputs = outputs = []
        parity["split"] = split
        artifact = (out if out is not None else folder / fmt.artifact).resolve()
        record = {
            "format": fmt.name,
            # relative to the run directory, so that the run can move; --out's as given
            "file": str(artifact if out is not None else artifact.relative_to(run.path.resolve())),
            "checkpoint": chosen.shown(run),
            "checkpoint_choice": chosen.choice,
            "runtime": fmt.runtime,
            "input_signature": inputs,
            "output_signature": outputs,
            "parity": parity,
            "export_seconds": round(seconds, 3),
            "exported": now(),
            "versions": _versions(fmt),
        }
        write_json(tmp / RECORD, record)
        if not parity["passed"]:
            (tmp / FAILED_MARK).write_text(
                f"This {fmt.name} export failed trainrun's parity check: its outputs differ "
                f"from the Keras model's ({chosen.shown(run)}).\n"
                + "".join(f"- {p}\n" for p in parity["problems"])
                + "Details: export.json. Do not serve it without checking.\n",
                encoding="utf-8",
            )
        if out is not None and out_tmp is not None:
            _replace(artifact_tmp, out)
        _replace(tmp, folder)
    except OSError as exc:  # a full or read-only disk: nothing is left half-written
        raise RunError(
            f"cannot write the {fmt.name} export ({exc.filename or folder}): {exc.strerror or exc}"
        ) from None
    finally:
        for leftover in (tmp, out_tmp):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return ExportResult(
        format=fmt.name,
        folder=folder,
        artifact=artifact,
        checkpoint=chosen.shown(run),
        record=record,
        note=chosen.note,
    )


def _versions(fmt: Format) -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("keras", "tensorflow", "tensorflow-cpu", *(p for _, p in fmt.modules)):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out
