"""Objects named by import path survive save and load: evaluate, predict, resume, load_model.

One run (a custom loss function, metric function, layer class and activation
function in a .py file beside the config) is trained once for the module; the
tests then load it back the ways a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import CUSTOM_OBJECTS as MODULE
from conftest import ROOT, assert_clean_error, cli, only_run, read_history, trained_project

pytestmark = pytest.mark.slow


CONFIG = """\
seed: 1
data: {source: mnist, flatten: true, scale: 255.0, limit: {train: 256, test: 64}}
model:
  layers:
    - Input: {shape: [784]}
    - my_objs:MyDense: {units: 16, scale: 0.5, activation: my_objs:my_relu}
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: adam
  loss: my_objs:my_sce
  metrics: [my_objs:my_acc]
fit: {epochs: 1, batch_size: 64}
outputs: {tensorboard: false}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project directory with my_objs.py and the config beside it, trained once."""
    return trained_project(tmp_path_factory.mktemp("custom"), CONFIG)


@pytest.fixture(scope="module")
def run(project):
    return only_run(project / "runs")


def python(code: str, cwd, *, with_trainrun: bool = True) -> subprocess.CompletedProcess:
    """A fresh Python process in `cwd` (not the project's directory)."""
    env = {**os.environ}
    if with_trainrun:
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_evaluate(run, tmp_path):
    result = cli("evaluate", run, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    assert {"loss", "my_acc"} <= set(metrics)


def test_predict(run, tmp_path):
    x = np.load(os.environ["TRAINRUN_DATA_DIR"] + "/mnist.npz")["x_test"][:5]
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "p.npy"
    result = cli("predict", run, tmp_path / "x.npy", "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert np.load(out).shape == (5, 10)


def test_resume_trains_on(project, tmp_path):
    """A copy, so that the other tests see the run as trained."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(only_run(project / "runs"), copy)
    result = cli("resume", copy, "--epochs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [r["epoch"] for r in read_history(copy)] == ["0", "1"]


LOAD = """\
import sys
import trainrun
model = trainrun.load_model(sys.argv[1] if len(sys.argv) > 1 else {target!r})
layer = model.layers[0]
print(type(layer).__name__, layer.scale, layer.activation.__name__)
print(model.loss.__name__ if callable(model.loss) else model.loss)
import numpy as np
print(sorted(model.evaluate(np.zeros((2, 784)), np.zeros(2), verbose=0, return_dict=True)))
"""


@pytest.mark.parametrize("target", ["run", "model_file", "relative"])
def test_trainrun_load_model_from_another_directory(run, tmp_path, target):
    """From a fresh process elsewhere: neither the project nor the run is the cwd."""
    given = {
        "run": str(run),
        "model_file": str(run / "model.keras"),
        "relative": os.path.relpath(run, tmp_path),
    }[target]
    result = python(LOAD.format(target=given), tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "MyDense 0.5 my_relu"
    assert lines[1] == "my_sce"
    assert lines[2] == str(["loss", "my_acc"])


def test_trainrun_load_model_predicts_like_the_run(run, tmp_path):
    """The loaded model computes what `trainrun predict` computes: same weights, same layer."""
    x = np.load(os.environ["TRAINRUN_DATA_DIR"] + "/mnist.npz")["x_test"][:3]
    np.save(tmp_path / "x.npy", x)
    assert cli("predict", run, tmp_path / "x.npy", "--out", tmp_path / "p.npy").returncode == 0
    code = f"""\
        import numpy as np, trainrun
        m = trainrun.load_model({str(run)!r})
        x = np.load({str(tmp_path / "x.npy")!r}).reshape(3, 784).astype("float32") / 255.0
        np.save({str(tmp_path / "q.npy")!r}, m.predict(x, verbose=0))
    """
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "q.npy"), np.load(tmp_path / "p.npy"), rtol=1e-5)


def test_keras_load_model_with_custom_objects(run, tmp_path):
    """Plain Keras, given trainrun.custom_objects(run)."""
    code = f"""\
        import keras, trainrun
        objects = trainrun.custom_objects({str(run)!r})
        print(sorted(objects))
        m = keras.saving.load_model({str(run / "model.keras")!r}, custom_objects=objects)
        print(type(m.layers[0]).__name__)
    """
    result = python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    names, layer = result.stdout.splitlines()
    assert names == str(["my_objs>MyDense", "my_objs>my_acc", "my_objs>my_relu", "my_objs>my_sce"])
    assert layer == "MyDense"


def test_keras_load_model_after_registering_as_trainrun_does(run, project, tmp_path):
    """The names saved are what register_keras_serializable(package='my_objs') gives, so a
    module that registers its objects that way loads with plain keras.saving.load_model."""
    (tmp_path / "my_objs.py").write_text(
        MODULE.replace(
            "\ndef ", "\n@keras.saving.register_keras_serializable(package='my_objs')\ndef "
        ).replace(
            "\nclass MyDense",
            "\n@keras.saving.register_keras_serializable(package='my_objs')\nclass MyDense",
        )
    )
    code = f"""\
        import keras
        import my_objs
        m = keras.saving.load_model({str(run / "model.keras")!r})
        print(type(m.layers[0]).__name__, m.loss.__name__)
    """
    result = python(code, tmp_path, with_trainrun=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["MyDense", "my_sce"]


def test_own_registration_is_kept(tmp_path):
    """A module that registers its objects itself keeps its names: plain Keras loads them."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "my_objs.py").write_text(
        MODULE.replace(
            "\ndef my_sce", "\n@keras.saving.register_keras_serializable('mine')\ndef my_sce"
        )
    )
    (proj / "cfg.yaml").write_text(CONFIG)
    result = cli("fit", "cfg.yaml", "--runs-dir", "runs", "--set", "outputs.state=false", cwd=proj)
    assert result.returncode == 0, result.stdout + result.stderr
    run = only_run(proj / "runs")
    code = f"""\
        import sys, zipfile, json
        config = json.loads(zipfile.ZipFile({str(run / "model.keras")!r}).read("config.json"))
        print(config["compile_config"]["loss"]["config"])
    """
    result = python(code, tmp_path)
    assert result.stdout.strip() == "mine>my_sce", result.stderr


def test_moved_module_is_one_clean_error(project, tmp_path):
    import shutil

    proj = tmp_path / "proj"
    shutil.copytree(project, proj)
    run = only_run(proj / "runs")
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace(str(project), str(proj)))
    (proj / "my_objs.py").rename(proj / "elsewhere.py")
    assert_clean_error(cli("evaluate", run), "my_objs:my_sce", "my_objs", "base_dir", code=2)
    result = python(f"import trainrun; trainrun.load_model({str(run)!r})", tmp_path)
    assert result.returncode == 1
    assert "my_objs:my_sce" in result.stderr and "base_dir" in result.stderr
