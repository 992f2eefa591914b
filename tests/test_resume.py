"""`trainrun resume`: killed or interrupted anywhere, the run ends bitwise as if never stopped.

Every case compares against one uninterrupted run of tests/resume_fixtures/tiny.yaml
(deterministic, seeded): the same history.csv and bitwise the same final weights.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ROOT,
    assert_clean_error,
    assert_same_model,
    cli,
    read_history,
    resume_workdir,
    run_info,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return resume_workdir(tmp_path_factory, "resume")


def _fit(
    workdir: Path, name: str, *extra: str, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, Path]:
    runs = workdir / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    r = cli("fit", workdir / "tiny.yaml", "--runs-dir", runs, "--name", name, *extra, env=env)
    (run,) = set(runs.iterdir()) - before
    return r, run


@pytest.fixture(scope="module")
def baseline(workdir) -> Path:
    r, run = _fit(workdir, "baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    return run


def last_state(run: Path) -> dict[str, np.ndarray]:
    """The variables saved at the last epoch end: the weights training ended with."""
    latest = (run / "state" / "LATEST").read_text().strip()
    with np.load(run / "state" / latest / "arrays.npz") as f:
        return {k: f[k] for k in f.files if k.startswith(("model/", "optimizer/"))}


def assert_same_run(run: Path, baseline: Path) -> None:
    got_state, want_state = last_state(run), last_state(baseline)
    assert got_state.keys() == want_state.keys()
    for key, value in want_state.items():
        assert np.array_equal(got_state[key], value), key
    assert_same_model(run, baseline)


def resume(run: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    r = cli("resume", run, *extra, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.mark.parametrize(
    "kill_at",
    ["1:9", "2:-1", "0:3", "1:val"],
    ids=["mid-epoch", "between-epochs", "first-epoch", "during-validation"],
)
def test_sigkill_then_resume_is_bitwise_identical(workdir, baseline, kill_at):
    r, run = _fit(workdir, f"kill{kill_at.replace(':', '_')}", env={"KILL_AT": kill_at})
    assert r.returncode == -signal.SIGKILL
    assert run_info(run)["status"] == "running"  # killed: nothing could record it
    out = resume(run)
    assert "resuming from epoch" in out.stdout
    assert_same_run(run, baseline)
    info = run_info(run)
    assert info["status"] == "completed" and len(info["resumes"]) == 1


def test_second_crash_inside_the_resumed_epoch(workdir, baseline):
    r, run = _fit(workdir, "twice", env={"KILL_AT": "1:9"})
    assert r.returncode == -signal.SIGKILL
    again = cli("resume", run, env={"KILL_AT": "1:15"})
    assert again.returncode == -signal.SIGKILL
    resume(run)
    assert_same_run(run, baseline)
    assert [row["epoch"] for row in read_history(run)] == ["0", "1", "2", "3"]


def test_ctrl_c_saves_marks_interrupted_and_resumes(workdir, baseline):
    r, run = _fit(workdir, "int", env={"INT_AT": "2:5"})
    assert r.returncode == 130, r.stdout + r.stderr
    assert f"trainrun resume {run}" in " ".join(r.stdout.split()), r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert run_info(run)["status"] == "interrupted"
    resume(run)
    assert_same_run(run, baseline)


def test_second_ctrl_c_exits_at_once_without_corruption(workdir, baseline):
    r, run = _fit(workdir, "int2", env={"INT_AT": "2:5:2"})
    assert r.returncode == 130
    assert run_info(run)["status"] == "interrupted"
    resume(run)
    assert_same_run(run, baseline)


def _unfinished_states(runs: Path, pattern: str) -> list[Path]:
    """State directories being written: created, but without the meta.json written last."""
    return [p for p in runs.glob(f"{pattern}/state/ckpt-*") if not (p / "meta.json").exists()]


def _kill_inside_a_state_write(proc: subprocess.Popen, runs: Path, pattern: str, skip: int) -> bool:
    """SIGKILL `proc` while it writes a state, after letting `skip` writes complete.

    Returns whether the kill landed inside a write: an unfinished state directory
    is still there once the process is dead (a write can complete between the
    check and the kill; then this kill did not count).
    """
    seen: set[str] = set()
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        writing = _unfinished_states(runs, pattern)
        seen.update(p.name for p in writing)
        if writing and len(seen) > skip:
            proc.kill()
            break
        time.sleep(0.0005)
    proc.wait()
    return bool(_unfinished_states(runs, pattern))


def test_sigkill_at_random_moments_during_state_writes(workdir, baseline):
    """Kill inside state writes (fit, then two resumes), at random writes; resume each time."""
    rng = random.Random(0)
    runs = workdir / "runs"
    before = set(runs.iterdir())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "trainrun"]
    fit_cmd = [
        *base,
        "fit",
        str(workdir / "tiny.yaml"),
        "--runs-dir",
        str(runs),
        "--name",
        "random",
    ]
    quiet = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    landed = [
        _kill_inside_a_state_write(
            subprocess.Popen(fit_cmd, **quiet), runs, "random-*", rng.randrange(2, 40)
        )
    ]
    (run,) = set(runs.iterdir()) - before
    for _ in range(2):  # kill the resumed process too, inside another write
        proc = subprocess.Popen([*base, "resume", str(run)], **quiet)
        landed.append(_kill_inside_a_state_write(proc, runs, run.name, rng.randrange(2, 20)))
    # The point of the test: most kills cut a state write in half.
    assert sum(landed) >= 2, landed
    assert run_info(run)["status"] != "completed"
    resume(run)
    assert not _unfinished_states(runs, run.name)  # the half-written states were cleaned
    assert_same_run(run, baseline)


def test_completed_run_is_extended_with_epochs(workdir, baseline):
    r, run = _fit(workdir, "short", "--set", "fit.epochs=2")
    assert r.returncode == 0
    assert_clean_error(cli("resume", run), "is completed after 2 epoch(s)", "--epochs")
    resume(run, "--epochs", "4")
    info = run_info(run)
    assert info["epochs_done"] == 4 and info["status"] == "completed"
    assert [row["epoch"] for row in read_history(run)] == ["0", "1", "2", "3"]
    # the extension continues the same run: equal to four epochs in one go
    assert_same_run(run, baseline)


def test_tensorboard_and_logs_continue(workdir):
    r, run = _fit(workdir, "tb", env={"KILL_AT": "2:3"})
    assert r.returncode == -signal.SIGKILL
    resume(run)
    code = (
        "import sys, glob, tensorflow as tf\n"
        "steps = []\n"
        "for f in sorted(glob.glob(sys.argv[1] + '/tensorboard/train/events*')):\n"
        "    for e in tf.compat.v1.train.summary_iterator(f):\n"
        "        steps += [(v.tag, e.step) for v in e.summary.value if v.tag in ('epoch_loss', 'batch_loss')]\n"
        "print(sorted(s for t, s in steps if t == 'epoch_loss'))\n"
        "b = [s for t, s in steps if t == 'batch_loss']\n"
        "print(b == sorted(b), len(b) == len(set(b)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True
    )
    epoch_steps, batch_ok = out.stdout.strip().splitlines()[-2:]
    assert epoch_steps == "[0, 1, 2, 3]"
    assert batch_ok == "True True"  # batch steps continue, never restart at 0
    log = (run / "train.log").read_text()
    assert log.count("fit tb-") == 1 and log.count("resume tb-") == 1
    assert "epoch 1/4" in log and "epoch 4/4" in log


def test_running_run_is_refused(workdir, baseline):
    hold = (
        "import sys, time; from pathlib import Path; from trainrun.runs.rundir import RunDir; "
        "RunDir(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(baseline)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_clean_error(
            cli("resume", baseline, "--epochs", "5"), "in use by process", str(holder.pid)
        )
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_not_a_run_directory(tmp_path):
    assert_clean_error(cli("resume", tmp_path), "not a trainrun run directory")
    assert_clean_error(cli("resume", tmp_path / "nope"), "run directory not found")


def test_yaml_schedule_without_initial_continues_its_decay(workdir):
    """`exponential` without `initial` starts from the optimizer's rate at the first
    epoch; a resumed run must not restart the decay from the already lowered rate."""
    cfg = workdir / "sched.yaml"
    cfg.write_text(
        "name: sched\nseed: 7\ndeterministic: true\n"
        "data: {source: mnist, flatten: true, scale: 255.0, validation_split: 0.2, limit: {train: 300}}\n"
        "model: {layers: [{Input: {shape: [784]}}, {Dense: {units: 10, activation: softmax}}]}\n"
        "compile: {optimizer: {Adam: {learning_rate: 0.01}}, loss: sparse_categorical_crossentropy}\n"
        "fit: {epochs: 4, batch_size: 32}\n"
        "callbacks:\n"
        "  - LearningRateScheduler: {schedule: {exponential: {rate: 0.5}}}\n"
        "  - killer:KillAt\n"
    )
    runs = workdir / "sched-runs"
    assert cli("fit", cfg, "--runs-dir", runs, "--name", "whole").returncode == 0
    killed = cli("fit", cfg, "--runs-dir", runs, "--name", "cut", env={"KILL_AT": "2:-1"})
    assert killed.returncode == -signal.SIGKILL
    (whole,) = runs.glob("whole-*")
    (cut,) = runs.glob("cut-*")
    resume(cut)
    rates = [float(row["learning_rate"]) for row in read_history(cut)]
    assert rates == pytest.approx([0.01, 0.005, 0.0025, 0.00125])
    assert read_history(cut) == read_history(whole)
