"""A run's train.log: timestamped lines of what the run showed and what user code printed."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any


class RunLog:
    """Appends timestamped lines to a run's train.log."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, text: str) -> None:
        stamp = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for line in text.rstrip("\n").splitlines() or [""]:
            self._f.write(f"{stamp}  {line}\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class Tee(io.TextIOBase):
    """Writes to `stream` and copies whole lines into the log."""

    def __init__(self, stream: Any, log: RunLog) -> None:
        self.stream = stream
        self.log = log
        self._pending = ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self._pending += text
        if "\n" in self._pending:
            done, _, self._pending = self._pending.rpartition("\n")
            self.log.write(done)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()
