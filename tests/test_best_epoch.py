"""The best epoch and the final model's weights.

"Best" follows the direction the monitoring callback itself uses: its `mode`
when it sets one, else Keras' own rule (the metric object's direction, then the
name `loss`), never a guess from the metric's name. The final model holds the
weights of the last epoch, or of EarlyStopping's own best epoch when it
restored them; the summary and run.json say which, and `trainrun evaluate`
measures exactly that epoch's row of history.csv.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import cli, data_dir, only_run, read_history, run_info

SMALL = ["--set", "data.limit.train=600"]


# ---------------------------------------------------------------- training (slow)


def binary_data(tmp_path: Path) -> None:
    """MNIST images labelled 'digit below 5': a binary task, so AUC applies."""
    with np.load(Path(data_dir()) / "mnist.npz") as d:
        x = d["x_train"][:1000].reshape(-1, 784)
        y = (d["y_train"][:1000] < 5).astype("int64")
    np.savez(tmp_path / "binary.npz", x=x, y=y)


def auc_config(tmp_path: Path, metric: str, callback: str) -> Path:
    binary_data(tmp_path)
    cfg = tmp_path / "auc.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        name: auc
        seed: 1
        data:
          source: numpy
          train: {{path: binary.npz, x: x, y: y}}
          scale: 255.0
          validation_split: 0.3
        model:
          layers:
            - Input: {{shape: [784]}}
            - Dense: {{units: 8, activation: relu}}
            - Dense: {{units: 1, activation: sigmoid}}
        compile:
          optimizer: {{RMSprop: {{learning_rate: 0.0003}}}}
          loss: binary_crossentropy
          metrics: [{metric}]
        fit: {{epochs: 4, batch_size: 64}}
        callbacks:
          - {callback}
        """)
    )
    return cfg


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(row[name]) for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("metric", "callback", "monitor", "mode"),
    [
        # The callback's own mode.
        ("AUC", "EarlyStopping: {monitor: val_AUC, mode: max, patience: 10}", "val_AUC", "max"),
        # No mode: Keras' rule, from the AUC object's direction (up), not the name.
        ("AUC", "EarlyStopping: {monitor: val_AUC, patience: 10}", "val_AUC", "max"),
        ("AUC", "ModelCheckpoint: {filepath: m.keras, monitor: val_AUC}", "val_AUC", "max"),
        # The mode wins over the metric's direction and its name.
        (
            "{AUC: {num_thresholds: 50}}",
            "EarlyStopping: {monitor: val_auc, mode: min, patience: 10}",
            "val_auc",
            "min",
        ),
    ],
    ids=["val_AUC-mode-max", "val_AUC-auto", "checkpoint-val_AUC-auto", "val_auc-mode-min"],
)
def test_best_follows_the_monitors_direction(tmp_path, metric, callback, monitor, mode):
    cfg = auc_config(tmp_path, metric, callback)
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    values = column(read_history(run), monitor)
    # The case only tells the directions apart when the extremes are at different epochs.
    assert np.argmax(values) != np.argmin(values), values
    pick = np.argmax if mode == "max" else np.argmin
    expected = int(pick(values)) + 1
    best = run_info(run)["best"]
    assert best["monitor"] == monitor and best["mode"] == mode
    assert best["epoch"] == expected and math.isclose(best["value"], values[expected - 1])
    assert re.search(rf"best +{monitor} \S+ at epoch {expected}\n", r.stdout), r.stdout

    shown = cli("show", run)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert any(line.split("│")[1].strip() == f"{expected} *" for line in _table_lines(shown.stdout))
    listed = cli("runs", "--runs-dir", tmp_path / "runs")
    assert f"@ {expected}" in listed.stdout, listed.stdout


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.count("│") >= 2]


def es_config(tmp_path: Path, early_stopping: str, epochs: int) -> Path:
    cfg = tmp_path / "es.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        name: es
        seed: 1
        data: {{source: mnist, flatten: true, scale: 255.0, validation_split: 0.2}}
        model:
          layers:
            - Input: {{shape: [784]}}
            - Dense: {{units: 32, activation: relu}}
            - Dense: {{units: 10, activation: softmax}}
        compile:
          optimizer: {{RMSprop: {{learning_rate: 0.001}}}}
          loss: sparse_categorical_crossentropy
          metrics: [sparse_categorical_accuracy]
        fit: {{epochs: {epochs}, batch_size: 32}}
        callbacks:
          - EarlyStopping: {early_stopping}
        """)
    )
    return cfg


def early_stopping_best(values: list[float], min_delta: float) -> int:
    """The 1-based epoch EarlyStopping (mode min) keeps as its best: an epoch counts only
    when it is below the best so far by more than min_delta."""
    best, epoch = None, 0
    for i, value in enumerate(values):
        if best is None or value + min_delta < best:
            best, epoch = value, i + 1
    return epoch


@pytest.mark.slow
@pytest.mark.parametrize(
    ("early_stopping", "epochs", "restores", "status"),
    [
        # min_delta makes EarlyStopping's best an earlier epoch than the lowest val_loss.
        (
            "{monitor: val_loss, min_delta: 0.05, patience: 8, restore_best_weights: true}",
            8,
            True,
            "completed",
        ),
        (
            "{monitor: val_loss, min_delta: 0.05, patience: 1, restore_best_weights: true}",
            10,
            True,
            "stopped_early",
        ),
        ("{monitor: val_loss, min_delta: 0.05, patience: 8}", 8, False, "completed"),
    ],
    ids=["restored-completed", "restored-stopped-early", "not-restored"],
)
def test_final_model_says_which_epochs_weights_it_holds(
    tmp_path, early_stopping, epochs, restores, status
):
    cfg = es_config(tmp_path, early_stopping, epochs)
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    info = run_info(run)
    rows = read_history(run)
    val_loss = column(rows, "val_loss")
    assert info["status"] == status
    lowest = int(np.argmin(val_loss)) + 1
    assert info["best"]["epoch"] == lowest
    if restores:
        held = early_stopping_best(val_loss, 0.05)
        assert held != lowest, val_loss  # the case this test is about
        why = "EarlyStopping restore_best_weights"
    else:
        held, why = len(rows), "last epoch"
    assert info["final_weights_epoch"] == held
    assert f"final model  weights of epoch {held} ({why})" in r.stdout, r.stdout

    # What evaluate measures on the validation split is that epoch's row.
    ev = cli("evaluate", run, "--split", "validation")
    assert ev.returncode == 0, ev.stdout + ev.stderr
    metrics = json.loads((run / "eval.json").read_text())["metrics"]
    row = rows[held - 1]
    for name, value in metrics.items():
        assert math.isclose(value, float(row[f"val_{name}"]), rel_tol=1e-4, abs_tol=1e-5), (
            name,
            value,
            row,
        )

    shown = cli("show", run)
    assert f"weights of epoch {held} ({why})" in shown.stdout, shown.stdout


# ---------------------------------------------------------------- reading (fast)


def make_run(tmp_path: Path, **info) -> Path:
    run = tmp_path / "runs" / "auc-run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        "name: auc\nseed: 1\nmodel:\n  layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\n"
        "compile: {optimizer: rmsprop, loss: mse}\nfit: {epochs: 4, batch_size: 8}\n"
    )
    # val_AUC rises: lowest at epoch 1, highest at epoch 4.
    (run / "history.csv").write_text(
        "epoch,AUC,loss,val_AUC,val_loss\n"
        + "".join(
            f"{e},{0.6 + e / 20},{0.7 - e / 50},{0.7 + e / 30},{0.66 - e / 80}\n" for e in range(4)
        )
    )
    record = {
        "id": "auc-run",
        "status": "completed",
        "error": None,
        "created": "2026-01-02T10:00:00+00:00",
        "finished": "2026-01-02T10:01:00+00:00",
        "epochs_done": 4,
        "epochs": 4,
        "pid": None,
        "train_seconds": 60.0,
        **info,
    }
    (run / "run.json").write_text(json.dumps(record))
    return run


def test_show_and_runs_take_the_best_from_run_json(tmp_path):
    run = make_run(
        tmp_path,
        best={"monitor": "val_AUC", "value": 0.8, "epoch": 4, "mode": "max"},
        final_weights_epoch=3,
        final_weights_source="EarlyStopping restore_best_weights",
    )
    shown = cli("show", run)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    marked = [line.split("│")[1].strip() for line in _table_lines(shown.stdout)]
    assert "4 *" in marked and "1 *" not in marked, shown.stdout
    assert "val_AUC 0.8000 @ 4 (max)" in shown.stdout, shown.stdout
    assert "weights of epoch 3 (EarlyStopping restore_best_weights)" in shown.stdout
    listed = cli("runs", "--runs-dir", tmp_path / "runs")
    assert "0.8000 @ 4" in listed.stdout, listed.stdout


def test_show_of_an_older_run_json_without_direction(tmp_path):
    # Written before run.json had `mode` and `final_weights_epoch`: shown as it is.
    run = make_run(tmp_path, best={"monitor": "val_AUC", "value": 0.7, "epoch": 1})
    shown = cli("show", run)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    marked = [line.split("│")[1].strip() for line in _table_lines(shown.stdout)]
    assert "1 *" in marked and "4 *" not in marked, shown.stdout
    assert "val_AUC 0.7000 @ 1" in shown.stdout and "(max)" not in shown.stdout
    assert "final model" not in shown.stdout


@pytest.mark.slow
def test_final_weights_epoch_after_resume(tmp_path):
    # EarlyStopping's best epoch and best weights are resume state: a run trained on
    # with --epochs names (and holds) the epoch it would have without the break.
    cfg = es_config(
        tmp_path, "{monitor: val_loss, min_delta: 0.05, patience: 8, restore_best_weights: true}", 4
    )
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    r = cli("resume", run, "--epochs", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = read_history(run)
    assert len(rows) == 8
    held = early_stopping_best(column(rows, "val_loss"), 0.05)
    assert held > 4  # chosen after the resume, against the best kept from before it
    assert run_info(run)["final_weights_epoch"] == held
    assert f"final model  weights of epoch {held} (EarlyStopping restore_best_weights)" in r.stdout
    ev = cli("evaluate", run, "--split", "validation")
    assert ev.returncode == 0, ev.stdout + ev.stderr
    loss = json.loads((run / "eval.json").read_text())["metrics"]["loss"]
    assert math.isclose(loss, float(rows[held - 1]["val_loss"]), rel_tol=1e-4, abs_tol=1e-5)


@pytest.mark.slow
def test_checkpoint_best_takes_the_direction_training_found(tmp_path):
    """--checkpoint best among ModelCheckpoint files named by val_AUC, with mode auto:
    the highest is best, as run.json's best.mode says (the name alone said 'min')."""
    from trainrun.engine.saved import _pick_from_callback
    from trainrun.runs.rundir import RunDir

    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    for value in ("0.61", "0.93", "0.75"):
        (run / "ckpt" / f"m-{value}.keras").write_bytes(b"")
    best = {"monitor": "val_AUC", "value": 0.93, "epoch": 2, "mode": "max"}
    (run / "run.json").write_text(json.dumps({"status": "completed", "best": best}))
    args = {"filepath": "ckpt/m-{val_AUC:.2f}.keras", "monitor": "val_AUC"}
    path, how = _pick_from_callback(RunDir(run), args)
    assert path.name == "m-0.93.keras", how
    (run / "run.json").write_text(
        json.dumps({"status": "completed", "best": {**best, "mode": "min"}})
    )
    assert _pick_from_callback(RunDir(run), args)[0].name == "m-0.61.keras"
