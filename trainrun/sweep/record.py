"""sweep.json: what a sweep directory is, read without optuna or TensorFlow.

runs/<sweep-id>/
    sweep.json          the sweep: config, parameters, storage and study, metric,
                        status, and the last known state of each trial (a cache of
                        the study, so that `trainrun runs` stays instant)
    base.yaml           the resolved config every trial starts from (seed fixed)
    study.db            Optuna's storage, unless --storage names another
    logs/trial-NNNN.log each trial's output
    trial-NNNN-<stamp>/ each trial: an ordinary run directory
    .lock               held by the process driving the sweep
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from trainrun.errors import RunDirError
from trainrun.runs.files import write_json

SWEEP_JSON = "sweep.json"
KIND = "trainrun-sweep"


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / SWEEP_JSON).is_file()


def read_record(path: Path) -> dict[str, Any]:
    file = Path(path) / SWEEP_JSON
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{file} is unreadable ({exc}); the sweep's record is damaged") from None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise RunDirError(f"{file} is not a trainrun sweep record")
    return record


class Record:
    """sweep.json of one sweep directory; one writer per process, each write atomic."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = Path(path)
        self.data = data
        self._lock = threading.Lock()

    def update(self, **changes: Any) -> None:
        with self._lock:
            self.data.update(changes)
            write_json(self.path / SWEEP_JSON, self.data)

    def set_trial(self, trial: int, **fields: Any) -> None:
        with self._lock:
            trials = self.data.setdefault("trials", {})
            trials.setdefault(str(trial), {}).update(fields)
            write_json(self.path / SWEEP_JSON, self.data)


class SweepLock:
    """An flock on the sweep's .lock for the life of the process that drives it."""

    def __init__(self, path: Path) -> None:
        self.file = Path(path) / ".lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise RunDirError(
                f"sweep {self.file.parent.name} is being run by process {owner or '?'}; "
                "one process drives a sweep directory (--workers N runs trials in parallel)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def held_elsewhere(self) -> bool:
        try:
            fd = os.open(self.file, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def summary_row(path: Path) -> dict[str, str]:
    """status, trials and best of a sweep for `trainrun runs`, from sweep.json alone."""
    record = read_record(path)
    status = record.get("status", "unknown")
    if status == "running" and not SweepLock(path).held_elsewhere():
        status = "killed"
    trials = record.get("trials") or {}
    done = [t for t in trials.values() if t.get("state") in ("COMPLETE", "PRUNED", "FAIL")]
    complete = [
        t for t in trials.values() if t.get("state") == "COMPLETE" and t.get("value") is not None
    ]
    best = "-"
    if complete:
        pick = max if record.get("direction") == "maximize" else min
        top = pick(complete, key=lambda t: t["value"])
        best = f"{record.get('metric')} {top['value']:.4g} (trial {top.get('number')})"
    note = f"sweep; `trainrun runs --sweep {path.name}` lists its trials"
    if status == "killed":
        note = f"sweep killed; `trainrun resume {path}` continues it"
    return {
        "status": f"sweep {status}",
        "epochs": f"{len(done)}/{record.get('trials_target', '?')} trials",
        "best": best,
        "note": note,
    }
