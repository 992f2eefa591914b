"""`trainrun fit` end to end through the CLI, checked through the files it writes."""

from __future__ import annotations

import csv
import os
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, SMALL, assert_clean_error, cli, only_run, read_history, run_info

pytestmark = pytest.mark.slow


def fit(config, tmp_path, *extra):
    runs = tmp_path / "runs"
    r = cli("fit", config, "--runs-dir", runs, *SMALL, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run(runs), r


def tensorboard_tags(log_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return set(EventAccumulator(str(log_dir)).Reload().Tags()["tensors"])


def test_mnist_mlp_run_directory(tmp_path):
    run, r = fit(CONFIGS / "mnist_mlp.yaml", tmp_path)
    assert re.fullmatch(r"mnist-mlp-\d{8}-\d{6}-[0-9a-f]{4}", run.name)
    assert str(run) in r.stdout
    for name in (
        "config.yaml",
        "run.json",
        "history.csv",
        "model.keras",
        "train.log",
        "state",
        "tensorboard",
    ):
        assert (run / name).exists(), name
    info = run_info(run)
    assert info["status"] == "completed" and info["epochs_done"] == 2 and info["error"] is None
    assert info["seed"] == 1 and set(info["versions"]) == {
        "python",
        "tensorflow",
        "keras",
        "trainrun",
    }
    assert info["best"]["monitor"] == "val_loss" and info["best"]["epoch"] in (1, 2)
    rows = read_history(run)
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert {"loss", "val_loss", "sparse_categorical_accuracy", "learning_rate"} <= set(rows[0])
    assert float(rows[1]["val_sparse_categorical_accuracy"]) > 0.8
    for split in ("train", "validation"):
        assert list((run / "tensorboard" / split).glob("events.out.tfevents.*")), split
    tags = tensorboard_tags(run / "tensorboard" / "train")
    assert "epoch_loss" in tags and not any(t.startswith("batch_") for t in tags), tags
    assert "epoch 2/2" in (run / "train.log").read_text()
    timing = info["timing"]
    assert len(timing["epoch_s"]) == 2
    # trainrun's own pieces, timed per callback class, each a small share of training.
    spent = timing["callbacks_s"]
    for piece in ("CSVLogger", "TensorBoard", "ProgressBridge", "StateKeeper"):
        assert 0 < spent[piece] < 0.25 * info["train_seconds"], (piece, spent)


def test_resolved_config_reproduces_the_run(tmp_path):
    run, _ = fit(
        CONFIGS / "mnist_mlp.yaml", tmp_path, "--set", "deterministic=true", "--name", "first"
    )
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["fit"]["epochs"] == 2 and resolved["data"]["limit"]["train"] == 2000
    again = tmp_path / "again"
    r = cli("fit", run / "config.yaml", "--runs-dir", again)
    assert r.returncode == 0, r.stderr
    assert read_history(only_run(again)) == read_history(run)


def test_seed_chosen_when_omitted(tmp_path):
    cfg = tmp_path / "c.yaml"
    text = (CONFIGS / "mnist_mlp.yaml").read_text().replace("seed: 1\n", "")
    cfg.write_text(text)
    run, _ = fit(cfg, tmp_path, "--set", "fit.epochs=1")
    seed = run_info(run)["seed"]
    assert isinstance(seed, int)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == seed


def test_final_model_loads_and_matches(tmp_path):
    run, _ = fit(CONFIGS / "mnist_mlp.yaml", tmp_path)
    import keras

    model = keras.saving.load_model(run / "model.keras")
    assert model.output_shape == (None, 10)
    # model.keras holds the last epoch's weights: scored on the same validation
    # samples (the last 20% of the first 2000), it gives the last logged val metrics.
    with np.load(Path(os.environ["TRAINRUN_DATA_DIR"]) / "mnist.npz") as f:
        x, y = f["x_train"][1600:2000], f["y_train"][1600:2000]
    scores = model.evaluate(
        x.reshape(len(x), -1).astype("float32") / 255.0, y, verbose=0, return_dict=True
    )
    last = read_history(run)[-1]
    assert scores["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-4)
    assert scores["sparse_categorical_accuracy"] == pytest.approx(
        float(last["val_sparse_categorical_accuracy"]), abs=1e-6
    )


def test_outputs_can_be_turned_off(tmp_path):
    run, _ = fit(
        CONFIGS / "mnist_mlp.yaml",
        tmp_path,
        "--set",
        "outputs.tensorboard=false",
        "--set",
        "outputs.final_model=false",
        "--set",
        "outputs.history=false",
    )
    assert not (run / "tensorboard").exists() and not (run / "model.keras").exists()
    assert not (run / "history.csv").exists()


def test_numpy_source_npz_npy_sample_weight(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((300, 8), dtype=np.float32)
    y = (x.sum(axis=1) > 4).astype("int64")
    np.savez(tmp_path / "train.npz", features=x, labels=y, w=np.ones(300, dtype="float32"))
    np.save(tmp_path / "vx.npy", x[:50])
    np.save(tmp_path / "vy.npy", y[:50])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        textwrap.dedent("""\
        name: np
        seed: 3
        data:
          source: numpy
          train: {path: train.npz, x: features, y: labels, sample_weight: w}
          validation: {x: vx.npy, y: vy.npy}
        model:
          layers: [{Input: {shape: [8]}}, {Dense: {units: 2, activation: softmax}}]
        compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
        fit: {epochs: 2, batch_size: 32}
    """)
    )
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs")
    assert r.returncode == 0, r.stderr
    rows = read_history(only_run(tmp_path / "runs"))
    assert len(rows) == 2 and "val_accuracy" in rows[0]


def test_missing_npz_key_lists_keys(tmp_path):
    np.savez(tmp_path / "train.npz", a=np.zeros((4, 2)), b=np.zeros(4))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {source: numpy, train: {path: train.npz, x: features, y: b}}\n"
        "model: {layers: [{Input: {shape: [2]}}, {Dense: {units: 1}}]}\ncompile: {loss: mse}\n"
    )
    assert_clean_error(
        cli("fit", cfg, "--runs-dir", tmp_path / "runs"),
        "data.train.x",
        "'features'",
        "it has: a, b",
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_functional_builder_and_path_models(tmp_path):
    (tmp_path / "builders.py").write_text(
        textwrap.dedent("""\
        import keras

        def mlp(units=16):
            inputs = keras.Input(shape=(784,))
            x = keras.layers.Dense(units, activation="relu")(inputs)
            return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    """)
    )
    base = (
        "seed: 1\ndata: {source: mnist, flatten: true, scale: 255.0, validation_split: 0.2}\n"
        "compile: {loss: sparse_categorical_crossentropy, metrics: [accuracy]}\n"
    )
    (tmp_path / "builder.yaml").write_text(
        "name: b\n" + base + "model: {builder: {factory: 'builders:mlp', args: {units: 8}}}\n"
    )
    run, _ = fit(tmp_path / "builder.yaml", tmp_path)
    (tmp_path / "path.yaml").write_text(f"name: p\n{base}model: {{path: {run / 'model.keras'}}}\n")
    r = cli("fit", tmp_path / "path.yaml", "--runs-dir", tmp_path / "runs2", *SMALL)
    assert r.returncode == 0, r.stderr
    assert len(read_history(only_run(tmp_path / "runs2"))) == 2


def test_plugin_callback_from_entry_point(tmp_path):
    site = tmp_path / "site"
    (site / "myplugin").mkdir(parents=True)
    (site / "myplugin" / "__init__.py").write_text(
        textwrap.dedent("""\
        import keras

        class Marker(keras.callbacks.Callback):
            def __init__(self, path):
                super().__init__()
                self.path = path
            def on_train_end(self, logs=None):
                open(self.path, "w").write("done")
    """)
    )
    dist = site / "myplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[trainrun.callbacks]\nMarker = myplugin:Marker\n")
    marker = tmp_path / "marker.txt"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (CONFIGS / "mnist_mlp.yaml").read_text() + f"callbacks:\n  - Marker: {{path: {marker}}}\n"
    )
    import os

    env = {
        "PYTHONPATH": os.pathsep.join(
            [str(site), os.environ.get("PYTHONPATH", ""), str(CONFIGS.parent)]
        )
    }
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL, env=env)
    assert r.returncode == 0, r.stderr
    assert marker.read_text() == "done"
    assert "Marker" in cli("callbacks", env=env).stdout


def test_user_callback_exception_marks_run_failed(tmp_path):
    (tmp_path / "bad_cb.py").write_text(
        textwrap.dedent("""\
        import keras

        class Boom(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                raise RuntimeError("boom at epoch %d" % epoch)
    """)
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text((CONFIGS / "mnist_mlp.yaml").read_text() + "callbacks:\n  - bad_cb:Boom\n")
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert "boom at epoch 0" in r.stdout and "bad_cb.py" in r.stdout
    run = only_run(tmp_path / "runs")
    info = run_info(run)
    assert info["status"] == "failed" and "boom at epoch 0" in info["error"]
    assert "Traceback" in (run / "train.log").read_text()


def test_tensorflow_error_inside_a_step_names_its_cause(tmp_path):
    # Labels out of range from a tf.data source: only the training step can see them.
    (tmp_path / "bad_data.py").write_text(
        textwrap.dedent("""\
        import numpy as np
        import tensorflow as tf

        def make():
            x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
            y = np.full(64, 7)
            return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    """)
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        textwrap.dedent("""\
        seed: 1
        data: {source: tfdata, train: {factory: bad_data:make}}
        model: {layers: [{Input: {shape: [4]}}, {Dense: {units: 3, activation: softmax}}]}
        compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
        fit: {epochs: 1}
    """)
    )
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    info = run_info(only_run(tmp_path / "runs"))
    assert info["status"] == "failed"
    assert "Received a label value of 7 which is outside the valid range" in info["error"]
    assert "Traceback" in (only_run(tmp_path / "runs") / "train.log").read_text()


def test_terminate_on_nan_fails_run_and_keeps_good_state(tmp_path):
    r = cli(
        "fit",
        CONFIGS / "terminate_on_nan.yaml",
        "--runs-dir",
        tmp_path / "runs",
        *SMALL,
        "--set",
        "compile.optimizer={SGD: {learning_rate: 1.0e12}}",
        "--set",
        "fit.epochs=3",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    info = run_info(run)
    assert info["status"] == "failed" and "NaN" in info["error"]
    # No NaN state is ever saved: whatever resume state exists is finite.
    for npz in (run / "state").glob("ckpt-*/arrays.npz"):
        with np.load(npz) as f:
            assert all(np.isfinite(f[k]).all() for k in f.files if f[k].dtype.kind == "f")


def test_history_columns_are_numbers(tmp_path):
    run, _ = fit(CONFIGS / "reduce_lr.yaml", tmp_path)
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1"]  # SMALL: 2 epochs
    assert set(rows[0]) >= {"epoch", "loss", "val_loss", "learning_rate"}
    for row in rows:
        for key, value in row.items():
            assert np.isfinite(float(value)), (key, value)
    assert float(rows[0]["learning_rate"]) == pytest.approx(0.01)


def test_listed_callbacks_write_inside_the_run_dir(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (CONFIGS / "mnist_mlp.yaml").read_text()
        + "callbacks:\n"
        + "  - CSVLogger: {filename: logs/mine.csv}\n"
        + "  - TensorBoard: {log_dir: tb, update_freq: batch}\n"
        + "  - ModelCheckpoint: {filepath: 'ckpt/w-{epoch:02d}.weights.h5', save_weights_only: true}\n"
    )
    run, _ = fit(cfg, tmp_path)
    assert (run / "logs" / "mine.csv").read_text() == (run / "history.csv").read_text()
    assert {"batch_loss", "epoch_loss"} <= tensorboard_tags(run / "tb" / "train")
    assert not (run / "tensorboard").exists()  # the listed TensorBoard replaces the default
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == [
        "w-01.weights.h5",
        "w-02.weights.h5",
    ]


def test_tfrecord_source(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((256, 6), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype("int64")
    with tf.io.TFRecordWriter(str(tmp_path / "train.tfrecord")) as w:
        for xi, yi in zip(x, y, strict=True):
            feats = {
                "features": tf.train.Feature(float_list=tf.train.FloatList(value=xi)),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[yi])),
            }
            w.write(tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        textwrap.dedent("""\
        seed: 1
        data:
          source: tfdata
          train: {tfrecord: train.tfrecord, label: label, features: {features: {shape: [6]}, label: {shape: [1], dtype: int64}}}
        model: {layers: [{Input: {shape: [6]}}, {Dense: {units: 2, activation: softmax}}]}
        compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
        fit: {epochs: 2, batch_size: 32}
    """)
    )
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = read_history(only_run(tmp_path / "runs"))
    assert len(rows) == 2 and "accuracy" in rows[0]
