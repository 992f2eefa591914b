"""Broken run directories: one damaged run never hides the others, and `show` of it
ends in one clear `error:` line or shows what it can. Fast: hand-made files, no training."""

from __future__ import annotations

import io
import json

import pytest
from conftest import assert_clean_error, cli
from rich.console import Console

from trainrun.commands.show import show_run
from trainrun.console import PIPE_WIDTH
from trainrun.runs.listing import list_runs
from trainrun.runs.rundir import RunDir

CONFIG = (
    "name: demo\nseed: 1\nmodel:\n  layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\n"
    "compile: {optimizer: rmsprop, loss: mse}\nfit: {epochs: 3, batch_size: 8}\n"
)
HISTORY = "epoch,loss,val_loss\n0,1.0,0.9\n1,0.5,0.4\n2,0.4,0.3\n"


def record(name: str, **changes) -> dict:
    return {
        "id": name,
        "status": "completed",
        "error": None,
        "created": "2026-01-02T10:00:00+00:00",
        "finished": "2026-01-02T10:01:05+00:00",
        "epochs_done": 3,
        "epochs": 3,
        "best": {"monitor": "val_loss", "value": 0.3, "epoch": 3},
        "pid": None,
        "train_seconds": 65.0,
        **changes,
    }


def make_run(runs, name, run_json: bytes | str | dict, history: str | None = HISTORY):
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(CONFIG)
    if isinstance(run_json, dict):
        run_json = json.dumps(run_json)  # allow_nan: writes Infinity / NaN as Python does
    if isinstance(run_json, str):
        run_json = run_json.encode()
    (run / "run.json").write_bytes(run_json)
    if history is not None:
        (run / "history.csv").write_text(history)
    return run


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "good-run", record("good-run", created="2026-01-03T10:00:00+00:00"))
    make_run(runs, "latin1-run", b'{"id": "latin1-run", "note": "\xe9t\xe9"}')
    make_run(runs, "list-run", "[1, 2, 3]")
    make_run(runs, "string-run", '"completed"')
    make_run(
        runs,
        "inf-run",
        record(
            "inf-run",
            train_seconds=float("inf"),
            best={"monitor": "val_loss", "value": float("inf"), "epoch": 2},
        ),
    )
    make_run(
        runs, "nan-run", record("nan-run", train_seconds=float("nan"), epochs_done=float("nan"))
    )
    make_run(
        runs,
        "odd-types-run",
        record(
            "odd-types-run",
            train_seconds=None,
            created=12,
            finished="2026-01-02T10:01:05",  # naive beside an aware `created`
            best=["val_loss", 0.3],
            status=["completed"],
            epochs_done="three",
            pid="123",
        ),
    )
    make_run(
        runs,
        "naive-aware-run",
        record("naive-aware-run", train_seconds=None, finished="2026-01-02T10:01:05"),
    )
    return runs


def test_list_runs_keeps_every_run(runs):
    rows = {r.id: r for r in list_runs(runs)}
    expected = {
        "good-run",
        "latin1-run",
        "list-run",
        "string-run",
        "inf-run",
        "nan-run",
        "odd-types-run",
        "naive-aware-run",
    }
    assert set(rows) == expected
    assert rows["good-run"].status == "completed" and rows["good-run"].duration == "1m 05s"
    assert rows["latin1-run"].status == "broken" and "UTF-8" in rows["latin1-run"].note
    assert rows["list-run"].status == "broken" and "JSON object" in rows["list-run"].note
    assert "a list" in rows["list-run"].note
    assert rows["string-run"].status == "broken" and "JSON object" in rows["string-run"].note
    # A non-finite train_seconds is not a time: the duration comes from created/finished.
    assert rows["inf-run"].status == "completed" and rows["inf-run"].duration == "1m 05s"
    assert rows["inf-run"].best == "val_loss inf @ 2"
    assert rows["nan-run"].duration == "1m 05s" and rows["nan-run"].epochs == "-"
    assert rows["naive-aware-run"].status == "completed"
    assert rows["naive-aware-run"].duration == "1m 05s"


def test_runs_command_lists_broken_runs_with_reasons(runs):
    r = cli("runs", "--runs-dir", runs)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    for name in ("good-run", "latin1-run", "list-run", "inf-run", "nan-run", "odd-types-run"):
        assert name in r.stdout, name
    notes = [line for line in r.stdout.splitlines() if line.startswith("* ")]
    assert any("latin1-run" in n and "UTF-8" in n for n in notes), notes
    assert any("list-run" in n and "JSON object" in n for n in notes), notes


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("latin1-run", ("run.json", "UTF-8", "byte 0xe9")),
        ("list-run", ("run.json", "not a JSON object", "a list")),
        ("string-run", ("run.json", "not a JSON object")),
    ],
)
def test_show_of_an_unreadable_record_is_one_error_line(runs, name, needles):
    r = cli("show", runs / name)
    assert_clean_error(r, *needles)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("name", ["inf-run", "nan-run", "odd-types-run", "naive-aware-run"])
def test_show_of_odd_values_shows_what_it_can(runs, name):
    # In-process (the CLI path is the same function): a crash here is a traceback.
    out = Console(file=io.StringIO(), width=PIPE_WIDTH, soft_wrap=True, color_system=None)
    show_run(RunDir(runs / name), out)
    text = out.file.getvalue()
    assert f"run {name}" in text
    assert "history" in text and "0.3000" in text


def test_show_of_odd_values_from_the_command_line(runs):
    r = cli("show", runs / "odd-types-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_show_non_numeric_history_rows(tmp_path):
    history = (
        "epoch,learning_rate,loss,val_loss\n"
        "0,abc,1.0,0.9\n"  # a word where the first learning rate should be
        "1,0.001,oops,0.5\n"
        "nan,0.001,0.4,0.4\n"  # no usable epoch number
        "3,0.001,0.3,0.3\n"
    )
    run = make_run(tmp_path, "csv-run", record("csv-run", epochs_done=4, epochs=4), history)
    r = cli("show", run)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Traceback" not in out
    assert "history.csv line 2" in out and "'abc'" in out
    assert "history.csv line 3" in out and "'oops'" in out
    assert "history.csv line 4" in out  # the row without an epoch is named, not silently lost
    table = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert any(line.split("│")[1].strip() == "4" for line in table), table  # last row is shown


@pytest.mark.parametrize("run_id", ["latin1-run", "list-run"])
@pytest.mark.parametrize("command", ["resume", "evaluate", "predict"])
def test_commands_on_a_broken_run_json_are_one_clean_error(runs, tmp_path, run_id, command):
    """resume needs run.json and names what is wrong with it; evaluate and predict do
    not need it (these runs lack model.keras): each is one clean error."""
    extra = [str(tmp_path / "x.npy")] if command == "predict" else []
    r = cli(command, runs / run_id, *extra)
    if command == "resume":
        assert_clean_error(r, "run.json")
        assert "UTF-8" in r.stderr or "JSON object" in r.stderr, r.stderr
    else:
        assert_clean_error(r, "no model.keras")
