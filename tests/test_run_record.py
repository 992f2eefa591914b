"""trainrun.runs.record: run.json as a typed record. Fast: no TensorFlow, no training."""

from __future__ import annotations

import json
import math

import pytest

from trainrun.runs.listing import list_runs
from trainrun.runs.record import RECORDED, Best, RunRecord, Status
from trainrun.runs.rundir import RunDir

FULL = {
    "id": "demo-20260102-100000-abcd",
    "status": "completed",
    "error": None,
    "created": "2026-01-02T10:00:00+00:00",
    "finished": "2026-01-02T10:01:05+00:00",
    "epochs_done": 3,
    "epochs": 3,
    "best": {"monitor": "val_loss", "value": 0.25, "epoch": 2, "mode": "min"},
    "seed": 7,
    "devices": {"strategy": "default", "replicas": 1},
    "versions": {"trainrun": "0.1", "keras": "3"},
    "config_source": "/tmp/demo.yaml",
    "command": "trainrun fit demo.yaml",
    "pid": None,
    "resumes": [{"at": "2026-01-02T10:00:30+00:00", "from_epoch": 1, "from_step": 0}],
    "train_seconds": 65.0,
    "updated": "2026-01-02T10:01:00+00:00",
    "state_saved": True,
    "final_weights_epoch": 3,
    "final_weights_source": "last epoch",
    "state_saves": 3,
    "state_seconds": 0.5,
    "timing": {"fit_s": 60.0},
}


def test_a_full_record_reads_typed_and_writes_back_the_same_object():
    record = RunRecord.from_json(FULL)
    assert record.status is Status.COMPLETED
    assert record.best == Best(monitor="val_loss", value=0.25, epoch=2, mode="min")
    assert record.epochs_done == 3 and record.train_seconds == 65.0 and record.seed == 7
    assert record.final_weights_epoch == 3 and record.state_saved is True
    assert not record.invalid and not record.extra
    assert record.to_json() == FULL
    assert list(record.to_json()) == list(FULL)  # the file's key order is kept


def test_an_old_partial_record_defaults_what_it_lacks():
    record = RunRecord.from_json({"status": "completed", "best": {"monitor": "loss", "value": 1}})
    assert record.id is None and record.epochs_done is None and record.resumes == []
    assert record.best.mode is None and record.best.epoch is None
    # Writing it back adds nothing it did not hold.
    assert record.to_json() == {"status": "completed", "best": {"monitor": "loss", "value": 1}}


def test_unknown_keys_and_odd_values_are_kept_when_written_back():
    raw = {
        "id": "x",
        "status": ["completed"],
        "epochs_done": "three",
        "train_seconds": float("nan"),
        "pid": "123",
        "note": "hand-written",
    }
    record = RunRecord.from_json(raw)
    assert record.status is Status.UNKNOWN and record.epochs_done is None
    assert record.train_seconds is None and record.pid is None
    assert record.extra == {"note": "hand-written"}
    assert record.raw("epochs_done") == "three" and record.raw("missing") is None
    record.update(pid=42)
    out = record.to_json()
    assert out["pid"] == 42 and out["status"] == ["completed"] and out["note"] == "hand-written"
    assert math.isnan(out["train_seconds"])
    assert list(out) == list(raw)


def test_update_appends_new_keys_and_refuses_wrong_types():
    record = RunRecord.new(id="r", status=Status.RUNNING, epochs_done=0)
    record.update(state_saved=True, best={"monitor": "loss", "value": 0.5, "epoch": 1})
    assert list(record.to_json()) == ["id", "status", "epochs_done", "state_saved", "best"]
    assert record.to_json()["status"] == "running" and isinstance(record.best, Best)
    with pytest.raises(TypeError, match="epochs_done"):
        record.update(epochs_done="two")
    with pytest.raises(TypeError, match="no field"):
        record.update(epoch_done=2)
    with pytest.raises(TypeError, match="status"):
        record.update(status="killed")  # shown by `trainrun runs`, never written


def test_the_status_written_is_its_plain_name():
    record = RunRecord.new(status=Status.STOPPED_EARLY)
    assert json.dumps(record.to_json()) == '{"status": "stopped_early"}'
    assert [s.value for s in RECORDED] == [
        "running",
        "completed",
        "stopped_early",
        "interrupted",
        "failed",
    ]
    assert {s for s in Status if s.finished} == {Status.COMPLETED, Status.STOPPED_EARLY}


def _run(runs, name, run_json):
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: demo\nseed: 1\n")
    if run_json is not None:
        (run / "run.json").write_text(run_json)
    return run


def test_every_status_trainrun_runs_shows_is_a_status(tmp_path):
    runs = tmp_path / "runs"
    for status in RECORDED:
        if status is not Status.RUNNING:
            _run(runs, status.value, json.dumps({"status": status.value}))
    _run(runs, "killed", json.dumps({"status": "running", "pid": None}))
    _run(runs, "odd", json.dumps({"status": "paused"}))
    _run(runs, "broken", "{not json")
    _run(runs, "not-a-run", None)
    shown = {row.id: row.status for row in list_runs(runs)}
    assert all(isinstance(s, Status) for s in shown.values())
    assert set(shown.values()) == set(Status) - {Status.RUNNING}
    assert shown["killed"] is Status.KILLED and shown["odd"] is Status.UNKNOWN


def test_rundir_writes_one_record_and_updates_it_in_place(tmp_path):
    run = RunDir(tmp_path)
    run.write_record(RunRecord.new(id="r", status=Status.RUNNING, epochs_done=0, pid=5))
    run.update_record(epochs_done=1, best={"monitor": "loss", "value": 0.5, "epoch": 1})
    run.update_record(status=Status.COMPLETED, pid=None)
    on_disk = json.loads(run.run_json.read_text())
    assert on_disk == {
        "id": "r",
        "status": "completed",
        "epochs_done": 1,
        "pid": None,
        "best": {"monitor": "loss", "value": 0.5, "epoch": 1},
    }
    assert run.read_record().best.value == 0.5
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temp file left
