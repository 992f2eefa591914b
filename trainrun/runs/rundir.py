"""The run directory: its layout, run.json, the lock that keeps one process per run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainrun.errors import RunDirError, TrainrunError
from trainrun.runs.files import write_atomic, write_json

STATUSES = ("running", "completed", "stopped_early", "interrupted", "failed")


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunDir:
    path: Path

    # ------------------------------------------------------------ layout
    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def history_csv(self) -> Path:
        return self.path / "history.csv"

    @property
    def state_dir(self) -> Path:
        return self.path / "state"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def model_file(self) -> Path:
        return self.path / "model.keras"

    @property
    def train_log(self) -> Path:
        return self.path / "train.log"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    # ------------------------------------------------------------ create / open
    @classmethod
    def create(cls, runs_dir: Path, name: str) -> RunDir:
        runs_dir = Path(runs_dir)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for _ in range(100):
            path = runs_dir / f"{name}-{stamp}-{secrets.token_hex(2)}"
            try:
                path.mkdir(parents=True)
                return cls(path)
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunDirError(
                    f"cannot create a run directory in {runs_dir}: {exc.strerror}"
                ) from None
        raise RunDirError(f"cannot find a free run directory name in {runs_dir}")

    @classmethod
    def open(cls, ref: str | Path, runs_dir: Path | None = None) -> RunDir:
        """A run from its directory, or from its id (or a unique id prefix) in `runs_dir`."""
        path = Path(ref)
        if not path.exists() and runs_dir is not None and not path.is_absolute():
            candidate = Path(runs_dir) / str(ref)
            if candidate.exists():
                path = candidate
            elif Path(runs_dir).is_dir():
                matches = sorted(p for p in Path(runs_dir).iterdir() if p.name.startswith(str(ref)))
                if len(matches) == 1:
                    path = matches[0]
                elif len(matches) > 1:
                    raise RunDirError(
                        f"'{ref}' matches {len(matches)} runs in {runs_dir}: "
                        + ", ".join(m.name for m in matches[:5])
                        + "; give more of the id"
                    )
        if not path.exists():
            where = f" (nor in {runs_dir})" if runs_dir else ""
            raise RunDirError(
                f"run directory not found: {ref}{where}; `trainrun runs` lists the runs"
            )
        if not path.is_dir():
            raise RunDirError(f"{ref} is a file, not a run directory; give runs/<id>")
        run = cls(path)
        if not run.run_json.is_file() or not run.config_file.is_file():
            missing = [f for f in ("run.json", "config.yaml") if not (path / f).is_file()]
            raise RunDirError(
                f"{path} is not a trainrun run directory (no {' or '.join(missing)}); "
                "give a directory made by `trainrun fit`"
            )
        return run

    # ------------------------------------------------------------ run.json
    def read_info(self) -> dict[str, Any]:
        try:
            return json.loads(self.run_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RunDirError(f"{self.run_json} is unreadable: {exc}") from None

    def check_resumable(self, info: dict[str, Any], epochs: int | None) -> None:
        """Refuse a resume that has nothing to do, before anything heavy is loaded."""
        done = info.get("epochs_done", 0)
        if epochs is not None and epochs < done:
            raise TrainrunError(
                f"--epochs {epochs} is below the {done} epochs this run has done already"
            )
        status = info.get("status")
        if status in ("completed", "stopped_early") and (epochs is None or epochs <= done):
            raise TrainrunError(
                f"run {self.id} is {status} after {done} epoch(s); "
                f"to train further, raise the target: trainrun resume {self.path} --epochs {done + 10}"
            )

    def write_info(self, info: dict[str, Any]) -> None:
        write_json(self.run_json, info)

    def update_info(self, **changes: Any) -> dict[str, Any]:
        info = self.read_info() if self.run_json.exists() else {}
        info.update(changes)
        self.write_info(info)
        return info

    def write_config(self, text: str) -> None:
        write_atomic(self.config_file, text)

    # ------------------------------------------------------------ lock
    def lock_owner(self) -> int | None:
        """pid of a live process that holds this run, or None."""
        try:
            pid = int(self.lock_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if pid and pid != os.getpid() and pid_alive(pid) else None

    def acquire(self) -> None:
        owner = self.lock_owner()
        if owner is not None:
            raise RunDirError(
                f"run {self.id} is in use by process {owner}; wait for it to finish or stop it "
                f"(kill -INT {owner}) before resuming"
            )
        write_atomic(self.lock_file, str(os.getpid()))

    def release(self) -> None:
        with contextlib.suppress(OSError):
            if self.lock_file.read_text().strip() == str(os.getpid()):
                self.lock_file.unlink()
