"""evaluate, predict, validate, show and runs on real runs (trained once per module)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import CONFIGS, SMALL, assert_clean_error, cli, only_run, read_history

pytestmark = pytest.mark.slow


def _fit(tmp_path_factory, config, *extra) -> object:
    runs = tmp_path_factory.mktemp("runs")
    r = cli("fit", config, "--runs-dir", runs, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run(runs)


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    return _fit(tmp_path_factory, CONFIGS / "mnist_mlp.yaml", *SMALL)


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    return _fit(tmp_path_factory, CONFIGS / "multi_io.yaml", "--set", "fit.epochs=1")


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory):
    return _fit(tmp_path_factory, CONFIGS / "model_checkpoint.yaml", *SMALL)


def eval_json(run) -> dict:
    return json.loads((run / "eval.json").read_text())


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    with np.load(os.path.join(os.environ["TRAINRUN_DATA_DIR"], "mnist.npz")) as f:
        return f["x_test"], f["y_test"]


# ---------------------------------------------------------------- evaluate


def test_evaluate_equals_keras_evaluate(mnist_run):
    r = cli("evaluate", mnist_run)
    assert r.returncode == 0, r.stdout + r.stderr
    x, y = mnist_test()
    assert "sparse_categorical_accuracy" in r.stdout and f"{len(y)} samples" in r.stdout
    result = eval_json(mnist_run)
    assert result["split"] == "test" and result["samples"] == len(y)
    assert result["checkpoint"] == "model.keras" and result["checkpoint_choice"] == "last"
    assert result["seconds"] >= 0 and result["evaluated"]
    import keras

    model = keras.saving.load_model(mnist_run / "model.keras")
    expected = model.evaluate(
        x.reshape(len(x), -1).astype("float32") / 255.0,
        y,
        batch_size=64,
        verbose=0,
        return_dict=True,
    )
    assert set(result["metrics"]) == set(expected)
    for key, value in expected.items():
        assert result["metrics"][key] == pytest.approx(float(value), rel=1e-5, abs=1e-6), key


def test_evaluate_validation_split_matches_history_and_keeps_earlier_results(mnist_run):
    before = eval_json(mnist_run) if (mnist_run / "eval.json").exists() else None
    r = cli("evaluate", mnist_run.name, "--runs-dir", mnist_run.parent, "--split", "validation")
    assert r.returncode == 0, r.stdout + r.stderr
    result = eval_json(mnist_run)
    assert result["split"] == "validation" and result["samples"] == 400  # 20% of 2000
    last = read_history(mnist_run)[-1]
    assert result["metrics"]["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-5)
    if before is not None:
        assert result["previous"][0]["evaluated"] == before["evaluated"]


def test_evaluate_best_without_model_checkpoint_falls_back(mnist_run):
    r = cli("evaluate", mnist_run, "--checkpoint", "best")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no ModelCheckpoint" in r.stdout
    assert eval_json(mnist_run)["checkpoint"] == "model.keras"


def test_evaluate_wrong_inputs_exit_2(mnist_run, multi_run, tmp_path):
    assert_clean_error(
        cli("evaluate", "no-such-run", "--runs-dir", tmp_path), "run directory not found"
    )
    assert_clean_error(cli("evaluate", mnist_run, "--split", "train"), "--split train")
    assert_clean_error(
        cli("evaluate", mnist_run, "--checkpoint", "missing.keras"), "missing.keras", "no such file"
    )
    assert_clean_error(
        cli("evaluate", multi_run, "--split", "test"), "no test data", "it has: validation"
    )


def test_evaluate_best_checkpoint(checkpoint_run):
    files = sorted((checkpoint_run / "checkpoints").glob("*.keras"))
    assert files
    r = cli("evaluate", checkpoint_run, "--checkpoint", "best", "--split", "validation")
    assert r.returncode == 0, r.stdout + r.stderr
    result = eval_json(checkpoint_run)
    # save_best_only: the newest file holds the lowest val_loss of the run
    assert result["checkpoint"] == f"checkpoints/{files[-1].name}"
    best = min(float(row["val_loss"]) for row in read_history(checkpoint_run))
    assert result["metrics"]["loss"] == pytest.approx(best, rel=1e-5)
    # the same file named as a path, relative to the run directory
    r = cli("evaluate", checkpoint_run, "--checkpoint", f"checkpoints/{files[0].name}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert eval_json(checkpoint_run)["checkpoint"] == f"checkpoints/{files[0].name}"


def test_evaluate_multi_output(multi_run):
    r = cli("evaluate", multi_run)
    assert r.returncode == 0, r.stdout + r.stderr
    result = eval_json(multi_run)
    assert result["split"] == "validation" and result["samples"] == 256
    (row,) = read_history(multi_run)
    for key in ("loss", "class_output_loss", "score_output_mean_absolute_error"):
        assert result["metrics"][key] == pytest.approx(float(row[f"val_{key}"]), rel=1e-4), key


# ---------------------------------------------------------------- best-checkpoint rules


def _pick(run_dir, names, args, history=None):
    from trainrun.engine.saved import _pick_from_callback
    from trainrun.runs.rundir import RunDir

    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        path = run_dir / "checkpoints" / name
        path.write_bytes(b"")
        os.utime(path, (1000 + i, 1000 + i))
    if history:
        (run_dir / "history.csv").write_text(history)
    picked = _pick_from_callback(RunDir(run_dir), args)
    return picked and picked[0].name


def test_best_rules(tmp_path):
    names = ["e01-0.50.keras", "e02-0.30.keras", "e03-0.40.keras"]
    template = "checkpoints/e{epoch:02d}-{val_loss:.2f}.keras"
    assert _pick(tmp_path / "a", names, {"filepath": template}) == "e02-0.30.keras"
    acc = "checkpoints/e{epoch:02d}-{val_accuracy:.2f}.keras"
    assert (
        _pick(tmp_path / "b", names, {"filepath": acc, "monitor": "val_accuracy"})
        == "e01-0.50.keras"
    )
    assert (
        _pick(tmp_path / "c", names, {"filepath": template, "save_best_only": True})
        == "e03-0.40.keras"
    )
    history = "epoch,loss,val_loss\n0,1,0.9\n1,1,0.2\n2,1,0.5\n"
    by_epoch = ["m01.keras", "m02.keras", "m03.keras"]
    assert (
        _pick(tmp_path / "d", by_epoch, {"filepath": "checkpoints/m{epoch:02d}.keras"}, history)
        == "m02.keras"
    )
    assert _pick(tmp_path / "e", ["x.keras"], {"filepath": "checkpoints/y.keras"}) is None


# ---------------------------------------------------------------- predict


def test_predict_applies_training_preprocessing(mnist_run, tmp_path):
    x, _ = mnist_test()
    source = tmp_path / "digits.npy"
    np.save(source, x[:7])
    out = tmp_path / "out" / "preds.npy"
    r = cli("predict", mnist_run, source, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    preds = np.load(out)
    assert preds.shape == (7, 10)
    import keras

    model = keras.saving.load_model(mnist_run / "model.keras")
    expected = model.predict(x[:7].reshape(7, -1).astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(preds, expected, rtol=1e-5, atol=1e-6)
    # default output: inside the run directory
    r = cli("predict", mnist_run, source)
    assert r.returncode == 0, r.stdout + r.stderr
    np.testing.assert_allclose(np.load(mnist_run / "predictions" / "digits.npy"), preds)


def test_predict_shape_errors(mnist_run, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 27, 28), dtype=np.uint8))
    assert_clean_error(cli("predict", mnist_run, bad), "input_layer", "(756,)", "expects (784,)")
    assert_clean_error(cli("predict", mnist_run, tmp_path / "none.npy"), "input file not found")
    assert_clean_error(
        cli("predict", "nope", bad, "--runs-dir", tmp_path), "run directory not found"
    )


def test_predict_multi_output(multi_run, tmp_path):
    rng = np.random.default_rng(0)
    img = rng.random((6, 32, 32, 3), dtype=np.float32)
    ts = rng.random((6, 20, 10), dtype=np.float32)
    both = tmp_path / "both.npz"
    np.savez(both, img_input=img, ts_input=ts)
    r = cli("predict", multi_run, both, "--out", tmp_path / "p.npy")
    assert r.returncode == 0, r.stdout + r.stderr
    score = np.load(tmp_path / "p.score_output.npy")
    cls = np.load(tmp_path / "p.class_output.npy")
    assert score.shape == (6, 1) and cls.shape == (6, 5)
    np.testing.assert_allclose(cls.sum(axis=1), 1.0, rtol=1e-5)
    one = tmp_path / "one.npy"
    np.save(one, img)
    assert_clean_error(cli("predict", multi_run, one), "2 inputs", "img_input", "ts_input")
    partial = tmp_path / "partial.npz"
    np.savez(partial, img_input=img)
    assert_clean_error(cli("predict", multi_run, partial), "lacks arrays", "ts_input")


# ---------------------------------------------------------------- validate, show, runs


def test_validate_prints_summary_and_config_and_writes_nothing(tmp_path):
    r = cli("validate", CONFIGS / "mnist_mlp.yaml", "--set", "fit.epochs=7", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Total params:" in r.stdout
    assert "Trainable params: 55,050" in r.stdout  # 784*64+64 + 64*64+64 + 64*10+10
    assert "resolved config" in r.stdout and "epochs: 7" in r.stdout
    shown = r.stdout[r.stdout.index("resolved config") :]
    assert "# you set" in shown and "compile.steps_per_execution: auto" in shown
    assert ": null" not in shown  # unset keys stay out of the way; config.yaml keeps them
    assert "is valid" in r.stdout
    assert list(tmp_path.iterdir()) == []
    assert_clean_error(
        cli("validate", CONFIGS / "mnist_mlp.yaml", "--set", "fit.epoch=2", cwd=tmp_path),
        "unknown key 'epoch'",
    )


def test_show_and_runs_on_real_runs(multi_run):
    r = cli("show", multi_run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "val_class_output_sparse_categorical_accuracy" in r.stdout
    assert "functional: inputs img_input, ts_input" in r.stdout
    assert (multi_run / "curves.png").stat().st_size > 1000
    r = cli("runs", "--runs-dir", multi_run.parent)
    assert r.returncode == 0 and multi_run.name in r.stdout and "completed" in r.stdout


def test_evaluate_weights_file_loads_into_the_run_model(mnist_run, tmp_path):
    import keras

    model = keras.saving.load_model(mnist_run / "model.keras")
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    weights = tmp_path / "zeros.weights.h5"
    model.save_weights(weights)
    r = cli("evaluate", mnist_run, "--checkpoint", weights)
    assert r.returncode == 0, r.stdout + r.stderr
    result = eval_json(mnist_run)
    assert result["checkpoint"] == str(weights)
    # all-zero weights: uniform softmax, so the loss is ln(10)
    assert result["metrics"]["loss"] == pytest.approx(np.log(10), rel=1e-5)
