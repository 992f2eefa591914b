"""`trainrun runs`: one row per directory in a runs directory, newest first.

Reads run.json files only (no TensorFlow): listing stays instant. A directory
that is not a run, or whose run.json cannot be read, is listed as such rather
than stopping the listing. A run.json that says "running" while no live
process holds the run is shown as killed: `trainrun resume` continues it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainrun.console import fmt_value
from trainrun.errors import RunDirError
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


def effective_status(run: RunDir, info: dict[str, Any]) -> tuple[str, str]:
    """(status, note): 'running' only while a live process holds the run.

    fit and resume record their pid in run.json and in the run's lock file and
    clear it when they finish; a "running" run whose process is gone was killed
    (SIGKILL, a crash, a lost machine) before it could record that.
    """
    status = str(info.get("status") or "unknown")
    if status != "running":
        return status, ""
    pid = info.get("pid")
    if run.lock_owner() is not None or (isinstance(pid, int) and pid > 0 and pid_alive(pid)):
        return "running", ""
    gone = f"pid {pid} is gone" if pid else "no live process"
    return "killed", f"run.json says running but {gone}; `trainrun resume {run.id}` continues it"


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds < 0:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def fmt_best(best: Any) -> str:
    if not isinstance(best, dict) or "value" not in best:
        return "-"
    return f"{best.get('monitor', '?')} {fmt_value(best['value'])} @ {best.get('epoch', '?')}"


def _duration(info: dict[str, Any], status: str) -> str:
    """Training time; for a run still going, the time since it started."""
    start, end = parse_time(info.get("created")), parse_time(info.get("finished"))
    if status == "running" and start:
        return fmt_duration((dt.datetime.now(start.tzinfo) - start).total_seconds()) + " so far"
    if isinstance(info.get("train_seconds"), int | float) and info["train_seconds"] > 0:
        return fmt_duration(info["train_seconds"])
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
    if not run.run_json.is_file():
        missing = "no run.json" + ("" if run.config_file.is_file() else " or config.yaml")
        return RunRow(path.name, "not a run", note=missing, sort_key=_mtime(path))
    try:
        info = json.loads(run.run_json.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return RunRow(path.name, "broken", note=f"run.json: {exc}", sort_key=_mtime(path))
    if not isinstance(info, dict):
        return RunRow(
            path.name, "broken", note="run.json is not a JSON object", sort_key=_mtime(path)
        )
    status, note = effective_status(run, info)
    created = parse_time(info.get("created"))
    done, target = info.get("epochs_done"), info.get("epochs")
    epochs = "-" if done is None else f"{done}/{target}" if target is not None else str(done)
    if info.get("error") and not note:
        note = str(info["error"])
    return RunRow(
        id=str(info.get("id") or path.name),
        status=status,
        epochs=epochs,
        best=fmt_best(info.get("best")),
        duration=_duration(info, status),
        started=created.strftime("%Y-%m-%d %H:%M") if created else "-",
        note=note,
        sort_key=created.timestamp() if created else _mtime(path),
    )


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
    rows = [describe(p) for p in entries]
    return sorted(rows, key=lambda r: (r.sort_key, r.id), reverse=True)
