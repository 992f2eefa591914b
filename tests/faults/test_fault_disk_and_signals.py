"""Faults of the machine around a run: a full disk, a read-only run directory,
Ctrl-C and SIGTERM at awkward instants, a loss that becomes NaN.

Each must end in one `error:` line (or a truthful summary), no traceback, run.json
telling the truth (or, when it cannot be written, a dead `running` run that
`trainrun runs` shows as killed), no file of the run lost, and, where training was
cut, a resume that ends bitwise equal to the run never interrupted.

Full disks are small tmpfs mounts and read-only directories are read-only bind
mounts: both need root (mount); without it those tests are skipped, saying why.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ROOT,
    assert_same_model,
    cli,
    keras_arrays,
    read_history,
    resume_workdir,
    run_info,
)

pytestmark = pytest.mark.slow


# Test callbacks, imported by path from the config: fill the disk, or send a
# signal, at a chosen point of training. No-ops when their variable is unset.
HELPERS = '''
import os
import signal

import keras


class FillAt(keras.callbacks.Callback):
    """Fills the disk holding $BALLAST at FILL_AT: 'E:B' after batch B of epoch E,
    'train_end' at train end. $FILL_LEAVE bytes are then freed again (default 0)."""

    def __init__(self):
        super().__init__()
        self.at = os.environ.get("FILL_AT")
        self.epoch = 0

    def _fill(self, where):
        if self.at != where:
            return
        self.at = None
        path = os.environ["BALLAST"]
        for size in (1 << 20, 1 << 12, 1):
            try:
                with open(path, "ab") as f:
                    while True:
                        f.write(b"\\0" * size)
                        f.flush()
            except OSError:
                pass
        leave = int(os.environ.get("FILL_LEAVE", "0"))
        if leave:
            os.truncate(path, max(0, os.path.getsize(path) - leave))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._fill(f"{self.epoch}:{batch}")

    def on_train_end(self, logs=None):
        self._fill("train_end")


class SigintInFinalSave(keras.callbacks.Callback):
    """With SIGINT_IN_SAVE set, Ctrl-C arrives while the final model is being saved."""

    def on_train_end(self, logs=None):
        if not os.environ.get("SIGINT_IN_SAVE"):
            return
        save = self.model.save

        def save_after_ctrl_c(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            return save(*args, **kwargs)

        object.__setattr__(self.model, "save", save_after_ctrl_c)
'''


# ---------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = resume_workdir(tmp_path_factory, "faults_disk")
    (d / "faults_helpers.py").write_text(HELPERS)
    config = (d / "tiny.yaml").read_text()
    config += "  - faults_helpers:FillAt\n  - faults_helpers:SigintInFinalSave\n"
    (d / "tiny.yaml").write_text(config)
    return d


def fit(workdir: Path, runs: Path, *extra: str, env: dict | None = None):
    """(result, the new run directory or None)."""
    before = set(runs.iterdir()) if runs.exists() else set()
    r = cli("fit", workdir / "tiny.yaml", "--runs-dir", runs, *extra, env=env)
    new = (set(runs.iterdir()) if runs.exists() else set()) - before
    return r, (new.pop() if new else None)


@pytest.fixture(scope="module")
def baseline(workdir) -> Path:
    r, run = fit(workdir, workdir / "base")
    assert r.returncode == 0, r.stdout + r.stderr
    return run


def _mount(*args: str) -> str | None:
    """None, or why mounting is not possible here."""
    try:
        p = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None if p.returncode == 0 else (p.stderr.strip() or f"mount exited {p.returncode}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 24 MiB tmpfs: room for a few tiny runs, quickly filled by a ballast file."""
    disk = tmp_path / "disk"
    disk.mkdir()
    why = _mount("-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk))
    if why:
        pytest.skip(f"needs a tmpfs mount (root) to fill a disk: {why}")
    yield disk
    _umount(disk)


@pytest.fixture
def read_only(tmp_path):
    """read_only(src): `src` seen through a read-only bind mount (root ignores chmod a-w)."""
    mounts: list[Path] = []

    def make(src: Path) -> Path:
        ro = tmp_path / f"ro{len(mounts)}"
        ro.mkdir()
        why = _mount("--bind", str(src), str(ro))
        if why is None:
            mounts.append(ro)
            why = _mount("-o", "remount,ro,bind", str(ro))
        if why:
            pytest.skip(f"needs a read-only bind mount (root): {why}")
        probe = ro / f".probe-{uuid.uuid4().hex}"
        try:
            probe.write_text("x")
        except OSError:
            return ro
        probe.unlink()
        pytest.skip("the bind mount is not read-only here")

    yield make
    for ro in mounts:
        _umount(ro)


def output(r: subprocess.CompletedProcess) -> str:
    return r.stdout + r.stderr


def assert_one_error(r: subprocess.CompletedProcess, *needles: str, code: int) -> str:
    """Exit code, exactly one `error:` line, no traceback; returns that line."""
    out = output(r)
    assert r.returncode == code, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob("*") if p.name.startswith(".tmp-") or p.name.endswith(".tmp")]


# ---------------------------------------------------------------- 7. a full disk


def test_disk_full_during_training_fails_cleanly_then_resumes_bitwise(
    workdir, baseline, small_disk
):
    runs = small_disk / "runs"
    ballast = small_disk / "ballast"
    env = {"FILL_AT": "1:9", "BALLAST": str(ballast)}
    r, run = fit(workdir, runs, env=env)
    line = assert_one_error(r, "disk full while writing", f"trainrun resume {run}", code=1)
    assert str(run) in line
    info = run_info(run)  # run.json is whole: the old one, or the failure
    if info["status"] == "failed":
        assert "disk full" in info["error"]
    else:  # it could not be written: the dead process's run shows as killed
        assert info["status"] == "running"
        listing = cli("runs", "--runs-dir", runs)
        assert "killed" in listing.stdout, listing.stdout
    ballast.unlink()
    resumed = cli("resume", run)
    assert resumed.returncode == 0, output(resumed)
    assert run_info(run)["status"] == "completed"
    assert_same_model(run, baseline)
    assert temp_files(run) == []


def test_disk_full_at_the_final_save_keeps_the_state_and_resume_writes_the_model(
    workdir, baseline, small_disk
):
    runs = small_disk / "runs"
    ballast = small_disk / "ballast"
    # 64 KiB stay free: run.json fits, model.keras does not.
    env = {"FILL_AT": "train_end", "BALLAST": str(ballast), "FILL_LEAVE": str(64 << 10)}
    r, run = fit(workdir, runs, env=env)
    assert_one_error(r, "disk full while writing", "model.keras", f"trainrun resume {run}", code=1)
    info = run_info(run)
    assert info["status"] == "failed" and "model.keras" in info["error"], info
    assert info["epochs_done"] == 4
    assert not (run / "model.keras").exists()  # never a truncated final model
    assert temp_files(run) == []
    ballast.unlink()
    resumed = cli("resume", run)
    assert resumed.returncode == 0, output(resumed)
    assert run_info(run)["status"] == "completed"
    # EarlyStopping's restore_best_weights still happens at the (resumed) train end.
    assert_same_model(run, baseline)


def test_disk_full_at_start_leaves_no_run_directory(workdir, small_disk):
    runs = small_disk / "runs"
    runs.mkdir()
    ballast = small_disk / "ballast"
    with ballast.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    r, run = fit(workdir, runs)
    assert_one_error(r, "disk full while", code=1)
    assert run is None and list(runs.iterdir()) == []


# ---------------------------------------------------------------- 8. read-only runs


def test_read_only_run_directory(workdir, baseline, read_only):
    ro_runs = read_only(baseline.parent)
    run = ro_runs / baseline.name
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}

    assert_one_error(
        cli("resume", run, "--epochs", "5"), str(run), "not writable", "copy the run", code=2
    )

    r = cli("evaluate", run)
    assert_one_error(r, "eval.json could not be written", "Read-only", code=1)
    assert "sparse_categorical_accuracy" in r.stdout  # the table is printed first

    r = cli("show", run)
    assert_one_error(r, "curves.png could not be written", "Read-only", code=1)
    assert "val_loss" in r.stdout and "epoch" in r.stdout  # everything else is printed

    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------- 9. Ctrl-C, SIGTERM


def _popen_fit(workdir: Path, runs: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainrun",
            "fit",
            str(workdir / "tiny.yaml"),
            "--runs-dir",
            str(runs),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout: float = 120.0, every: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


@pytest.mark.parametrize("delay", [0.02, 0.035, 0.055])
def test_second_ctrl_c_shortly_after_the_first(workdir, tmp_path, delay):
    runs = tmp_path / "runs"
    proc = _popen_fit(workdir, runs)
    try:
        assert _wait_for(lambda: any(runs.glob("*/state/LATEST")))
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err, out + err
    (run,) = runs.iterdir()
    assert run_info(run)["status"] in ("interrupted", "completed")
    assert temp_files(run) == [] or run_info(run)["status"] == "interrupted"


def test_ctrl_c_during_the_final_save_marks_the_run_for_what_it_is(workdir, baseline, tmp_path):
    r, run = fit(workdir, tmp_path / "runs", env={"SIGINT_IN_SAVE": "1"})
    out = output(r)
    assert "Traceback" not in out, out
    assert "interrupted before training started" not in out, out
    assert r.returncode == 0, out
    assert "interrupted after the last epoch" in out
    assert run_info(run)["status"] == "completed"
    assert_same_model(run, baseline)


@pytest.mark.parametrize("when", ["importing", "run directory made"])
def test_sigterm_during_start_up(workdir, tmp_path, when):
    runs = tmp_path / "runs"
    proc = _popen_fit(workdir, runs)
    try:
        if when == "importing":
            time.sleep(1.0)
        else:
            assert _wait_for(lambda: runs.is_dir() and any(runs.iterdir()))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err, out + err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted before training started" in errors[0], out + err
    assert not runs.exists() or list(runs.iterdir()) == []


# ---------------------------------------------------------------- 10. NaN loss


def test_nan_loss_without_terminate_on_nan_fails_and_saves_nothing_nan(workdir, tmp_path):
    checkpoint = "{ModelCheckpoint: {filepath: 'ckpt/e{epoch}.keras'}}"
    r, run = fit(
        workdir,
        tmp_path / "runs",
        "--set",
        "compile.optimizer={SGD: {learning_rate: 1.0e12}}",
        "--set",
        f"callbacks.6={checkpoint}",
    )
    line = assert_one_error(r, "loss became NaN at epoch 1", "lower the learning rate", code=1)
    assert "TerminateOnNaN)" not in output(r)  # it was not listed: never claimed
    assert "add TerminateOnNaN" in line
    info = run_info(run)
    assert info["status"] == "failed" and "loss became NaN at epoch" in info["error"]
    assert not (run / "model.keras").exists()
    for keras_file in (run / "ckpt").glob("*.keras"):
        for key, value in keras_arrays(keras_file).items():
            assert np.isfinite(value).all(), (keras_file, key)
    for npz in (run / "state").glob("ckpt-*/arrays.npz"):
        with np.load(npz) as f:
            assert all(np.isfinite(f[k]).all() for k in f.files if f[k].dtype.kind == "f")
    for row in read_history(run):
        assert row["loss"] not in ("nan", "inf"), row
