"""`trainrun runs` and `trainrun show` on hand-made run directories: fast, no TensorFlow."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest
from conftest import ROOT, assert_clean_error, cli

from trainrun.runs.listing import list_runs


def make_run(runs, name, *, status="completed", created="2026-01-02T10:00:00+00:00", **info):
    run = runs / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        "name: demo\nseed: 1\nmodel:\n  layers:\n  - Input: {shape: [4]}\n  - Dense: {units: 1}\n"
        "compile: {optimizer: rmsprop, loss: mse}\nfit: {epochs: 3, batch_size: 8}\n"
    )
    record = {
        "id": name,
        "status": status,
        "error": None,
        "created": created,
        "finished": None if status == "running" else created.replace("10:00:00", "10:01:05"),
        "epochs_done": 3,
        "epochs": 3,
        "best": {"monitor": "val_loss", "value": 0.25, "epoch": 2},
        "pid": None,
        "train_seconds": 65.0,
        **info,
    }
    (run / "run.json").write_text(json.dumps(record))
    return run


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "old-run", created="2026-01-01T09:00:00+00:00")
    make_run(runs, "new-run", created="2026-01-03T09:00:00+00:00")
    make_run(
        runs,
        "killed-run",
        status="running",
        created="2026-01-02T09:00:00+00:00",
        pid=dead_pid(),
        epochs_done=1,
        best=None,
    )
    (runs / "killed-run" / "state" / "ckpt-000001").mkdir(parents=True)  # its saved state
    broken = runs / "broken-run"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    (runs / "notes").mkdir()  # a foreign directory
    (runs / "README.txt").write_text("not a directory: skipped")
    return runs


def test_list_runs_newest_first_and_statuses(runs):
    rows = {r.id: r for r in list_runs(runs)}
    assert set(rows) == {"old-run", "new-run", "killed-run", "broken-run", "notes"}
    dated = [r.id for r in list_runs(runs) if r.ok]
    assert dated == ["new-run", "killed-run", "old-run"]
    assert rows["new-run"].status == "completed"
    assert rows["new-run"].epochs == "3/3"
    assert rows["new-run"].best == "val_loss 0.2500 @ 2"
    assert rows["new-run"].duration == "1m 05s"
    assert rows["killed-run"].status == "killed" and "resume" in rows["killed-run"].note
    assert rows["broken-run"].status == "broken" and "run.json" in rows["broken-run"].note
    assert rows["notes"].status == "not a run"


def test_running_with_a_live_pid_stays_running(tmp_path):
    import os

    make_run(tmp_path, "live", status="running", pid=os.getpid())
    (row,) = list_runs(tmp_path)
    assert row.status == "running" and not row.note
    assert row.duration.endswith("so far")


def test_runs_command_table(runs):
    r = cli("runs", "--runs-dir", runs)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for text in ("new-run", "old-run", "killed", "broken", "not a run", "val_loss 0.2500 @ 2"):
        assert text in out, text
    assert out.index("new-run") < out.index("killed-run") < out.index("old-run")
    assert "README.txt" not in out


def test_runs_command_bad_dirs(tmp_path, runs):
    assert_clean_error(cli("runs", "--runs-dir", tmp_path / "nowhere"), "runs directory not found")
    assert_clean_error(cli("runs", "--runs-dir", runs / "new-run"), "is one run")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("runs", "--runs-dir", empty)
    assert r.returncode == 0 and "no runs in" in r.stdout


def _imports_after(args: list[str]) -> dict:
    """Run a CLI command in-process; report its exit code and the heavy modules it imported."""
    code = (
        "import json, sys\n"
        "from trainrun.cli import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "    rc = 0\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code\n"
        "print(json.dumps({'rc': rc, 'tf': 'tensorflow' in sys.modules,"
        " 'keras': 'keras' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_light_commands_do_not_import_tensorflow(runs):
    history = runs / "new-run" / "history.csv"
    history.write_text("epoch,loss,val_loss\n0,1.0,0.9\n1,0.5,0.4\n")
    for args in (
        ["runs", "--runs-dir", str(runs)],
        ["show", str(runs / "new-run")],
        ["callbacks"],
        ["callbacks", "ModelCheckpoint"],
    ):
        seen = _imports_after(args)
        assert seen == {"rc": 0, "tf": False, "keras": False}, (args, seen)
    # Resuming a completed run is refused before TensorFlow is imported.
    seen = _imports_after(["resume", str(runs / "new-run")])
    assert seen == {"rc": 2, "tf": False, "keras": False}, seen


def test_show_history_best_epoch_and_curves(runs):
    run = runs / "new-run"
    (run / "history.csv").write_text(
        "epoch,learning_rate,loss,mae,val_loss,val_mae\n"
        "0,0.01,1.0,0.9,0.8,0.7\n"
        "1,0.001,0.5,0.45,0.25,0.2\n"
        "2,0.001,0.4,0.35,0.3,0.25\n"
    )
    r = cli("show", "new-run", "--runs-dir", runs)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "completed" in out and "val_loss 0.2500 @ 2" in out
    assert "Dense(units=1)" in out and "rmsprop" in out
    assert "2 *" in out  # the best epoch, 1-based as fit prints it
    assert "learning rate" in out  # the rate changed, so it is a column and a curve
    assert "val_mae" in out and "0.2500" in out
    assert "evaluation" not in out
    (run / "eval.json").write_text(
        json.dumps({"split": "test", "checkpoint": "model.keras", "metrics": {"loss": 0.125}})
    )
    r = cli("show", run)
    assert "evaluation (model.keras on test" in r.stdout and "0.1250" in r.stdout
    png = run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_without_history_and_wrong_refs(runs, tmp_path):
    r = cli("show", runs / "killed-run")
    assert r.returncode == 0, r.stderr
    assert "killed" in r.stdout and "no epochs recorded" in r.stdout
    assert not (runs / "killed-run" / "curves.png").exists()
    assert_clean_error(cli("show", "nope", "--runs-dir", runs), "run directory not found: nope")
    assert_clean_error(cli("show", runs / "notes"), "not a trainrun run directory")
    broken = runs / "broken-run"
    (broken / "config.yaml").write_text("name: x\n")
    assert_clean_error(cli("show", broken), "run.json is unreadable")


def test_show_long_history_keeps_first_last_and_best_epochs(runs):
    run = runs / "old-run"
    rows = [f"{e},{1.0 / (e + 1)},{0.5 if e == 50 else 1.0 + e / 100}" for e in range(100)]
    (run / "history.csv").write_text("epoch,loss,val_loss\n" + "\n".join(rows) + "\n")
    info = json.loads((run / "run.json").read_text())
    info["best"] = {"monitor": "val_loss", "value": 0.5, "epoch": 51}
    (run / "run.json").write_text(json.dumps(info))
    r = cli("show", run)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    epochs = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert epochs[0] == "1" and epochs[-1] == "100" and "51 *" in epochs and "…" in epochs
    assert "30" not in epochs and len(epochs) < 50


def test_help_lists_the_run_commands():
    r = cli("--help")
    assert r.returncode == 0
    for command in ("evaluate", "predict", "runs", "show", "validate", "callbacks"):
        assert command in r.stdout, command


LONG_ID = "mnist-mlp-wide-20260103-101500-7b98"


@pytest.fixture
def wide_runs(runs):
    best = {"monitor": "val_sparse_categorical_accuracy", "value": 0.98765, "epoch": 12}
    make_run(runs, LONG_ID, created="2026-01-04T09:00:00+00:00", best=best, epochs=20)
    return runs


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("│")]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_runs_on_a_terminal_keep_ids_whole(wide_runs, width):
    from rich.console import Console

    from trainrun.commands.runs import show_runs

    out = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    show_runs(wide_runs, out)
    text = out.file.getvalue()
    rows = _table_lines(text)
    assert rows, text
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= width for line in table), text
    assert "…" not in text
    ids = [line.split("│")[1].strip() for line in rows]
    assert set(ids) == {LONG_ID, "new-run", "killed-run", "old-run", "broken-run", "notes"}, ids
    assert all("killed" in line for line in rows if "killed-run" in line)


def test_runs_on_a_terminal_too_narrow_for_a_table_lists_ids_whole(wide_runs):
    from rich.console import Console

    from trainrun.commands.runs import show_runs

    out = Console(file=io.StringIO(), width=30, force_terminal=True, color_system=None)
    show_runs(wide_runs, out)
    lines = out.file.getvalue().splitlines()
    assert any(line.startswith(f"{LONG_ID}  completed") for line in lines), lines
    assert "…" not in out.file.getvalue()


@pytest.mark.parametrize("columns", ["80", "120"])
def test_runs_command_at_terminal_widths(wide_runs, columns):
    r = cli("runs", "--runs-dir", wide_runs, env={"TTY_COMPATIBLE": "1", "COLUMNS": columns})
    assert r.returncode == 0, r.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout)
    table = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= int(columns) for line in table), text
    assert any(f"│ {LONG_ID} " in line for line in table), text
    assert "…" not in text


def test_runs_piped_has_whole_lines(wide_runs):
    r = cli("runs", "--runs-dir", wide_runs, env={"COLUMNS": ""})  # a pipe, no width given
    assert r.returncode == 0, r.stderr
    rows = _table_lines(r.stdout)
    long_row = next(line for line in rows if LONG_ID in line)
    assert "val_sparse_categorical_accuracy 0.9877 @ 12" in long_row
    assert "2026-01-04" in long_row and "│ 3/20 " in long_row
    assert len(rows) == 6  # one line a run: nothing wrapped
    killed = next(line for line in r.stdout.splitlines() if line.startswith("* killed-run"))
    assert "trainrun resume killed-run" in killed


METRICS = ["loss", "sparse_categorical_accuracy", "top_k_categorical_accuracy", "precision"]


def _many_metrics_run(runs):
    run = runs / "new-run"
    names = [*METRICS, *(f"val_{m}" for m in METRICS)]
    lines = ["epoch," + ",".join(names) + ",learning_rate"]
    for e in range(3):
        values = [f"{0.5 / (e + 1) + i / 100:.6f}" for i in range(len(names))]
        lines.append(f"{e}," + ",".join(values) + f",{0.01 / (e + 1)}")
    (run / "history.csv").write_text("\n".join(lines) + "\n")
    config = (
        (run / "config.yaml")
        .read_text()
        .replace(
            "  - Dense: {units: 1}\n",
            "  - Dense: {units: 64, activation: relu}\n" * 4 + "  - Dense: {units: 1}\n",
        )
    )
    (run / "config.yaml").write_text(config)
    return run, names


@pytest.mark.parametrize("columns", [80, 120])
def test_show_on_a_terminal_keeps_names_and_numbers_whole(runs, columns):
    run, names = _many_metrics_run(runs)
    from rich.console import Console

    from trainrun.commands.show import show_run
    from trainrun.runs.rundir import RunDir

    # In-process (the command is this call); a terminal is Rich's force_terminal.
    out = Console(file=io.StringIO(), width=columns, force_terminal=True, color_system=None)
    show_run(RunDir(run), out)
    text = out.file.getvalue()
    tables = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= columns for line in tables), text
    assert "…" not in text
    cells = {cell.strip() for line in tables if line.startswith("│") for cell in line.split("│")}
    assert {"0.5000", "0.5700", "0.1667", "2 *"} <= cells, cells  # numbers whole, in cells
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "curves")
    series = {line.split()[0] for line in lines[start + 2 :] if line.startswith("  ")}
    assert set(names) <= series, series  # curve names whole


def test_show_piped_keeps_every_line_whole(runs):
    run, names = _many_metrics_run(runs)
    r = cli("show", run, env={"COLUMNS": ""})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    model = next(line for line in lines if line.strip().startswith("model"))
    assert model.rstrip().endswith("Dense(units=1)"), model  # the whole model on one line
    header = next(line for line in lines if line.startswith("┃"))
    assert all(name.replace("_", " ") in header for name in names), header  # one table
    assert any(line.startswith("history (* best epoch") for line in lines)
    for name in names:
        assert any(line.split()[:1] == [name] for line in lines), name


def test_a_killed_run_without_state_is_not_offered_a_resume(tmp_path):
    run = make_run(tmp_path, "nostate", status="running", pid=dead_pid())
    config = run / "config.yaml"
    config.write_text(config.read_text() + "outputs: {state: false}\n")
    (row,) = list_runs(tmp_path)
    assert row.status == "killed"
    assert "trainrun resume" not in row.note
    assert "outputs.state: false" in row.note and "trainrun fit" in row.note


def test_a_reused_pid_without_the_lock_is_not_running(tmp_path):
    """The lock decides: run.json's pid may belong to another process by now."""
    import os

    run = make_run(tmp_path, "reused", status="running", pid=os.getpid())
    (run / ".lock").write_text(f"{os.getpid()}\n")  # a lock file nobody holds
    (row,) = list_runs(tmp_path)
    assert row.status == "killed", row


def test_a_killed_run_whose_state_is_gone_is_not_offered_a_resume(tmp_path):
    make_run(tmp_path, "lost", status="running", pid=dead_pid(), epochs_done=2)
    (row,) = list_runs(tmp_path)
    assert row.status == "killed"
    assert "trainrun resume" not in row.note and "state" in row.note
