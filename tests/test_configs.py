"""Every config in configs/ trains on a small slice, and does what its guide example shows."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import CONFIGS, cli, only_run, read_history, run_info

pytestmark = pytest.mark.slow

# Small slices: in-memory sources take samples, tf.data sources take batches.
SLICE = {
    "tfdata.yaml": ["--set", "data.limit.train=30", "--set", "data.limit.validation=5"],
    "multi_io.yaml": ["--set", "data.limit.train=20"],
}
EPOCHS = {"lr_schedule.yaml": 3, "lr_schedule_fn.yaml": 3, "early_stopping.yaml": 3}


def train(name: str, tmp_path):
    extra = SLICE.get(name, ["--set", "data.limit.train=2000"])
    r = cli(
        "fit",
        CONFIGS / name,
        "--runs-dir",
        tmp_path,
        *extra,
        "--set",
        f"fit.epochs={EPOCHS.get(name, 2)}",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path)
    assert run_info(run)["status"] in ("completed", "stopped_early")
    return run, r


def lrs(run) -> list[float]:
    return [float(row["learning_rate"]) for row in read_history(run)]


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_trains(name, tmp_path):
    run, _ = train(name, tmp_path)
    assert (run / "model.keras").is_file()
    assert read_history(run)


def test_lr_schedule_piecewise_boundaries_are_first_epochs(tmp_path):
    run, _ = train("lr_schedule.yaml", tmp_path)
    assert lrs(run) == pytest.approx([1e-3, 1e-3, 5e-4], rel=1e-6)


def test_lr_schedule_function_beside_the_config(tmp_path):
    run, _ = train("lr_schedule_fn.yaml", tmp_path)
    assert lrs(run) == pytest.approx([1e-3, 1e-3, 5e-4], rel=1e-6)


def test_model_checkpoint_best_only_filenames(tmp_path):
    run, _ = train("model_checkpoint.yaml", tmp_path)
    files = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert files
    assert all(re.fullmatch(r"epoch\d{2}-\d+\.\d{2}\.keras", f) for f in files), files


def test_custom_callback_prints_into_train_log(tmp_path):
    run, r = train("custom_callback.yaml", tmp_path)
    assert "The average loss for epoch 0 is" in r.stdout
    assert "The average loss for epoch 1 is" in (run / "train.log").read_text()


def test_multi_io_per_output_losses_and_metrics(tmp_path):
    run, _ = train("multi_io.yaml", tmp_path)
    row = read_history(run)[0]
    for key in (
        "class_output_loss",
        "score_output_loss",
        "score_output_mean_absolute_error",
        "class_output_sparse_categorical_accuracy",
        "val_class_output_sparse_categorical_accuracy",
    ):
        assert key in row, sorted(row)
    # loss_weights {score: 2, class: 1}: the total is the weighted sum
    total = float(row["loss"])
    assert total == pytest.approx(
        2 * float(row["score_output_loss"]) + float(row["class_output_loss"]), rel=1e-3
    )


def test_reduce_lr_on_plateau_lowers_the_recorded_rate(tmp_path):
    r = cli(
        "fit",
        CONFIGS / "reduce_lr.yaml",
        "--runs-dir",
        tmp_path,
        "--set",
        "data.limit.train=1000",
        "--set",
        "fit.epochs=4",
        "--set",
        "callbacks.0.ReduceLROnPlateau.min_delta=10",  # never "improves"
    )
    assert r.returncode == 0, r.stderr
    rates = lrs(only_run(tmp_path))
    assert rates[0] == pytest.approx(0.01)
    assert rates[-1] < rates[0]
    assert np.all(np.diff(rates) <= 0)
