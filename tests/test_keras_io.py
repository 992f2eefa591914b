"""configs/keras_io/: keras.io examples written as trainrun configs.

Every config is checked without TensorFlow (keys, names, values), and trains
for one epoch on a tiny slice: MNIST from $TRAINRUN_DATA_DIR, the other data
sets made here in tmp_path in the real files' layout (folders of images and
texts, Kaggle's quoted CSV, .npz arrays) and pointed at with --set. Images are
shrunk by --set so that the whole file stays near two minutes on 2 cores.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, cli, only_run, read_history, run_info

KERAS_IO = CONFIGS / "keras_io"
NAMES = sorted(p.name for p in KERAS_IO.glob("*.yaml"))


# ---------------------------------------------------------------- tiny data


def make_images(root: Path, classes: tuple[str, ...], per_class: int, size: int) -> Path:
    """JPEGs of varied sizes (the loader resizes them), one shade per class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size + i % 3, size + 2 * (i % 2), 3)
            pixels = np.clip(rng.normal(60 + 120 * k, 40, shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg")
    return root


def make_imdb_texts(root: Path, per_class: int) -> Path:
    """aclImdb's layout: train/{pos,neg,unsup} and test/{pos,neg}, with "<br />" tags."""
    words = {"pos": "a great film, good acting", "neg": "an awful film, bad acting"}
    for split, classes in (("train", ("pos", "neg", "unsup")), ("test", ("pos", "neg"))):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            text = words.get(name, "no label here")
            for i in range(per_class):
                (folder / f"{i}_{i % 10}.txt").write_text(f"{text}.<br /><br />{text} " * (i + 1))
    return root


def make_creditcard_csv(path: Path, rows: int) -> Path:
    """Kaggle's creditcard.csv layout: quoted header, Time, V1-V28, Amount, quoted "Class"."""
    rng = np.random.default_rng(0)
    y = (rng.random(rows) < 0.2).astype(int)
    x = rng.normal(size=(rows, 30)).round(5)
    x[:, 0] = np.arange(rows) * 7.0  # Time, in seconds: a wide range, for Normalization
    x[:, 1] += 2.0 * y
    header = ["Time", *(f"V{i}" for i in range(1, 29)), "Amount", "Class"]
    lines = [",".join(f'"{h}"' for h in header)]
    lines += [",".join([*map(str, row), f'"{label}"']) for row, label in zip(x, y, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_imdb_npz(path: Path, samples: int) -> Path:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, samples)
    # 50 words instead of keras.io's 200: the model takes any length, and it is 4x faster.
    x = rng.integers(1, 20000, (samples, 50)).astype(np.int32)
    x[:, :20] = 0  # left padding, as pad_sequences does
    x[:, -1] = 1 + y  # a word that gives the label away
    np.savez(path, x_train=x, y_train=y, x_val=x[: samples // 2], y_val=y[: samples // 2])
    return path


def make_forda_npz(path: Path, samples: int) -> Path:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 20, 500)
    y = rng.integers(0, 2, samples)
    x = np.sin(t[None, :] * (1 + y[:, None])) + rng.normal(0, 0.3, (samples, 500))
    np.savez(path, x_train=x[..., None], y_train=y, x_test=x[:16, :, None], y_test=y[:16])
    return path


def data_for(name: str, tmp: Path) -> list[str]:
    """--set options pointing the config at tiny data made in tmp (MNIST: the test data)."""
    sets: list[str] = []
    if name == "mnist_convnet.yaml":
        sets = ["data.limit.test=500"]
    elif name == "custom_loss_metric.yaml":
        sets = ["data.limit.train=1200", "data.limit.test=500"]
    elif name == "credit_card_fraud.yaml":
        sets = [f"data.train.path={make_creditcard_csv(tmp / 'creditcard.csv', 300)}"]
        sets += ["fit.batch_size=64", "fit.class_weight={0: 1.0, 1: 4.0}"]
    elif name == "text_classification.yaml":
        root = make_imdb_texts(tmp / "aclImdb", per_class=20)
        sets = [f"data.text_folder.directory={root / 'train'}"]
        sets += [f"data.text_folder.test_directory={root / 'test'}"]
    elif name == "image_classification.yaml":
        root = make_images(tmp / "PetImages", ("Cat", "Dog"), per_class=20, size=40)
        sets = [f"data.image_folder.directory={root}", "data.image_folder.image_size=[32,32]"]
        sets += ["model.inputs.image.shape=[32,32,3]", "fit.batch_size=16"]
    elif name == "transfer_learning.yaml":
        # Xception's smallest input is 71x71.
        root = make_images(tmp / "cats_vs_dogs", ("cat", "dog"), per_class=5, size=80)
        sets = [f"data.image_folder.directory={root}", "data.image_folder.image_size=[71,71]"]
        sets += ["model.layers.0.Input.shape=[71,71,3]"]
    elif name == "bidirectional_lstm_imdb.yaml":
        npz = make_imdb_npz(tmp / "imdb.npz", 64)
        sets = [f"data.train.path={npz}", f"data.validation.path={npz}"]
    elif name == "timeseries_classification.yaml":
        npz = make_forda_npz(tmp / "forda.npz", 120)
        sets = [f"data.train.path={npz}", f"data.test.path={npz}"]
    else:
        raise AssertionError(f"no tiny data for {name}: add it to data_for()")
    return [arg for s in sets for arg in ("--set", s)]


# ---------------------------------------------------------------- checks


def test_there_are_the_eight_examples():
    assert len(NAMES) >= 8, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_config_is_valid_without_tensorflow(name, tmp_path):
    """What `trainrun validate` checks before TensorFlow: keys, types, values, the names
    and parameters of layers, optimizer, losses, metrics and callbacks, the data paths."""
    import sys

    from trainrun.config import load_config
    from trainrun.precheck import precheck

    sets = data_for(name, tmp_path)[1::2]  # the values of the --set options
    if "tensorflow" in sys.modules:
        # Another test file on this worker imported it: ask a fresh process instead.
        code = (
            "import sys; from trainrun.config import load_config; "
            "from trainrun.precheck import precheck; "
            f"precheck(load_config({str(KERAS_IO / name)!r}, {sets!r})); "
            "print('tensorflow' in sys.modules)"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == "False", r.stdout + r.stderr
        return
    precheck(load_config(KERAS_IO / name, sets))
    assert "tensorflow" not in sys.modules


def test_precheck_sees_a_misspelt_layer_in_these_configs(tmp_path):
    """The check above can fail: a typo in a keras.io config is refused without TensorFlow."""
    from trainrun.config import load_config
    from trainrun.errors import TrainrunError
    from trainrun.precheck import precheck

    bad = tmp_path / "bad.yaml"
    text = (KERAS_IO / "timeseries_classification.yaml").read_text()
    bad.write_text(text.replace("GlobalAveragePooling1D", "GlobalAveragePoolin1D"))
    sets = data_for("timeseries_classification.yaml", tmp_path)[1::2]
    with pytest.raises(TrainrunError, match="GlobalAveragePoolin1D"):
        precheck(load_config(bad, sets))


@pytest.mark.parametrize("name", NAMES)
def test_config_says_which_keras_io_example_it_follows(name):
    head = (KERAS_IO / name).read_text().splitlines()[0]
    assert head.startswith("# keras.io: "), head


def finite_metrics(run: Path) -> dict[str, float]:
    rows = read_history(run)
    assert rows, "history.csv has no epoch"
    last = {k: float(v) for k, v in rows[-1].items() if k != "epoch"}
    bad = {k: v for k, v in last.items() if not math.isfinite(v)}
    assert not bad, f"metrics not finite: {bad}"
    return last


# One epoch each; the MNIST convnet two on all 4,000 test-data images, then
# `trainrun evaluate` on the test split for an accuracy floor.
EPOCHS = {"mnist_convnet.yaml": 2}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_config_trains_on_a_tiny_slice(name, tmp_path):
    sets = data_for(name, tmp_path)
    runs = tmp_path / "runs"
    epochs = EPOCHS.get(name, 1)
    r = cli("fit", KERAS_IO / name, "--runs-dir", runs, *sets, "--set", f"fit.epochs={epochs}")
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(runs)
    assert run_info(run)["status"] == "completed"
    assert run_info(run)["epochs_done"] == epochs
    assert (run / "model.keras").is_file()
    last = finite_metrics(run)
    assert "loss" in last and "val_loss" in last, last

    if name == "mnist_convnet.yaml":
        # keras.io's one-hot labels give categorical accuracy; the convnet learns.
        r = cli("evaluate", run)
        assert r.returncode == 0, r.stdout + r.stderr
        result = json.loads((run / "eval.json").read_text())
        assert result["split"] == "test", result
        assert result["samples"] == 500, result
        assert result["metrics"]["accuracy"] > 0.85, result
    if name == "credit_card_fraud.yaml":
        # 80% of 300 rows; keras.io's six counting metrics.
        assert "adapted normalization on 240 training samples" in r.stdout, r.stdout
        assert {"fn", "fp", "tn", "tp", "precision", "recall"} <= set(last), last
        # Training counts are weighted by class_weight (as in Keras); validation's are not.
        assert sum(last[f"val_{k}"] for k in ("fn", "fp", "tn", "tp")) == 60, last
    if name == "text_classification.yaml":
        # 80% of the 40 pos/neg files; unsup/ is not a class.
        assert "adapted text_vectorization on 32 training samples" in r.stdout, r.stdout
    if name == "custom_loss_metric.yaml":
        # Counts of correct samples: of the 1,000 training samples (1/6 held out), and of
        # the 200 validation ones; the training count is not overwritten by validation's.
        assert last["val_categorical_true_positives"] <= 200, last
        assert 200 < last["categorical_true_positives"] <= 1000, last
    if name == "timeseries_classification.yaml":
        assert (run / "checkpoints" / "best_model.keras").is_file()
    if name == "transfer_learning.yaml":
        # keras.io's second stage, as the config's comment writes it: the backbone
        # unfrozen, Adam(1e-5), from the first run's weights.
        second = tmp_path / "finetune"
        r = cli(
            "fit", KERAS_IO / name, "--runs-dir", second, *sets,
            "--set", "model.layers.4.Xception.trainable=true",
            "--set", "compile.optimizer.learning_rate=1e-5",
            "--set", f"model.initial_weights={run / 'model.keras'}",
            "--set", "fit.epochs=1",
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        finetuned = only_run(second)
        assert run_info(finetuned)["status"] == "completed"
        finite_metrics(finetuned)
