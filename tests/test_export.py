"""`trainrun export`: serving artifacts of a run, checked against the Keras model.

Two runs are trained once for the module: an MNIST MLP whose layer and
activation are given by import path (a custom object), exported through the CLI
to each format; and the two-input, two-output functional model of
configs/multi_io.yaml, exported in-process. The parity failure path uses an
artifact that really computes something else: Keras' exporter is patched to
write the model with one kernel scaled, as a broken converter would.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, CUSTOM_OBJECTS, assert_clean_error, cli, only_run, trained_project

from trainrun.errors import TrainrunError
from trainrun.runs import exports
from trainrun.runs.exports import FORMATS, get_format
from trainrun.runs.rundir import RunDir

MODULE = CUSTOM_OBJECTS  # MyDense and my_relu, by import path

CONFIG = """\
seed: 1
data: {source: mnist, flatten: true, scale: 255.0, limit: {train: 256, test: 40}}
model:
  layers:
    - Input: {shape: [784]}
    - my_objs:MyDense: {units: 16, scale: 0.5, activation: my_objs:my_relu}
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: adam
  loss: sparse_categorical_crossentropy
fit: {epochs: 1, batch_size: 64}
callbacks:
  - ModelCheckpoint: {filepath: "checkpoints/best.keras", save_best_only: true, monitor: loss}
outputs: {tensorboard: false}
"""


def _missing(fmt: str) -> list[str]:
    return exports.missing_packages(FORMATS[fmt])


def _needs(fmt: str):
    missing = _missing(fmt)
    return pytest.mark.skipif(
        bool(missing), reason=f"needs {', '.join(missing)}: pip install -e '.[export]'"
    )


def _digest(run: Path) -> dict[str, str]:
    """Every file of the run outside export/, by content."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.relative_to(run).parts[0] != "export"
    }


# ---------------------------------------------------------------- fast: options


def test_format_names_and_aliases():
    assert get_format("litert").name == "tflite"
    assert get_format("tf_saved_model").name == "saved_model"
    assert get_format("ONNX").name == "onnx"
    with pytest.raises(TrainrunError, match="expected one of: saved_model"):
        get_format("torchscript")


def test_missing_package_names_the_extra(monkeypatch):
    from trainrun.commands.export import check_options

    real = exports.importlib.util.find_spec
    monkeypatch.setattr(
        exports.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    with pytest.raises(TrainrunError) as info:
        check_options(RunDir(Path("runs/x")), "onnx", None, 64, 1e-4, 1e-3)
    assert "onnxruntime" in info.value.message
    assert "pip install 'trainrun[export]'" in info.value.message
    assert check_options(RunDir(Path("runs/x")), "saved_model", None, 64, 0, 0).name == (
        "saved_model"
    )  # needs nothing beyond TensorFlow


def test_out_is_checked(tmp_path):
    from trainrun.commands.export import check_out

    run = RunDir(tmp_path / "runs" / "r")
    run.path.mkdir(parents=True)
    (run.path / "model.keras").write_text("model")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    cases = {
        (get_format("onnx"), run.path / "model.keras"): "inside the run directory",
        (get_format("onnx"), tmp_path / "m.tflite"): "must end in .onnx",
        (get_format("tflite"), other): "must end in .tflite",
        (get_format("saved_model"), other): "holds other files",
        (get_format("saved_model"), other / "notes.txt"): "is a file",
    }
    for (fmt, out), needle in cases.items():
        with pytest.raises(TrainrunError, match=needle):
            check_out(run, fmt, out)
    check_out(run, get_format("onnx"), tmp_path / "new" / "m.onnx")  # a new folder is fine


def test_runs_and_show_read_exports_without_tensorflow(tmp_path):
    run = RunDir(tmp_path)
    assert exports.exports_cell(run) == "-"
    for name, passed in (("onnx", True), ("tflite-best", False)):
        (tmp_path / "export" / name).mkdir(parents=True)
        record = {"format": name.split("-")[0], "file": f"export/{name}/model", "parity": {}}
        record["parity"] = {"passed": passed, "max_abs_diff": 0.5, "samples": 8, "split": "test"}
        (tmp_path / "export" / name / "export.json").write_text(json.dumps(record))
    (tmp_path / "export" / ".onnx.x.tmp").mkdir()  # an export being written: not listed
    (tmp_path / "export" / "broken").mkdir()
    (tmp_path / "export" / "broken" / "export.json").write_text("{")
    assert exports.exports_cell(run) == "broken (unreadable), onnx, tflite-best (parity failed)"
    lines = dict(exports.describe_export(e) for e in exports.read_exports(run))
    assert "PARITY FAILED" in lines["export/tflite-best"]
    assert "parity passed" in lines["export/onnx"]


# ---------------------------------------------------------------- slow: a trained run


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return trained_project(tmp_path_factory.mktemp("export"), CONFIG)


@pytest.fixture(scope="module")
def run(project):
    return only_run(project / "runs")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "artifact", "via_cli"),
    [
        ("onnx", "model.onnx", True),  # the command as a user runs it
        ("saved_model", "1/saved_model.pb", False),  # the same engine, in this process
        ("tflite", "model.tflite", False),
    ],
)
def test_export_each_format(run, tmp_path, fmt, artifact, via_cli):
    if _missing(fmt):
        pytest.skip(f"needs {', '.join(_missing(fmt))}")
    before = _digest(run)
    if via_cli:
        result = cli("export", run, "--format", fmt, cwd=tmp_path)  # a custom layer by import path
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "error" not in result.stderr, result.stderr
        assert "parity with Keras on 40 test samples (batches of 40 and 19)" in result.stdout
    else:
        from trainrun.engine.export import export

        assert export(RunDir(run), get_format(fmt)).passed
    folder = run / "export" / fmt
    assert (folder / artifact).is_file()
    record = json.loads((folder / "export.json").read_text())
    assert record["format"] == fmt
    assert (run / record["file"]).exists()
    assert record["checkpoint"] == "model.keras"
    assert record["input_signature"][0]["shape"] == [None, 784]  # a dynamic batch dimension
    parity = record["parity"]
    assert parity["passed"] is True, parity
    assert parity["split"] == "test" and parity["samples"] == 40  # data.limit.test
    assert parity["batch_sizes"] == [40, 19]
    assert 0 <= parity["max_abs_diff"] <= parity["tolerance"]["atol"]
    assert parity["max_rel_diff"] >= 0
    assert not (folder / exports.FAILED_MARK).exists()
    assert _digest(run) == before  # the run's own files are untouched


@pytest.mark.slow
def test_bad_options_are_one_line(run):
    assert_clean_error(cli("export", run, "--format", "pmml"), "unknown export format")
    assert_clean_error(
        cli("export", run, "--format", "onnx", "--out", run / "model.onnx"),
        "inside the run directory",
    )
    assert not (run / "export" / "pmml").exists()


# ---------------------------------------------------------------- slow: in-process


@pytest.fixture(scope="module")
def multi_io_run(tmp_path_factory):
    """configs/multi_io.yaml, small: two inputs (one with a dynamic time axis), two outputs,
    validation data only (a tfdata factory)."""
    proj = tmp_path_factory.mktemp("multi_io")
    for name in ("multi_io.yaml", "multi_io_data.py"):
        shutil.copy(CONFIGS / name, proj / name)
    result = cli(
        "fit", "multi_io.yaml", "--runs-dir", "runs",
        "--set", "data.train.args.samples=96", "--set", "data.validation.args.samples=48",
        "--set", "fit.epochs=1", cwd=proj,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return RunDir(only_run(proj / "runs"))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "onnx"])
def test_multi_input_multi_output(multi_io_run, fmt):
    if _missing(fmt):
        pytest.skip(f"needs {', '.join(_missing(fmt))}")
    from trainrun.engine.export import export

    result = export(multi_io_run, get_format(fmt), samples=20)
    assert result.passed, result.record["parity"]
    record = json.loads((result.folder / "export.json").read_text())
    assert record["parity"]["split"] == "validation"
    assert record["parity"]["batch_sizes"] == [20, 9]
    assert sorted(record["parity"]["outputs"]) == ["class_output", "score_output"]
    signature = {i["name"]: i["shape"] for i in record["input_signature"]}
    assert signature == {"img_input": [None, 32, 32, 3], "ts_input": [None, None, 10]}


@pytest.mark.slow
def test_failed_conversion_leaves_the_run_as_it_was(multi_io_run, monkeypatch):
    import keras

    from trainrun.engine.export import export
    from trainrun.errors import RunError

    fmt = get_format("saved_model")
    earlier = multi_io_run.path / "export" / fmt.name
    if not earlier.is_dir():
        export(multi_io_run, fmt, samples=8)
    kept = (earlier / "export.json").read_bytes()
    before = _digest(multi_io_run.path)

    def broken(self, filepath, format="tf_saved_model", **kwargs):
        Path(filepath).mkdir(parents=True)
        (Path(filepath) / "half-written").write_text("x")
        raise ValueError("op Foo is not supported")

    monkeypatch.setattr(keras.Model, "export", broken)
    with pytest.raises(
        RunError, match="cannot convert the model to saved_model: ValueError: op Foo"
    ):
        export(multi_io_run, fmt, samples=8)
    assert (earlier / "export.json").read_bytes() == kept  # the earlier export stands
    assert sorted(p.name for p in (multi_io_run.path / "export").iterdir()) == sorted(
        p.name for p in (multi_io_run.path / "export").iterdir() if not p.name.startswith(".")
    )  # no temporary folder left
    assert _digest(multi_io_run.path) == before


@pytest.mark.slow
@_needs("onnx")
def test_onnx_artifact_stands_alone(run, tmp_path):
    """The ONNX file runs without trainrun, TensorFlow or the custom module, on a batch
    size of its own, and computes what the Keras model computes on the same samples."""
    folder = run / "export" / "onnx"
    if not (folder / "model.onnx").is_file():
        assert cli("export", run, "--format", "onnx").returncode == 0
    x = np.load(os.environ["TRAINRUN_DATA_DIR"] + "/mnist.npz")["x_test"][:7]
    x = x.reshape(7, 784).astype("float32") / 255.0  # the run's data.flatten and data.scale
    np.save(tmp_path / "x.npy", x)
    code = f"""
        import sys, numpy as np, onnxruntime as ort
        s = ort.InferenceSession({str(folder / "model.onnx")!r}, providers=["CPUExecutionProvider"])
        x = np.load({str(tmp_path / "x.npy")!r})
        np.save({str(tmp_path / "onnx.npy")!r}, s.run(None, {{s.get_inputs()[0].name: x}})[0])
        assert "tensorflow" not in sys.modules and "my_objs" not in sys.modules
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    import trainrun

    want = trainrun.load_model(run).predict(x, verbose=0)
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), want, atol=1e-5)


@pytest.mark.slow
@_needs("tflite")
def test_checkpoints_coexist_and_are_listed(run, tmp_path):
    from trainrun.engine.export import export

    fmt = get_format("litert")
    last = run / "export" / "tflite" / "model.tflite"
    if not last.is_file():
        export(RunDir(run), fmt)
    out = tmp_path / "serve" / "mnist.tflite"
    result = export(RunDir(run), fmt, checkpoint="best", out=out, samples=8)
    assert result.passed, result.record
    assert out.is_file() and last.is_file()
    best = json.loads((run / "export" / "tflite-best" / "export.json").read_text())
    assert best["checkpoint"] == "checkpoints/best.keras"
    assert best["file"] == str(out.resolve())
    listing = cli("runs", "--runs-dir", run.parent)
    assert "tflite, tflite-best" in listing.stdout, listing.stdout
    shown = cli("show", run)
    assert "exports (trainrun export)" in shown.stdout
    assert "export/tflite-best" in shown.stdout and "parity passed" in shown.stdout


def _broken_converter(monkeypatch):
    """Keras' exporter as a converter that gets one layer wrong: the artifact is written
    with that layer's kernel scaled; the Keras model itself is put back as it was."""
    import keras

    real_export = keras.Model.export

    def export(self, filepath, format="tf_saved_model", **kwargs):
        layer = next(layer for layer in self.layers if getattr(layer, "kernel", None) is not None)
        kept = layer.kernel.numpy()
        layer.kernel.assign(kept * 1.5)
        try:
            return real_export(self, filepath, format=format, **kwargs)
        finally:
            layer.kernel.assign(kept)

    monkeypatch.setattr(keras.Model, "export", export)


@pytest.mark.slow
def test_parity_failure_keeps_the_artifact_marked(run, monkeypatch, capsys):
    from rich.console import Console

    from trainrun.commands.export import report
    from trainrun.engine.export import export
    from trainrun.errors import RunError

    before = _digest(run)
    _broken_converter(monkeypatch)
    result = export(RunDir(run), get_format("saved_model"), checkpoint="best", samples=16)
    assert not result.passed
    folder = run / "export" / "saved_model-best"
    record = json.loads((folder / "export.json").read_text())
    assert record["parity"]["passed"] is False
    assert record["parity"]["max_abs_diff"] > record["parity"]["tolerance"]["atol"]
    assert (folder / "1" / "saved_model.pb").is_file()  # kept
    assert "differ" in (folder / exports.FAILED_MARK).read_text()
    assert _digest(run) == before
    with pytest.raises(RunError, match="failed the parity check") as info:
        report(result, RunDir(run), Console(file=sys.stdout))
    assert info.value.exit_code == 1
    assert "PARITY_FAILED.txt" in info.value.message
    assert "saved_model-best (parity failed)" in exports.exports_cell(RunDir(run))


@pytest.mark.slow
def test_inputs_and_outputs_are_matched_by_name_then_position():
    from trainrun.engine.export import _count, match_inputs, match_outputs, other_batch_size

    a, b = np.zeros((5, 2)), np.zeros((5, 3))
    assert _count((a, b)) == _count([a, b]) == _count({"a": a, "b": b}) == _count(a) == 5
    assert match_inputs(["a", "b"], ["b", "a"]) == {"a": "a", "b": "b"}
    assert match_inputs(["keras_tensor"], ["input_1"]) == {"keras_tensor": "input_1"}
    assert match_outputs(["score", "cls"], ["cls", "score"]) == {"score": "score", "cls": "cls"}
    numbered = [f"output_{i}" for i in (10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)]
    names = [f"o{i}" for i in range(11)]
    assert match_outputs(names, numbered)["o10"] == "output_10"
    assert match_outputs(["s", "c"], ["Identity:0", "Identity_1:0"]) == {
        "s": "Identity:0",
        "c": "Identity_1:0",
    }
    assert [other_batch_size(n) for n in (1, 2, 40, 64)] == [None, 1, 19, 31]
