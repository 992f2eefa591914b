"""`trainrun runs`: one row per directory in a runs directory, newest first.

Reads run.json files only (no TensorFlow): listing stays instant. A directory
that is not a run, or whose run.json cannot be read, is listed as such rather
than stopping the listing. A run.json that says "running" while no live
process holds the run is shown as killed: `trainrun resume` continues it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainrun.errors import RunDirError, TrainrunError
from trainrun.fmt import fmt_value
from trainrun.runs.exports import exports_cell
from trainrun.runs.record import Best, RunRecord, Status, finite
from trainrun.runs.rundir import RunDir, pid_alive


@dataclass
class RunRow:
    """What `trainrun runs` shows about one directory."""

    id: str
    status: Status  # a run.json status, or killed, unknown, broken, not a run
    epochs: str = "-"
    best: str = "-"
    duration: str = "-"
    started: str = "-"
    note: str = ""
    sort_key: float = 0.0
    exports: str = "-"  # `trainrun export` folders: "onnx, tflite-best"

    @property
    def ok(self) -> bool:
        return self.status not in (Status.BROKEN, Status.NOT_A_RUN)


def effective_status(run: RunDir, record: RunRecord) -> tuple[Status, str]:
    """(status, note): 'running' only while a live process holds the run.

    fit and resume record their pid in run.json and in the run's lock file and
    clear it when they finish; a "running" run whose process is gone was killed
    (SIGKILL, a crash, a lost machine) before it could record that.
    """
    if record.status is Status.UNKNOWN and record.status_text != Status.UNKNOWN:
        return Status.UNKNOWN, f"run.json's status is {record.status_text!r}"
    if record.status is not Status.RUNNING:
        return record.status, ""
    if run.lock_owner() is not None:
        return Status.RUNNING, ""
    pid = record.pid
    # The lock is the truth where there is one (a dead holder releases it, and
    # run.json's pid may belong to another process by now); runs from before the
    # lock have only the pid.
    if not run.lock_file.exists() and pid is not None and pid_alive(pid):
        return Status.RUNNING, ""
    gone = f"pid {pid} is gone" if pid else "no live process"
    try:
        run.check_resumable(record, None)
    except TrainrunError as exc:
        return Status.KILLED, f"run.json says running but {gone}; {exc.message}"
    return (
        Status.KILLED,
        f"run.json says running but {gone}; `trainrun resume {run.id}` continues it",
    )


def fmt_duration(seconds: Any) -> str:
    seconds = finite(seconds)
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def parse_time(text: Any, tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """An ISO time; a time without a zone is taken to be in `tz` (so it can be compared)."""
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=tz) if when.tzinfo is None and tz is not None else when


def fmt_best(best: Best | None) -> str:
    if best is None or best.value is None:
        return "-"
    epoch = "?" if best.epoch is None else best.epoch
    return f"{best.monitor or '?'} {fmt_value(best.value)} @ {epoch}"


def fmt_epochs(record: RunRecord) -> str:
    done, target = record.epochs_done, record.epochs
    if done is None:
        return "-"
    return f"{done}/{target}" if target is not None else str(done)


def _duration(record: RunRecord, status: Status) -> str:
    """Training time; for a run still going, the time since it started."""
    start = parse_time(record.created)
    end = parse_time(record.finished, start.tzinfo if start else None)
    if start and end and (start.tzinfo is None) != (end.tzinfo is None):
        start = start.replace(tzinfo=end.tzinfo)
    if status is Status.RUNNING and start:
        return fmt_duration((dt.datetime.now(start.tzinfo) - start).total_seconds()) + " so far"
    seconds = record.train_seconds
    if seconds is not None and seconds > 0:
        return fmt_duration(seconds)
    if start and end:
        return fmt_duration((end - start).total_seconds())
    return "-"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def describe(path: Path) -> RunRow:
    """One directory as a row; never raises for what is inside it."""
    run = RunDir(path)
    if (path / "sweep.json").is_file():
        from trainrun.sweep.record import summary_row

        return RunRow(path.name, sort_key=_mtime(path), **summary_row(path))
    if not run.run_json.is_file():
        missing = "no run.json" + ("" if run.config_file.is_file() else " or config.yaml")
        return RunRow(path.name, Status.NOT_A_RUN, note=missing, sort_key=_mtime(path))
    try:
        record = run.read_record()
    except TrainrunError as exc:
        return RunRow(path.name, Status.BROKEN, note=exc.message, sort_key=_mtime(path))
    status, note = effective_status(run, record)
    created = parse_time(record.created)
    if record.error and not note:
        note = record.error
    return RunRow(
        id=record.id or path.name,
        status=status,
        epochs=fmt_epochs(record),
        best=fmt_best(record.best),
        duration=_duration(record, status),
        started=created.strftime("%Y-%m-%d %H:%M") if created else "-",
        note=note,
        sort_key=created.timestamp() if created else _mtime(path),
        exports=exports_cell(run),
    )


def _describe_or_broken(path: Path) -> RunRow:
    """describe(), with a last guard: a value no check foresaw breaks its own row only."""
    try:
        return describe(path)
    except Exception as exc:  # noqa: BLE001 - one run's damage must not hide the others
        note = f"cannot be read ({type(exc).__name__}: {exc}); `trainrun show {path}` for details"
        return RunRow(path.name, Status.BROKEN, note=note, sort_key=_mtime(path))


def list_runs(runs_dir: Path) -> list[RunRow]:
    """Every directory in `runs_dir` as a row, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        raise RunDirError(
            f"runs directory not found: {runs_dir}; `trainrun fit` creates it "
            "(give --runs-dir DIR to look elsewhere)"
        )
    if not runs_dir.is_dir():
        raise RunDirError(f"--runs-dir {runs_dir} is a file, not a directory of runs")
    if RunDir(runs_dir).run_json.is_file():
        raise RunDirError(
            f"{runs_dir} is one run, not a directory of runs; "
            f"`trainrun show {runs_dir}` shows it, `--runs-dir {runs_dir.parent}` lists its siblings"
        )
    try:
        entries = [p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError as exc:
        raise RunDirError(f"cannot read {runs_dir}: {exc.strerror}") from None
    rows = [_describe_or_broken(p) for p in entries]
    return sorted(rows, key=lambda r: (r.sort_key, r.id), reverse=True)
