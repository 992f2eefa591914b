"""Faults in a run's own files and in its lock: never a silent restart, never a lost file.

Fast tests work on fabricated run directories and on the state store (no
TensorFlow); the slow ones train tests/resume_fixtures/tiny.yaml, damage what a
kill or a user could damage, and resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import RESUME_FIXTURES, ROOT, assert_clean_error, cli, resume_workdir, run_info

from trainrun.engine.state import Snapshot, StateStore, validate_meta
from trainrun.errors import RunDirError
from trainrun.runs.rundir import RunDir

# ---------------------------------------------------------------- helpers


def fake_run(tmp_path: Path, *, state: bool = True, epochs_done: int = 2, **info) -> Path:
    """A run directory as `trainrun fit` leaves it, without training anything."""
    run = tmp_path / "r-1"
    run.mkdir()
    config = (RESUME_FIXTURES / "tiny.yaml").read_text()
    config = config.replace(
        "outputs: {state_every: 1}", f"outputs: {{state: {str(state).lower()}}}"
    )
    (run / "config.yaml").write_text(config)
    for helper in ("killer.py", "sigint.py"):
        shutil.copy(RESUME_FIXTURES / helper, run / helper)
    (run / "run.json").write_text(
        json.dumps(
            {"id": run.name, "status": "running", "epochs_done": epochs_done, "epochs": 4, **info}
        )
    )
    return run


def snap(epoch: int, step: int = 0) -> Snapshot:
    history = [{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(epoch)]
    arrays = {"model/0": np.full(3, epoch * 100 + step, dtype="float32")}
    return Snapshot(epoch, step, arrays, {"history": history})


def digest(run: Path) -> dict[str, str]:
    """Every file of a run and its content hash (not train.log, which resume appends to,
    nor the .lock a killed process left, which the next one takes over and removes)."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in ("train.log", ".lock")
    }


# ---------------------------------------------------------------- 1. the lock

HOLD = """
import sys, time
from pathlib import Path
from trainrun.errors import RunDirError
from trainrun.runs.rundir import RunDir
start, hold = float(sys.argv[2]), float(sys.argv[3])
run = RunDir(Path(sys.argv[1]))
while time.time() < start:
    pass
try:
    run.acquire()
except RunDirError:
    print("refused", flush=True)
    sys.exit(0)
print("won", flush=True)
time.sleep(hold)
"""


def _holders(run: Path, n: int, hold: float = 1.0) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.time() + 1.0  # every process is up before the common instant
    return [
        subprocess.Popen(
            [sys.executable, "-c", HOLD, str(run), str(start), str(hold)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]


def test_lock_taken_at_the_same_instant_has_one_winner(tmp_path):
    run = fake_run(tmp_path)
    for _ in range(5):
        procs = _holders(run, 4, hold=0.3)
        outs = [p.communicate(timeout=30)[0].strip() for p in procs]
        assert sorted(outs) == ["refused", "refused", "refused", "won"], outs


def test_live_holder_is_named_and_dead_holder_releases(tmp_path):
    run = fake_run(tmp_path)
    (holder,) = _holders(run, 1, hold=60)
    try:
        assert holder.stdout.readline().strip() == "won"
        with pytest.raises(RunDirError, match=f"in use by process {holder.pid}"):
            RunDir(run).acquire()
        assert RunDir(run).lock_owner() == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    # kill -9 of the holder: its lock goes with it
    assert RunDir(run).lock_owner() is None
    RunDir(run).acquire()
    RunDir(run).release()


def test_stale_lock_naming_another_live_process_is_taken(tmp_path):
    run = fake_run(tmp_path)
    (run / ".lock").write_text("1\n")  # pid 1 is alive (init) but holds nothing
    assert RunDir(run).lock_owner() is None
    RunDir(run).acquire()
    try:
        assert (run / ".lock").read_text().split()[0] == str(os.getpid())
    finally:
        RunDir(run).release()


# ---------------------------------------------------------------- 5. temp files


def test_own_temp_files_are_cleaned_under_the_lock(tmp_path):
    run = fake_run(tmp_path)
    (run / "state" / "ckpt-000003").mkdir(parents=True)
    (run / "ckpt").mkdir()
    (run / "state" / "LATEST").write_text("ckpt-000003")
    temps = [
        run / "ckpt" / ".tmp-4242-epoch01.keras",
        run / ".tmp-4242-model.keras",
        run / "state" / ".LATEST.k2j4h5g6.tmp",
        run / "state" / "ckpt-000003" / ".meta.json.ab12cd34.tmp",
        run / ".run.json.x9y8z7w6.tmp",
        run / ".history.csv.abcdefgh.tmp",
        run / ".config.yaml.abcdefgh.tmp",
    ]
    keep = [
        run / "ckpt" / "epoch01.keras",
        run / "notes.tmp",
        run / ".eval.json.abcdefgh.tmp",  # `trainrun evaluate` may be writing it right now
        run / "state" / "LATEST",
    ]
    for p in temps + keep[:-1]:
        p.write_text("x")
    rd = RunDir(run)
    rd.acquire()
    try:
        assert [p for p in temps if p.exists()] == []
        assert all(p.exists() for p in keep)
    finally:
        rd.release()


# ---------------------------------------------------------------- 2/4. the state store


def test_two_complete_states_are_kept(tmp_path):
    store = StateStore(tmp_path / "state")
    for e in range(1, 5):
        store.save(snap(e))
    names = sorted(p.name for p in (tmp_path / "state").glob("ckpt-*"))
    assert names == ["ckpt-000003", "ckpt-000004"]
    assert store.load().epoch == 4


def _damage_meta(path: Path, how: str) -> None:
    meta_file = path / "meta.json"
    if how == "truncated":
        meta_file.write_bytes(meta_file.read_bytes()[:20])
        return
    meta = json.loads(meta_file.read_text())
    if how == "epoch-beyond":
        meta["epoch"] = 50
    elif how == "negative":
        meta["epoch"] = -1
    elif how == "wrong-type":
        meta["step"] = "3"
    elif how == "history-type":
        meta["history"] = {"epoch": 0}
    meta_file.write_text(json.dumps(meta))


def _damage_arrays(path: Path, how: str) -> None:
    arrays = path / "arrays.npz"
    if how == "bad-zip":
        arrays.write_bytes(arrays.read_bytes()[:40])
    elif how == "object-array":
        np.savez(arrays, **{"model/0": np.array([{"a": 1}, None], dtype=object)})
    elif how == "missing":
        arrays.unlink()


@pytest.mark.parametrize(
    "damage",
    [
        "meta:truncated",
        "meta:epoch-beyond",
        "meta:negative",
        "meta:wrong-type",
        "meta:history-type",
        "arrays:bad-zip",
        "arrays:object-array",
        "arrays:missing",
    ],
)
def test_damaged_latest_falls_back_to_the_previous_state(tmp_path, damage):
    store = StateStore(tmp_path / "state")
    store.save(snap(2))
    store.save(snap(3))
    kind, how = damage.split(":")
    latest = tmp_path / "state" / "ckpt-000002"
    (_damage_meta if kind == "meta" else _damage_arrays)(latest, how)
    loaded = store.load(max_epoch=4)
    assert (loaded.epoch, loaded.step) == (2, 0)
    assert [p.name for p, _ in store.skipped] == (["ckpt-000002"] if how != "missing" else [])


def test_every_state_damaged_is_refused_with_the_repair(tmp_path):
    store = StateStore(tmp_path / "state")
    store.save(snap(2))
    store.save(snap(3))
    for path in (tmp_path / "state").glob("ckpt-*"):
        _damage_arrays(path, "bad-zip")
    with pytest.raises(RunDirError) as exc:
        store.load(max_epoch=4)
    message = str(exc.value)
    assert "ckpt-000001" in message and "ckpt-000002" in message
    assert "trainrun fit" in message  # the way out


@pytest.mark.parametrize(
    ("meta", "needle"),
    [
        ({"epoch": 50, "step": 0, "history": []}, "epoch"),
        ({"epoch": -2, "step": 0, "history": []}, "epoch"),
        ({"epoch": True, "step": 0, "history": []}, "epoch"),
        ({"epoch": 1, "step": 1.5, "history": [{"epoch": 0}]}, "step"),
        ({"epoch": 1, "step": 0, "history": [{"epoch": "0"}]}, "history"),
        ({"epoch": 2, "step": 0, "history": [{"epoch": 0}]}, "history"),
        ({"epoch": 1, "step": 0, "history": [{"epoch": 0, "loss": "x"}]}, "history"),
        ({"epoch": 1, "step": 0, "history": [{"epoch": 0}], "callbacks": {}}, "callbacks"),
        ({"epoch": 1, "step": 0, "history": [{"epoch": 0}], "rng": {"python": 3}}, "rng"),
        ({"epoch": 1, "step": 0, "history": [{"epoch": 0}], "train_seconds": -1}, "train_seconds"),
    ],
)
def test_invalid_meta_is_named(meta, needle):
    reason = validate_meta(meta, max_epoch=4)
    assert reason is not None and needle in reason


def test_valid_meta_passes():
    meta = {"epoch": 1, "step": 3, "history": [{"epoch": 0, "loss": float("nan")}], "callbacks": []}
    assert validate_meta(meta, max_epoch=4) is None


# ---------------------------------------------------------------- 2. refusals before TensorFlow


def test_run_without_state_output_is_not_resumable(tmp_path):
    run = fake_run(tmp_path, state=False)
    r = cli("resume", run)
    assert_clean_error(r, "outputs.state: false", "trainrun fit")
    with pytest.raises(RunDirError, match="outputs.state: false"):
        RunDir(run).check_resumable(run_info(run), None)


def test_deleted_state_after_progress_is_refused(tmp_path):
    run = fake_run(tmp_path, epochs_done=2)
    before = digest(run)
    r = cli("resume", run)
    assert_clean_error(r, "state", "2 epoch", "trainrun fit")
    assert digest(run) == before


def test_run_killed_before_any_state_may_start_over(tmp_path):
    run = fake_run(tmp_path, epochs_done=0)
    RunDir(run).check_resumable(run_info(run), None)  # nothing was saved: nothing to lose


# ---------------------------------------------------------------- slow: trained runs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return resume_workdir(tmp_path_factory, "faults")


def _fit(workdir: Path, name: str, env: dict | None = None) -> tuple[int, Path]:
    runs = workdir / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    r = cli("fit", workdir / "tiny.yaml", "--runs-dir", runs, "--name", name, env=env)
    (run,) = set(runs.iterdir()) - before
    return r.returncode, run


@pytest.fixture(scope="module")
def baseline(workdir) -> Path:
    code, run = _fit(workdir, "baseline")
    assert code == 0
    return run


@pytest.fixture(scope="module")
def killed(workdir) -> Path:
    """A run killed as epoch 3 begins: two complete states, 2 epochs in history.csv."""
    code, run = _fit(workdir, "killed", env={"KILL_AT": "2:-1"})
    assert code == -signal.SIGKILL
    return run


@pytest.fixture
def copy_of(killed, tmp_path):
    def make() -> Path:
        dest = tmp_path / killed.name
        shutil.copytree(killed, dest)
        return dest

    return make


def _latest(run: Path) -> Path:
    return run / "state" / (run / "state" / "LATEST").read_text().strip()


@pytest.mark.slow
def test_damaged_latest_state_resumes_from_the_previous_one(copy_of, baseline, killed):
    run = copy_of()
    assert len(list((run / "state").glob("ckpt-*"))) == 2
    killed_seconds = run_info(run)["train_seconds"]
    assert killed_seconds > 0  # 6. the killed session's time is recorded
    damaged = _latest(run)
    _damage_meta(damaged, "truncated")
    temps = [run / ".tmp-99999-model.keras", run / "state" / ".LATEST.abcd1234.tmp"]
    for t in temps:
        t.write_text("x")
    r = cli("resume", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert damaged.name in r.stdout + r.stderr  # said, not silent
    assert (run / "history.csv").read_bytes() == (baseline / "history.csv").read_bytes()
    assert not any(t.exists() for t in temps)
    assert list((run / "state").glob(f"damaged-{damaged.name}*"))  # kept, set aside
    info = run_info(run)
    assert info["status"] == "completed"
    assert info["train_seconds"] > killed_seconds
    assert (info["resumes"][0]["from_epoch"], info["resumes"][0]["from_step"]) < (2, 0)
    assert any(damaged.name in note for note in info["resumes"][0]["repairs"])


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_history_csv_is_rebuilt_byte_identical(copy_of, baseline, damage):
    run = copy_of()
    hist = run / "history.csv"
    if damage == "deleted":
        hist.unlink()
    else:
        hist.write_bytes(hist.read_bytes()[: len(hist.read_bytes().splitlines()[0]) + 30])
    r = cli("resume", run)
    assert r.returncode == 0, r.stdout + r.stderr
    assert hist.read_bytes() == (baseline / "history.csv").read_bytes()


@pytest.mark.slow
def test_every_state_damaged_refuses_and_keeps_every_file(copy_of):
    run = copy_of()
    for path in (run / "state").glob("ckpt-*"):
        _damage_arrays(path, "bad-zip")
    before = digest(run)
    r = cli("resume", run)
    assert_clean_error(r, "ckpt-", "trainrun fit")
    assert digest(run) == before
    assert run_info(run)["status"] == "running"  # still the killed run it was


@pytest.mark.slow
def test_deleted_state_dir_of_a_trained_run_is_refused(copy_of):
    run = copy_of()
    shutil.rmtree(run / "state")
    before = digest(run)
    assert_clean_error(cli("resume", run), "state", "trainrun fit")
    assert digest(run) == before
