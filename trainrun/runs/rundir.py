"""The run directory: its layout, run.json, the lock that keeps one process per run."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainrun.errors import RunDirError, RunError, TrainrunError
from trainrun.runs.files import write_atomic, write_json
from trainrun.runs.record import RunRecord


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
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise RunError(
                        f"disk full while creating a run directory in {runs_dir}: free space "
                        "and run the same trainrun fit again"
                    ) from None
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
    def read_record(self) -> RunRecord:
        """The run's run.json; RunDirError naming the file and what is wrong with it.

        Infinity and NaN are accepted (Python's json writes them for a diverged loss);
        a value of the wrong type reads as unset (see RunRecord), so one odd value
        costs one cell where it is shown.
        """
        path = self.run_json
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RunDirError(f"{path} is unreadable: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RunDirError(
                f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "the run's record is damaged: restore it from a backup or remove the run"
            ) from None
        try:
            info = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunDirError(
                f"{path} is unreadable: {exc.msg} at line {exc.lineno} column {exc.colno}; "
                "the run's record is damaged: restore it from a backup or remove the run"
            ) from None
        if not isinstance(info, dict):
            raise RunDirError(
                f"{path} is not a JSON object (it holds {_kind(info)}); "
                'a run\'s record is an object like {"id": ..., "status": ...}'
            )
        return RunRecord.from_json(info)

    def write_record(self, record: RunRecord) -> None:
        """The one writer of run.json: atomic (a kill leaves the old record or the new)."""
        write_json(self.run_json, record.to_json())

    def update_record(self, **changes: Any) -> RunRecord:
        """Read run.json, set `changes`, write it back (what else it holds is kept)."""
        record = self.read_record() if self.run_json.exists() else RunRecord()
        self.write_record(record.update(**changes))
        return record

    def check_resumable(
        self, record: RunRecord | dict[str, Any], epochs: int | None, *, state: bool = True
    ) -> None:
        """Refuse a resume that has nothing to do or nothing to continue from, before
        anything heavy is loaded. The source of truth for whether a run can be resumed
        (`trainrun runs` should offer `resume` only where this passes). `state=False`
        leaves out `check_state_present` (a multi-worker resume checks it with the others)."""
        record = as_record(record)
        if "epochs_done" in record.invalid:
            raise RunDirError(
                f"{self.run_json}: epochs_done is {record.invalid['epochs_done']!r}, "
                "expected a whole number >= 0"
            )
        done = record.epochs_done or 0
        if epochs is not None and epochs < done:
            raise TrainrunError(
                f"--epochs {epochs} is below the {done} epochs this run has done already"
            )
        if not self.saves_state():
            raise RunDirError(
                f"run {self.id} was trained with outputs.state: false, so it saved no state "
                "to resume from; train it again with state on: "
                f"trainrun fit {self.config_file} --set outputs.state=true"
            )
        if record.status.finished and (epochs is None or epochs <= done):
            raise TrainrunError(
                f"run {self.id} is {record.status} after {done} epoch(s); "
                f"to train further, raise the target: trainrun resume {self.path} --epochs {done + 10}"
            )
        if state:
            self.check_state_present(record)

    def check_state_present(self, record: RunRecord | dict[str, Any]) -> None:
        """Refuse a run that has made progress but whose state/ is gone."""
        progress = self.progress(record)
        if progress and not (self.state_dir.is_dir() and any(self.state_dir.glob("ckpt-*"))):
            raise RunDirError(
                f"{self.state_dir} is missing or empty, but {progress}; resuming from the start "
                "would silently drop that progress, so it is refused. Put back state/ from a "
                f"backup, or train again as a new run: trainrun fit {self.config_file}"
            )

    def saves_state(self) -> bool:
        """Whether the run's config.yaml has resume state on (`outputs.state`, default true)."""
        import yaml  # only here: the rest of RunDir needs no YAML

        try:
            config = yaml.safe_load(self.config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return True  # unreadable: loading the config reports it, with its line
        outputs = config.get("outputs") if isinstance(config, dict) else None
        return not (isinstance(outputs, dict) and outputs.get("state") is False)

    def progress(self, record: RunRecord | dict[str, Any]) -> str | None:
        """What says this run trained before (so a missing state loses work), or None."""
        record = as_record(record)
        if record.epochs_done:
            return f"run.json records {record.epochs_done} epoch(s) done"
        if record.state_saved:
            return "run.json records a saved state"
        return None

    def write_config(self, text: str) -> None:
        write_atomic(self.config_file, text)

    # ------------------------------------------------------------ lock
    # The lock is an fcntl.flock on .lock, held for the life of the process that
    # trains the run: taking it is one atomic step (no check-then-write window),
    # and the kernel releases it when the holder dies, kill -9 included. The pid
    # written into the file is only for messages: a stale file is never trusted.
    _lock_fd: int | None = field(default=None, init=False, repr=False, compare=False)

    def lock_owner(self) -> int | None:
        """pid of another live process that holds this run, or None."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _lock_pid(fd)
                return pid if pid != os.getpid() else None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def acquire(self) -> None:
        """Hold this run for this process, then clean what killed processes left behind."""
        if self._lock_fd is not None:
            return
        while True:
            try:
                fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise RunDirError(
                    f"run directory {self.path} is not writable ({exc.strerror}: cannot create "
                    f"{self.lock_file.name}); training writes its state, history and model there: "
                    "make it writable, or copy the run elsewhere and resume the copy"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _lock_pid(fd)
                os.close(fd)
                holder = f"process {owner}" if owner else "another process"
                stop = f" (kill -INT {owner})" if owner else ""
                raise RunDirError(
                    f"run {self.id} is in use by {holder}; wait for it to finish or stop it{stop} "
                    "before resuming"
                ) from None
            # A holder that released and unlinked the file between our open and
            # flock leaves us locking a file nobody else sees: take the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        self.clean_temp_files()

    def release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_file.unlink()  # while still held: no one can lock the old file
        os.close(fd)

    # ------------------------------------------------------------ temp files
    def clean_temp_files(self) -> list[Path]:
        """Remove the temp files killed trainrun processes left in this run.

        Only trainrun's own names, and only while this process holds the run
        (nothing else writes them then): `write_atomic`'s ``.NAME.XXXXXXXX.tmp``
        for the files training writes, anywhere under state/, and the
        ``.tmp-PID-NAME`` files of model saves (model.keras, ModelCheckpoint)
        anywhere in the run. A non-chief worker's directory inside the run is
        its own run, with its own lock, and is left alone.
        """
        if self._lock_fd is None:
            raise RunDirError(f"cleaning {self.path} needs its lock")
        removed: list[Path] = []
        for path in self._walk(self.path):
            name = path.name
            in_state = self.state_dir in path.parents
            ours = MODEL_TMP.match(name) or (
                (m := ATOMIC_TMP.match(name))
                and (in_state or (path.parent == self.path and m.group(1) in TRAINING_FILES))
            )
            if ours and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
        return removed

    def _walk(self, top: Path) -> list[Path]:
        out: list[Path] = []
        try:
            entries = list(os.scandir(top))
        except OSError:
            return out
        for entry in entries:
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                if top != self.path or not (path / "run.json").exists():
                    out.extend(self._walk(path))
            else:
                out.append(path)
        return out


# write_atomic's temp names (tempfile.mkstemp: ".NAME." + 8 chars + ".tmp"), and
# the model-save wrapper's (".tmp-PID-NAME").
ATOMIC_TMP = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")
MODEL_TMP = re.compile(r"^\.tmp-\d+-.+")
# Files of the run directory itself that training writes atomically. Not
# eval.json or curves.png: `evaluate` and `show` may be writing them right now.
TRAINING_FILES = ("run.json", "config.yaml", "history.csv", "model.keras", ".lock")


def as_record(record: RunRecord | dict[str, Any]) -> RunRecord:
    """A RunRecord, from run.json's object where a caller holds that."""
    return record if isinstance(record, RunRecord) else RunRecord.from_json(record)


def _lock_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        return int(text[0]) if text else None
    except (OSError, ValueError):
        return None


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")
