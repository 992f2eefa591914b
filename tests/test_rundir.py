"""trainrun.runs.rundir: a run directory's layout, opening, lock, temp files and the
resume checks. Fast: tmp directories, no TensorFlow."""

from __future__ import annotations

import json
import os

import pytest

from trainrun.errors import RunDirError, TrainrunError
from trainrun.runs.record import RunRecord, Status
from trainrun.runs.rundir import RunDir

CONFIG = "name: demo\nseed: 1\n"


def make_run(path, *, config=CONFIG, **record):
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(config)
    (path / "run.json").write_text(json.dumps(record))
    return RunDir(path)


def test_create_makes_a_new_directory_each_time(tmp_path):
    a = RunDir.create(tmp_path / "runs", "demo")
    b = RunDir.create(tmp_path / "runs", "demo")
    assert a.path.is_dir() and b.path.is_dir() and a.path != b.path
    assert a.id.startswith("demo-") and a.run_json == a.path / "run.json"


def test_create_in_a_file_is_one_error(tmp_path):
    (tmp_path / "runs").write_text("")
    with pytest.raises(RunDirError, match="cannot create a run directory"):
        RunDir.create(tmp_path / "runs", "demo")


def test_open_by_path_id_and_unique_prefix(tmp_path):
    runs = tmp_path / "runs"
    run = make_run(runs / "demo-1-aaaa", status="completed")
    make_run(runs / "demo-2-bbbb", status="completed")
    assert RunDir.open(run.path).path == run.path
    assert RunDir.open("demo-1-aaaa", runs).path == run.path
    assert RunDir.open("demo-1", runs).path == run.path
    with pytest.raises(RunDirError, match="matches 2 runs"):
        RunDir.open("demo-", runs)
    with pytest.raises(RunDirError, match="run directory not found: nope"):
        RunDir.open("nope", runs)


def test_open_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="is a file"):
        RunDir.open(tmp_path / "file")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text(CONFIG)
    with pytest.raises(RunDirError, match=r"not a trainrun run directory \(no run.json\)"):
        RunDir.open(tmp_path / "half")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"{not json", "is unreadable"),
        (b"[1, 2]", "not a JSON object (it holds a list)"),
        (b'{"id": "\xe9"}', "not UTF-8"),
    ],
)
def test_read_record_names_what_is_wrong(tmp_path, content, needle):
    run = make_run(tmp_path / "r")
    run.run_json.write_bytes(content)
    with pytest.raises(RunDirError, match="run.json") as err:
        run.read_record()
    assert needle in err.value.message


def test_lock_is_held_once_and_released(tmp_path):
    run = make_run(tmp_path / "r", status="running")
    assert run.lock_owner() is None
    run.acquire()
    try:
        assert run.lock_file.read_text().strip() == str(os.getpid())
        assert run.lock_owner() is None  # this process's own lock is not "another"
        run.acquire()  # taking it again is a no-op
    finally:
        run.release()
    assert not run.lock_file.exists()
    run.release()  # releasing twice is harmless


def test_clean_temp_files_removes_only_trainrun_temp_files(tmp_path):
    run = make_run(tmp_path / "r", status="running")
    (run.state_dir / "ckpt-1").mkdir(parents=True)
    ours = [
        run.path / ".run.json.abcd1234.tmp",
        run.path / ".history.csv.x1y2z3w4.tmp",
        run.state_dir / "ckpt-1" / ".arrays.npz.abcdefgh.tmp",
        run.path / ".tmp-123-model.keras",
    ]
    theirs = [
        run.path / ".eval.json.abcdefgh.tmp",  # `evaluate` may be writing it now
        run.path / "notes.tmp",
        run.path / ".mine.abcdefgh.tmp",
    ]
    for path in ours + theirs:
        path.write_text("x")
    with pytest.raises(RunDirError, match="needs its lock"):
        run.clean_temp_files()
    run.acquire()  # cleans on taking the lock
    try:
        assert all(not p.exists() for p in ours)
        assert all(p.exists() for p in theirs)
    finally:
        run.release()


def test_check_resumable(tmp_path):
    run = make_run(tmp_path / "r", status="completed", epochs_done=3)
    record = run.read_record()
    with pytest.raises(TrainrunError, match="is completed after 3 epoch"):
        run.check_resumable(record, None)
    with pytest.raises(TrainrunError, match="below the 3 epochs"):
        run.check_resumable(record, 2)
    # A higher target is resumable, if the state is there.
    with pytest.raises(RunDirError, match="missing or empty"):
        run.check_resumable(record, 5)
    (run.state_dir / "ckpt-3").mkdir(parents=True)
    run.check_resumable(record, 5)
    run.check_resumable(record.update(status=Status.INTERRUPTED), None)


def test_check_resumable_refuses_a_damaged_epoch_count_and_no_state(tmp_path):
    run = make_run(tmp_path / "a", status="running", epochs_done="three")
    with pytest.raises(RunDirError, match="epochs_done is 'three', expected a whole number"):
        run.check_resumable(run.read_record(), None)
    off = make_run(
        tmp_path / "b", config=CONFIG + "outputs: {state: false}\n", status="interrupted"
    )
    with pytest.raises(RunDirError, match="outputs.state: false"):
        off.check_resumable(off.read_record(), None)


def test_progress_says_what_a_missing_state_would_lose(tmp_path):
    run = RunDir(tmp_path)
    assert run.progress(RunRecord()) is None
    assert run.progress(RunRecord.new(epochs_done=0)) is None
    assert "2 epoch(s) done" in run.progress(RunRecord.new(epochs_done=2))
    assert "saved state" in run.progress(RunRecord.new(state_saved=True))
    assert "2 epoch(s)" in run.progress({"epochs_done": 2})  # run.json's object as well
