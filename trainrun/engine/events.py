"""What the engine tells whoever shows a run, and nothing about how it is shown.

The engine reports through an `Events` object; only the command-line layer
knows Rich (`trainrun.console.Reporter` is its implementation). `Quiet` shows
nothing: `trainrun validate` builds a run without showing one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trainrun.runs.record import Status


@dataclass(frozen=True)
class RunStart:
    """A run about to train: `verb` is fit or resume; `label` its id as shown."""

    verb: str
    label: str
    path: Path
    devices: dict[str, Any]
    steps_per_epoch: int | None
    steps_per_execution: int
    jit_compile: Any


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, for its summary."""

    status: Status
    error: str | None
    path: Path
    config_file: Path
    epochs_done: int
    epochs: int
    best: dict[str, Any] | None
    final: tuple[int, str] | None  # (epoch counted from 1, why) of model.keras' weights
    last: dict[str, Any] | None  # the last epoch's logs
    seconds: float
    resumable: bool  # outputs.state: the run saves state that resume continues from


class Events(Protocol):
    """The engine's side of the display: messages, train.log, training progress."""

    log_path: Path | None  # train.log while it is attached

    def info(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def attach_log(self, path: Path) -> None: ...
    def detach_log(self) -> None: ...
    def drop_log(self) -> None: ...
    def to_log(self, text: str) -> None: ...
    def capture_output(self) -> AbstractContextManager[None]: ...
    def run_started(self, start: RunStart) -> None: ...
    def start_training(self, *, initial_epoch: int, epochs: int, steps: int | None) -> None: ...
    def begin_epoch(
        self, epoch: int, epochs: int, steps: int | None, start_step: int = 0
    ) -> None: ...
    def batch(self, step: int, logs: Mapping[str, Any]) -> None: ...
    def end_epoch(self, epoch: int, epochs: int, logs: Mapping[str, Any]) -> None: ...
    def stop_training(self) -> None: ...
    def run_finished(self, end: RunEnd) -> None: ...


class Quiet:
    """Events that show and log nothing."""

    log_path: Path | None = None

    def info(self, text: str) -> None:
        pass

    warn = to_log = info

    def attach_log(self, path: Path) -> None:
        pass

    def detach_log(self) -> None:
        pass

    drop_log = stop_training = detach_log

    @contextlib.contextmanager
    def capture_output(self) -> Iterator[None]:
        yield

    def run_started(self, start: RunStart) -> None:
        pass

    def start_training(self, *, initial_epoch: int, epochs: int, steps: int | None) -> None:
        pass

    def begin_epoch(self, epoch: int, epochs: int, steps: int | None, start_step: int = 0) -> None:
        pass

    def batch(self, step: int, logs: Mapping[str, Any]) -> None:
        pass

    def end_epoch(self, epoch: int, epochs: int, logs: Mapping[str, Any]) -> None:
        pass

    def run_finished(self, end: RunEnd) -> None:
        pass
