"""The one Rich console: messages, the training progress display, tables.

The engine reports through a `Reporter`; it never prints itself. Everything a
run shows is also appended to its train.log (without colour, by
`trainrun.trainlog`), so the log holds what the run printed.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column
from rich.text import Text

from trainrun.engine.events import RunEnd, RunStart
from trainrun.fmt import fmt_value, metric_items
from trainrun.runs.record import Status
from trainrun.trainlog import RunLog, Tee

# Output that is not a terminal (a pipe, a file, CI's log) has no width: Rich's
# default of 80 columns would break table cells and messages mid-line, and a
# line of a log must be whole to be grepped. Tables still take only the width
# their contents need.
PIPE_WIDTH = 100_000


def make_console(*, stderr: bool = False) -> Console:
    """A Console for stdout or stderr: the terminal's width, or unbounded lines when piped."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, width=PIPE_WIDTH, soft_wrap=True)


console = make_console()
err_console = make_console(stderr=True)


def _priority(item: str) -> int:
    name = item.split(" ", 1)[0]
    return {"loss": 0, "val_loss": 1}.get(name, 2 if name.startswith("val_") else 3)


def fit_metrics(items: list[str], room: int) -> str:
    """As many whole `name value` items as fit in `room` characters, never a cut one.

    The losses are kept first, then validation metrics, then the rest; what is
    left out is counted (`+2 more`) so the reader knows the bar does not show it.
    Items keep their order.
    """
    order = sorted(range(len(items)), key=lambda i: _priority(items[i]))
    kept: set[int] = set()
    for i in order:
        trial = kept | {i}
        dropped = len(items) - len(trial)
        if len(_joined(items, trial, dropped)) <= room:
            kept = trial
    text = _joined(items, kept, len(items) - len(kept))
    return text if len(text) <= room else ""


def _joined(items: list[str], kept: set[int], dropped: int) -> str:
    parts = [items[i] for i in sorted(kept)]
    if dropped:
        parts.append(f"+{dropped} more")
    return "  ".join(parts)


def wrap_parts(parts: list[str], width: int, indent: int = 2) -> list[str]:
    """Join `parts` with two spaces into lines of at most `width`, breaking only between parts.

    A part is never split: one longer than a line gets a line of its own (the
    terminal folds it, but a copy of it is whole). Lines after the first are
    indented by `indent` spaces.
    """
    lines: list[str] = []
    line = ""
    for part in parts:
        if not line:
            line = (" " * indent if lines else "") + part
        elif len(line) + 2 + len(part) <= width:
            line += "  " + part
        else:
            lines.append(line)
            line = " " * indent + part
    if line or not lines:
        lines.append(line)
    return lines


# ---------------------------------------------------------------- ETA


class Eta:
    """Time left for `total` units of work (steps, or epochs with fractions), from the
    rate measured so far, or None while it cannot be estimated yet.

    The first observation is only the baseline: the time before it (tracing and
    compiling the first execution, a resume's restore) says nothing about the rate.
    An estimate needs progress seen over at least `min_seconds` after it. The rate
    is measured over about the last `window` seconds, so it follows a run that
    speeds up or slows down.
    """

    def __init__(
        self, total: float | None, *, min_seconds: float = 0.5, window: float = 30.0
    ) -> None:
        self.total = total
        self.min_seconds = min_seconds
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def observe(self, now: float, done: float) -> None:
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # progress went back (a new epoch's count): start over
        self._samples.append((now, done))
        # Keep one sample at least `window` old, so the rate always spans the window.
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rate(self) -> float | None:
        """Units per second over the measured span, or None before it is long enough."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        if t1 - t0 < self.min_seconds or d1 <= d0:
            return None
        return (d1 - d0) / (t1 - t0)

    def remaining(self, now: float) -> float | None:
        """Seconds left at `now`: the projection from the last observation, counting down."""
        if self.total is None or not self._samples:
            return None
        t1, done = self._samples[-1]
        if done >= self.total:
            return 0.0
        rate = self.rate()
        if rate is None:
            return None
        # Not done is never "0 s left": past the projection, hold at one second
        # until the next observation measures the rate again.
        return max((self.total - done) / rate - (now - t1), 1.0)


def fmt_eta(seconds: float | None) -> str:
    """H:MM:SS, rounded up (a run with 0.2 s left is not done); -:--:-- when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-:--:--"
    minutes, secs = divmod(math.ceil(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class EtaColumn(ProgressColumn):
    """The task's `eta` field (an Eta) as H:MM:SS, recomputed at each redraw."""

    def render(self, task: Task) -> Text:
        eta = task.fields.get("eta")
        left = eta.remaining(time.perf_counter()) if isinstance(eta, Eta) else None
        return Text(fmt_eta(left), style="progress.remaining")


class Reporter:
    """What a run shows the user: a live progress display on a terminal, plain lines otherwise."""

    def __init__(self, out: Console | None = None) -> None:
        self.console = out or console
        self.log: RunLog | None = None
        self._progress: Progress | None = None
        self._epoch_task: Any = None
        self._batch_task: Any = None
        self._epoch_started = 0.0
        self._epoch = 0
        self._steps: int | None = None
        self._epochs_eta = Eta(None)
        self._steps_eta = Eta(None)
        self._layout = BarLayout(console.width, epochs=1, steps=None)

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
        sys.stdout, sys.stderr = Tee(out, self.log), Tee(err, self.log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err
            for c, f in pinned:
                c._file = f

    @property
    def log_path(self) -> Path | None:
        return self.log.path if self.log is not None else None

    def drop_log(self) -> None:
        """Stop writing train.log (its disk is full): what it buffered cannot be written."""
        with contextlib.suppress(Exception):
            self.detach_log()
        self.log = None

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
        self._epochs_eta = Eta(epochs)
        self._steps = steps
        if self.console.is_terminal:
            self._layout = BarLayout(self.console.width, epochs=epochs, steps=steps)
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=self._layout.bar_width),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                EtaColumn(),
                # fit_metrics keeps this within the width the bars leave; a
                # miscount there would show as an ellipsis, never as a wrapped bar.
                TextColumn(
                    "{task.fields[metrics]}",
                    table_column=Column(no_wrap=True, overflow="ellipsis"),
                ),
                console=self.console,
                transient=False,
                refresh_per_second=5,
            )
            self._progress.start()
            self._epoch_task = self._progress.add_task(
                "epochs", total=epochs, completed=initial_epoch, metrics="", eta=self._epochs_eta
            )
            self._batch_task = self._progress.add_task("epoch", total=steps, metrics="", eta=None)

    def begin_epoch(self, epoch: int, epochs: int, steps: int | None, start_step: int = 0) -> None:
        self._epoch_started = time.perf_counter()
        self._epoch = epoch
        self._steps = steps
        self._steps_eta = Eta(steps)
        if self._progress is not None:
            self._progress.reset(
                self._batch_task,
                total=steps,
                completed=start_step,
                description=f"epoch {epoch + 1}/{epochs}",
                metrics="",
                eta=self._steps_eta,
            )

    def batch(self, step: int, logs: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        self._steps_eta.observe(now, step)
        if self._steps:
            self._epochs_eta.observe(now, self._epoch + min(step / self._steps, 1.0))
        if self._progress is not None:
            self._progress.update(
                self._batch_task, completed=step, metrics=self._fit(metric_items(logs))
            )

    def end_epoch(self, epoch: int, epochs: int, logs: Mapping[str, Any]) -> None:
        now = time.perf_counter()
        self._epochs_eta.observe(now, epoch + 1)
        seconds = now - self._epoch_started
        parts = [f"epoch {epoch + 1}/{epochs}", f"{seconds:.1f}s", *metric_items(logs)]
        if "learning_rate" in logs:
            parts.append(f"lr {fmt_value(logs['learning_rate'])}")
        out = self._progress.console if self._progress is not None else self.console
        if self._progress is not None:
            self._progress.update(
                self._epoch_task, completed=epoch + 1, metrics=self._fit(metric_items(logs))
            )
        # On a terminal the line wraps between metrics; piped, it is one line.
        for line in wrap_parts(parts, out.width, indent=4):
            out.print(line, markup=False, soft_wrap=True)
        self.to_log("  ".join(parts))

    def _fit(self, items: list[str]) -> str:
        """Whole metrics in the width the bars leave, so the bars never collapse."""
        return fit_metrics(items, self._layout.metrics_room)

    def stop_training(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    # ------------------------------------------------------------ a run's start and end
    def run_started(self, start: RunStart) -> None:
        d = start.devices
        self.info(f"[bold]{start.verb}[/] {start.label}  ->  {start.path}")
        task = d.get("task")
        cluster = (
            f", {task['type']} {task['index']} of {d['workers']} workers"
            + (" (chief)" if task["chief"] else "")
            if task
            else ""
        )
        self.info(
            f"device {', '.join(d['used'])} ({d['strategy']}, {d['replicas']} replica(s)"
            f"{cluster}, {d['precision']}); {start.steps_per_epoch or '?'} steps/epoch, "
            f"{start.steps_per_execution} per execution, jit_compile={start.jit_compile}"
        )

    def run_finished(self, end: RunEnd) -> None:
        title = {
            Status.COMPLETED: "[green]run completed[/]",
            Status.STOPPED_EARLY: "[green]run stopped early[/]",
            Status.INTERRUPTED: "[yellow]run interrupted; state saved[/]",
            Status.FAILED: "[red]run failed[/]",
        }[end.status]
        if end.error:
            self.info(f"[red]error:[/] {end.error}")
        self.summary(title, summary_rows(end))

    # ------------------------------------------------------------ summary
    def summary(self, title: str, rows: list[tuple[str, str]]) -> None:
        """A title and `key  value` lines; a value wraps only between its metrics."""
        if title:
            self.console.print(title, soft_wrap=True)
        key_width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            lines = wrap_parts(value.split("  "), self.console.width - key_width - 4, indent=0)
            for i, line in enumerate(lines):
                label = Text(key.ljust(key_width) if i == 0 else " " * key_width, style="bold")
                self.console.print(Text.assemble("  ", label, "  ", line), soft_wrap=True)
        self.to_log("\n".join([_plain(title), *(f"  {k}: {v}" for k, v in rows)]))


class BarLayout:
    """Widths of the two progress bars' columns at a terminal width.

    The bars, counts and times have fixed widths; the metrics get what is left
    (`metrics_room`), so fit_metrics can keep whole metrics in it. The bar
    shrinks on a narrow terminal so the losses still fit.
    """

    GAPS = 6  # one space between each of the seven columns
    TIMES = 8 + 3 + 8  # elapsed, "eta", remaining (H:MM:SS, up to 99 hours)

    def __init__(self, width: int, *, epochs: int, steps: int | None) -> None:
        description = max(len("epochs"), len(f"epoch {epochs}/{epochs}"))
        counts = max(len(f"{epochs}/{epochs}"), len(f"{steps}/{steps}") if steps else 9)
        fixed = description + counts + self.TIMES + self.GAPS
        self.bar_width = 30 if width - fixed >= 30 + 60 else 20 if width - fixed >= 20 + 40 else 10
        self.metrics_room = max(0, width - fixed - self.bar_width - 1)


def _plain(text: str) -> str:
    return Text.from_markup(text).plain


def summary_rows(end: RunEnd) -> list[tuple[str, str]]:
    """The `key  value` lines of a run's summary."""
    rows = [("status", end.status), ("epochs", f"{end.epochs_done}/{end.epochs}")]
    if end.best:
        best = end.best
        rows.append(
            ("best", f"{best['monitor']} {fmt_value(best['value'])} at epoch {best['epoch']}")
        )
    if end.final:
        rows.append(("final model", f"weights of epoch {end.final[0]} ({end.final[1]})"))
    if end.last:
        last = "  ".join(f"{k} {fmt_value(v)}" for k, v in end.last.items() if k != "epoch")
        rows.append(("last epoch", last))
    rows.append(("time", f"{end.seconds:.1f}s"))
    rows.append(("run", str(end.path)))
    if end.resumable:
        if end.status in (Status.INTERRUPTED, Status.FAILED):
            rows.append(("resume", f"trainrun resume {end.path}"))
        else:
            rows.append(("train on", f"trainrun resume {end.path} --epochs {end.epochs + 10}"))
    if end.status.finished:
        rows.append(("evaluate", f"trainrun evaluate {end.path}"))
    return rows
