"""Faults of predict, evaluate and their data: each ends in one clean `error:` line.

One small run (500 MNIST samples, 1 epoch) is trained once for the module;
tests that damage a run work on a copy of it.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import CONFIGS, assert_clean_error, cli, only_run

pytestmark = pytest.mark.slow

TINY = ["--set", "data.limit.train=500", "--set", "fit.epochs=1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    r = cli("fit", CONFIGS / "mnist_mlp.yaml", "--runs-dir", runs, *TINY)
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run(runs)


@pytest.fixture
def run_copy(run, tmp_path) -> Path:
    """A copy of the shared run that a test may damage."""
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    return copy


def mnist(split: str = "test", n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    with np.load(os.path.join(os.environ["TRAINRUN_DATA_DIR"], "mnist.npz")) as f:
        return f[f"x_{split}"][:n], f[f"y_{split}"][:n]


# ---------------------------------------------------------------- 1. predict's input and --out


def test_predict_refuses_a_string_array(run, tmp_path):
    source = tmp_path / "words.npy"
    np.save(source, np.array([["a"] * 784, ["b"] * 784]))
    assert_clean_error(cli("predict", run, source), "words.npy", "<U1", "numbers")


def test_predict_refuses_an_empty_array(run, tmp_path):
    source = tmp_path / "empty.npy"
    np.save(source, np.zeros((0, 784), dtype=np.uint8))
    assert_clean_error(cli("predict", run, source), "empty.npy", "no samples", "(0, 784)")
    assert not (run / "predictions" / "empty.npy").exists()


def test_predict_refuses_a_0d_array(run, tmp_path):
    source = tmp_path / "scalar.npy"
    np.save(source, np.array(3.0))
    assert_clean_error(cli("predict", run, source), "scalar.npy", "0-d", "(N, ...)")


def test_predict_refuses_a_header_that_claims_more_than_the_file_holds(run, tmp_path):
    source = tmp_path / "huge.npy"
    header = {"descr": "|u1", "fortran_order": False, "shape": (10**12, 784)}
    with source.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(bytes(784 * 3))
    # believed, the header would ask for 784 TB: the size is checked against the file first
    r = cli("predict", run, source)
    assert_clean_error(r, "huge.npy", "(1000000000000, 784)", "truncated")


def test_predict_refuses_the_same_in_an_npz(run, tmp_path):
    x, _ = mnist(n=5)
    source = tmp_path / "cut.npz"
    np.savez(source, x=x)
    # rewrite the member with a header claiming 10**12 rows, same bytes otherwise
    with zipfile.ZipFile(source) as z:
        raw = z.read("x.npy")
    claimed = raw.replace(b"(5, 28, 28)", b"(1000000000000, 28, 28)")
    with zipfile.ZipFile(source, "w") as z:
        z.writestr("x.npy", claimed)
    assert_clean_error(cli("predict", run, source), "cut.npz", "'x'", "truncated")


def test_predict_out_into_an_unwritable_place(run, tmp_path):
    x, _ = mnist(n=5)
    source = tmp_path / "digits.npy"
    np.save(source, x)
    assert_clean_error(
        cli("predict", run, source, "--out", "/proc/preds.npy"), "--out", "/proc", "cannot write"
    )


def test_predict_out_onto_an_existing_directory(run, tmp_path):
    x, _ = mnist(n=5)
    source = tmp_path / "digits.npy"
    np.save(source, x)
    target = tmp_path / "preds.npy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert_clean_error(cli("predict", run, source, "--out", target), "--out", "directory")
    assert (target / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_predict_out_onto_its_own_input(run, tmp_path):
    x, _ = mnist(n=5)
    source = tmp_path / "digits.npy"
    np.save(source, x)
    assert_clean_error(cli("predict", run, source, "--out", source), "--out", "INPUT")
    np.testing.assert_array_equal(np.load(source), x)


# ---------------------------------------------------------------- 2. object arrays in training data


def test_numpy_source_with_object_arrays(tmp_path):
    data = tmp_path / "objects.npz"
    np.savez(
        data,
        x=np.array([np.zeros(3), np.zeros(4)], dtype=object),
        y=np.array([0, 1]),
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data:\n  source: numpy\n  train: {path: objects.npz}\n"
        "model:\n  layers:\n    - Input: {shape: [3]}\n    - Dense: {units: 2}\n"
        "compile: {optimizer: adam, loss: sparse_categorical_crossentropy}\n"
        "fit: {epochs: 1, batch_size: 2}\n"
    )
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs")
    assert_clean_error(r, "objects.npz", "'x'", "object", "data.train")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# ---------------------------------------------------------------- 3. misleading messages


def test_too_few_samples_for_validation_split_says_so(tmp_path):
    r = cli(
        "fit",
        CONFIGS / "mnist_mlp.yaml",
        "--runs-dir",
        tmp_path / "runs",
        "--set",
        "data.limit.train=1",
    )
    assert_clean_error(r, "validation_split", "1 training sample", "at least 5")
    assert "reshape" not in r.stderr, r.stderr


def test_truncated_model_is_called_truncated(run_copy, tmp_path):
    model = run_copy / "model.keras"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    r = cli("evaluate", run_copy)
    assert_clean_error(r, "model.keras", "truncated")
    assert "not found" not in r.stderr, r.stderr
    x, _ = mnist(n=5)
    np.save(tmp_path / "digits.npy", x)
    assert_clean_error(cli("predict", run_copy, tmp_path / "digits.npy"), "truncated")


def test_evaluate_without_model_keras_suggests_what_works(run_copy):
    (run_copy / "model.keras").unlink()
    r = cli("evaluate", run_copy)
    assert_clean_error(r, "no model.keras", "--checkpoint", "trainrun fit")
    assert "trainrun resume" not in r.stderr, r.stderr
    # what the message used to suggest is indeed refused for a completed run
    assert cli("resume", run_copy).returncode == 2


def test_training_prints_no_tensorflow_log_lines(tmp_path):
    # Under op determinism tf.data rewrites a parallel map into a MapDataset that keeps
    # an attribute its definition lacks, and TensorFlow logs an E0000 line about it.
    # trainrun's pipeline maps sequentially there (what the rewrite would do anyway),
    # so the line is never logged: not even with all of TensorFlow's logging on.
    sets = ["--set", "deterministic=true"]
    for env in ({}, {"TF_CPP_MIN_LOG_LEVEL": "0"}):
        r = cli(
            "fit",
            CONFIGS / "mnist_mlp.yaml",
            "--runs-dir",
            tmp_path / "runs",
            *TINY,
            *sets,
            env=env,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "use_unbounded_threadpool" not in r.stderr, r.stderr
        assert "absl::InitializeLog" not in r.stderr, r.stderr


# ---------------------------------------------------------------- 4. input already scaled


def test_predict_refuses_input_that_is_already_scaled(run, tmp_path):
    x, y = mnist()
    raw = tmp_path / "raw.npy"
    np.save(raw, x)
    r = cli("predict", run, raw, "--out", tmp_path / "raw_preds.npy")
    assert r.returncode == 0, r.stdout + r.stderr
    accuracy = (np.load(tmp_path / "raw_preds.npy").argmax(axis=1) == y).mean()
    assert accuracy > 0.3  # the run has learnt something from 500 samples (chance: 0.1)

    scaled = tmp_path / "scaled.npy"
    np.save(scaled, x.astype(np.float32) / 255.0)
    r = cli("predict", run, scaled, "--out", tmp_path / "scaled_preds.npy")
    assert_clean_error(r, "scaled.npy", "float32", "[0, 1]", "uint8", "255", "--no-preprocess")
    assert not (tmp_path / "scaled_preds.npy").exists()
    # the way out the message names works, and gives the raw input's predictions
    flat = tmp_path / "flat.npy"
    np.save(flat, x.reshape(len(x), -1).astype(np.float32) / 255.0)
    r = cli("predict", run, flat, "--out", tmp_path / "flat_preds.npy", "--no-preprocess")
    assert r.returncode == 0, r.stdout + r.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "flat_preds.npy"), np.load(tmp_path / "raw_preds.npy"), atol=1e-5
    )


def test_predict_accepts_whole_valued_floats_and_blank_images(run, tmp_path):
    x, _ = mnist(n=5)
    source = tmp_path / "floats.npy"
    np.save(source, x.astype(np.float64))  # raw values, only stored as floats
    r = cli("predict", run, source, "--out", tmp_path / "p.npy")
    assert r.returncode == 0, r.stdout + r.stderr
    blank = tmp_path / "blank.npy"
    np.save(blank, np.zeros((2, 28, 28), dtype=np.float32))  # the same scaled or not
    r = cli("predict", run, blank, "--out", tmp_path / "b.npy")
    assert r.returncode == 0, r.stdout + r.stderr
