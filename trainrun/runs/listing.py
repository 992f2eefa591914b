"""`trainrun runs`: one row per directory in a runs directory, newest first.

Reads run.json files only (no TensorFlow): listing stays instant. A directory
that is not a run, or whose run.json cannot be read, is listed as such rather
than stopping the listing. A run.json that says "running" while no live
process holds the run is shown as killed: `trainrun resume` continues it.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainrun.console import fmt_value
from trainrun.errors import RunDirError, TrainrunError
from trainrun.runs.rundir import RunDir, pid_alive


@dataclass
class RunRow:
    """What `trainrun runs` shows about one directory."""

    id: str
    status: str  # a run.json status, "killed", "broken" or "not a run"
    epochs: str = "-"
    best: str = "-"
    duration: str = "-"
    started: str = "-"
    note: str = ""
    sort_key: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status not in ("broken", "not a run")


def finite(value: Any) -> float | None:
    """A real, finite number, or None (for a missing field, a string, NaN, Infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def count(value: Any) -> int | None:
    """A whole non-negative count (epochs), or None."""
    number = finite(value)
    if number is None or number < 0 or number != int(number):
        return None
    return int(number)


def effective_status(run: RunDir, info: dict[str, Any]) -> tuple[str, str]:
    """(status, note): 'running' only while a live process holds the run.

    fit and resume record their pid in run.json and in the run's lock file and
    clear it when they finish; a "running" run whose process is gone was killed
    (SIGKILL, a crash, a lost machine) before it could record that.
    """
    status = info.get("status")
    status = status if isinstance(status, str) and status else "unknown"
    if status != "running":
        return status, ""
    if run.lock_owner() is not None:
        return "running", ""
    pid = info.get("pid")
    pid = pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None
    # The lock is the truth where there is one (a dead holder releases it, and
    # run.json's pid may belong to another process by now); runs from before the
    # lock have only the pid.
    if not run.lock_file.exists() and pid is not None and pid_alive(pid):
        return "running", ""
    gone = f"pid {pid} is gone" if pid else "no live process"
    try:
        run.check_resumable(info, None)
    except TrainrunError as exc:
        return "killed", f"run.json says running but {gone}; {exc.message}"
    return "killed", f"run.json says running but {gone}; `trainrun resume {run.id}` continues it"


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


def fmt_best(best: Any) -> str:
    if not isinstance(best, dict) or "value" not in best:
        return "-"
    epoch = count(best.get("epoch"))
    return (
        f"{best.get('monitor', '?')} {fmt_value(best['value'])} @ {'?' if epoch is None else epoch}"
    )


def fmt_epochs(info: dict[str, Any]) -> str:
    done, target = count(info.get("epochs_done")), count(info.get("epochs"))
    if done is None:
        return "-"
    return f"{done}/{target}" if target is not None else str(done)


def _duration(info: dict[str, Any], status: str) -> str:
    """Training time; for a run still going, the time since it started."""
    start = parse_time(info.get("created"))
    end = parse_time(info.get("finished"), start.tzinfo if start else None)
    if start and end and (start.tzinfo is None) != (end.tzinfo is None):
        start = start.replace(tzinfo=end.tzinfo)
    if status == "running" and start:
        return fmt_duration((dt.datetime.now(start.tzinfo) - start).total_seconds()) + " so far"
    seconds = finite(info.get("train_seconds"))
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
        return RunRow(path.name, "not a run", note=missing, sort_key=_mtime(path))
    try:
        info = run.read_info()
    except TrainrunError as exc:
        return RunRow(path.name, "broken", note=exc.message, sort_key=_mtime(path))
    status, note = effective_status(run, info)
    created = parse_time(info.get("created"))
    if info.get("error") and not note:
        note = str(info["error"])
    return RunRow(
        id=info["id"] if isinstance(info.get("id"), str) and info["id"] else path.name,
        status=status,
        epochs=fmt_epochs(info),
        best=fmt_best(info.get("best")),
        duration=_duration(info, status),
        started=created.strftime("%Y-%m-%d %H:%M") if created else "-",
        note=note,
        sort_key=created.timestamp() if created else _mtime(path),
    )


def _describe_or_broken(path: Path) -> RunRow:
    """describe(), with a last guard: a value no check foresaw breaks its own row only."""
    try:
        return describe(path)
    except Exception as exc:  # noqa: BLE001 - one run's damage must not hide the others
        note = f"cannot be read ({type(exc).__name__}: {exc}); `trainrun show {path}` for details"
        return RunRow(path.name, "broken", note=note, sort_key=_mtime(path))


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
