"""The one Rich console: messages, the training progress display, tables.

The engine reports through a `Reporter`; it never prints itself. Everything a
run shows is also appended to its train.log (without colour), so the log holds
what the run printed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import math
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column, Table

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def fmt_metrics(logs: Mapping[str, Any], keys: list[str] | None = None) -> str:
    keys = keys if keys is not None else [k for k in logs if k != "learning_rate"]
    return "  ".join(f"{k} {fmt_value(logs[k])}" for k in keys if k in logs)


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


class Reporter:
    """What a run shows the user: a live progress display on a terminal, plain lines otherwise."""

    def __init__(self, out: Console | None = None) -> None:
        self.console = out or console
        self.log: RunLog | None = None
        self._progress: Progress | None = None
        self._epoch_task: Any = None
        self._batch_task: Any = None
        self._epoch_started = 0.0

    # ------------------------------------------------------------ messages
    def attach_log(self, path: Path) -> None:
        self.log = RunLog(path)

    def detach_log(self) -> None:
        if self.log:
            self.log.close()
            self.log = None

    @contextlib.contextmanager
    def capture_output(self) -> Iterator[None]:
        """Copy what user code prints (callbacks, Keras warnings) into train.log.

        The Rich consoles are pinned to the real streams first, so trainrun's own
        display goes to the terminal only (its lines reach the log through to_log).
        """
        if self.log is None:
            yield
            return
        out, err = sys.stdout, sys.stderr
        pinned = [(c, c._file) for c in (self.console, err_console)]
        self.console.file = out
        err_console.file = err
        sys.stdout, sys.stderr = _Tee(out, self.log), _Tee(err, self.log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err
            for c, f in pinned:
                c._file = f

    def to_log(self, text: str) -> None:
        if self.log:
            self.log.write(text)

    def info(self, text: str) -> None:
        self.console.print(text)
        self.to_log(_plain(text))

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]warning:[/] {text}")
        self.to_log(f"warning: {text}")

    # ------------------------------------------------------------ training
    def start_training(self, *, initial_epoch: int, epochs: int, steps: int | None) -> None:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=30),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                # Metrics take what width is left and are cut, never the bars.
                TextColumn(
                    "{task.fields[metrics]}",
                    table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
                ),
                console=self.console,
                transient=False,
                refresh_per_second=5,
            )
            self._progress.start()
            self._epoch_task = self._progress.add_task(
                "epochs", total=epochs, completed=initial_epoch, metrics=""
            )
            self._batch_task = self._progress.add_task("epoch", total=steps, metrics="")

    def begin_epoch(self, epoch: int, epochs: int, steps: int | None, start_step: int = 0) -> None:
        self._epoch_started = time.perf_counter()
        if self._progress is not None:
            self._progress.reset(
                self._batch_task,
                total=steps,
                completed=start_step,
                description=f"epoch {epoch + 1}/{epochs}",
                metrics="",
            )

    def batch(self, step: int, logs: Mapping[str, Any]) -> None:
        if self._progress is not None:
            self._progress.update(
                self._batch_task, completed=step, metrics=self._fit(fmt_metrics(logs))
            )

    def end_epoch(self, epoch: int, epochs: int, logs: Mapping[str, Any]) -> None:
        seconds = time.perf_counter() - self._epoch_started
        line = f"epoch {epoch + 1}/{epochs}  {seconds:.1f}s  {fmt_metrics(logs)}"
        if "learning_rate" in logs:
            line += f"  lr {fmt_value(logs['learning_rate'])}"
        if self._progress is not None:
            self._progress.update(
                self._epoch_task, completed=epoch + 1, metrics=self._fit(fmt_metrics(logs))
            )
            self._progress.console.print(line)
        else:
            self.console.print(line)
        self.to_log(line)

    def _fit(self, text: str) -> str:
        """Cut metrics to the width the bars leave, so the bars never collapse."""
        room = max(12, self.console.width - 78)
        return text if len(text) <= room else text[: room - 1] + "…"

    def stop_training(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------ summary
    def summary(self, title: str, rows: list[tuple[str, str]]) -> None:
        table = Table(
            title=title, show_header=False, title_justify="left", box=None, padding=(0, 2)
        )
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows:
            table.add_row(key, value)
        self.console.print(table)
        self.to_log("\n".join([_plain(title), *(f"  {k}: {v}" for k, v in rows)]))


class _Tee(io.TextIOBase):
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


def _plain(text: str) -> str:
    from rich.text import Text

    return Text.from_markup(text).plain
