"""trainrun/console.py: the ETA, fitting metrics to the progress bars, whole lines when piped.

Pure functions and Rich rendering to a string; no TensorFlow.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from rich.console import Console

from trainrun.console import (
    PIPE_WIDTH,
    Eta,
    Reporter,
    fit_metrics,
    fmt_eta,
    metric_items,
    wrap_parts,
)

LOGS = {
    "loss": 0.23631,
    "sparse_categorical_accuracy": 0.9235,
    "val_loss": 0.2696,
    "val_sparse_categorical_accuracy": 0.94101,
    "learning_rate": 0.001,
}
NAMES = [k for k in LOGS if k != "learning_rate"]

# ---------------------------------------------------------------- ETA


def test_no_eta_before_any_progress_is_measured():
    eta = Eta(422)
    assert eta.remaining(0.0) is None  # 0/422, nothing seen
    eta.observe(10.0, 0)
    assert eta.remaining(10.0) is None  # only the baseline
    eta.observe(10.1, 3)
    assert eta.remaining(10.1) is None  # one chunk in 0.1 s is no rate yet
    assert fmt_eta(eta.remaining(10.1)) == "-:--:--"


def test_eta_comes_from_the_step_rate_after_the_baseline():
    # The first execution took 10 s (tracing, compiling): it must not count as 3 steps' time.
    eta = Eta(422)
    eta.observe(10.0, 3)
    eta.observe(11.0, 6)
    eta.observe(12.0, 9)
    assert eta.rate() == pytest.approx(3.0)
    assert eta.remaining(12.0) == pytest.approx((422 - 9) / 3.0)
    assert eta.remaining(13.0) == pytest.approx((422 - 9) / 3.0 - 1.0)  # counts down between


def test_eta_near_the_end_is_never_shown_as_done_early():
    eta = Eta(30)
    eta.observe(0.0, 0)
    eta.observe(1.0, 10)
    eta.observe(2.0, 20)  # 10 steps/s: 1 s left
    assert fmt_eta(eta.remaining(2.0)) == "0:00:01"
    eta2 = Eta(30)
    eta2.observe(0.0, 0)
    eta2.observe(3.0, 10)
    eta2.observe(6.0, 20)  # 3.33 steps/s: 3 s left, not 1
    assert fmt_eta(eta2.remaining(6.0)) == "0:00:03"
    assert eta2.remaining(100.0) >= 1.0  # overdue but not done: not "0:00:00"
    eta2.observe(9.0, 30)
    assert eta2.remaining(9.0) == 0.0


def test_eta_follows_a_rate_change_and_restarts_when_progress_goes_back():
    eta = Eta(1000, window=10.0)
    for t in range(21):
        eta.observe(float(t), t * 10)  # 10 steps/s for 20 s
    for t in range(21, 41):
        eta.observe(float(t), 200 + (t - 20))  # then 1 step/s
    assert eta.rate() == pytest.approx(1.0, rel=0.15)
    eta.observe(41.0, 0)  # a new epoch's count
    assert eta.remaining(41.0) is None


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-:--:--"), (0.0, "0:00:00"), (0.2, "0:00:01"), (59.5, "0:01:00"), (3661, "1:01:01")],
)
def test_fmt_eta(seconds, shown):
    assert fmt_eta(seconds) == shown


# ---------------------------------------------------------------- metrics in the bars


def _names_whole(text: str) -> None:
    for token in text.split():
        if token[0].isalpha() and token not in ("more",):
            assert token in NAMES, f"{token!r} is not a whole metric name in {text!r}"


@pytest.mark.parametrize("room", [0, 5, 11, 12, 20, 27, 30, 45, 60, 80, 200])
def test_fit_metrics_keeps_whole_metrics_within_the_room(room):
    items = metric_items(LOGS)
    text = fit_metrics(items, room)
    assert len(text) <= room
    assert "…" not in text
    _names_whole(text)
    shown = [part for part in text.split("  ") if part and not part.startswith("+")]
    assert all(part in items for part in shown), (shown, items)  # name and value together


def test_fit_metrics_prefers_the_losses_and_counts_what_it_leaves_out():
    items = metric_items(LOGS)
    assert fit_metrics(items, 40) == "loss 0.2363  val_loss 0.2696  +2 more"
    everything = "  ".join(items)
    assert fit_metrics(items, len(everything)) == everything
    assert fit_metrics(items, 4) == ""


def test_wrap_parts_breaks_only_between_parts():
    parts = ["epoch 1/2", "1.9s", *metric_items(LOGS), "lr 0.0010"]
    for width in (20, 40, 80):
        lines = wrap_parts(parts, width, indent=4)
        # A line is within the width, or holds one part that is longer on its own.
        assert all(len(line) <= width or "  " not in line.strip() for line in lines), lines
        assert [p for line in lines for p in line.strip().split("  ")] == parts
    assert wrap_parts(["x" * 50, "y"], 20) == ["x" * 50, "  y"]  # a long part is not cut


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_progress_bars_show_whole_metrics_at_any_width(width):
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None)
    reporter = Reporter(out=console)
    reporter.start_training(initial_epoch=0, epochs=10, steps=422)
    reporter.begin_epoch(0, 10, 422)
    reporter.batch(40, LOGS)
    reporter.end_epoch(0, 10, LOGS)
    progress = reporter._progress
    table = progress.make_tasks_table(progress.tasks)
    reporter.stop_training()
    screen = Console(file=io.StringIO(), width=width, color_system=None)
    screen.print(table)
    bars = screen.file.getvalue().splitlines()
    assert len(bars) == 2, bars  # one line a bar: nothing wrapped
    for line in bars:
        assert len(line) <= width and "…" not in line, line
        _names_whole(line.split(" eta ")[1])
    if width >= 80:
        assert "loss 0.2363" in bars[1]
    # The end-of-epoch line above the bars wraps between metrics only.
    printed = console.file.getvalue()
    for name in NAMES:
        assert f"{name} " in printed


def test_end_of_epoch_line_is_whole_when_piped_and_in_the_log(tmp_path):
    console = Console(file=io.StringIO(), width=PIPE_WIDTH, soft_wrap=True, color_system=None)
    reporter = Reporter(out=console)
    reporter.attach_log(tmp_path / "train.log")
    reporter.start_training(initial_epoch=0, epochs=2, steps=25)
    reporter.begin_epoch(0, 2, 25)
    reporter.end_epoch(0, 2, LOGS)
    reporter.summary("run completed", [("last epoch", "  ".join(metric_items(LOGS)))])
    reporter.detach_log()
    for text in (console.file.getvalue(), (tmp_path / "train.log").read_text()):
        epoch_lines = [line for line in text.splitlines() if "epoch 1/2" in line]
        assert len(epoch_lines) == 1
        assert all(item in epoch_lines[0] for item in metric_items(LOGS)), epoch_lines
        assert "lr 0.0010" in epoch_lines[0]
        summary = [line for line in text.splitlines() if "last epoch" in line]
        assert all(item in summary[0] for item in metric_items(LOGS)), summary


def test_summary_on_a_narrow_terminal_wraps_between_metrics():
    console = Console(file=io.StringIO(), width=60, force_terminal=True, color_system=None)
    Reporter(out=console).summary("", [("last epoch", "  ".join(metric_items(LOGS)))])
    lines = console.file.getvalue().splitlines()
    assert len(lines) > 1 and all(len(line) <= 60 for line in lines), lines
    joined = " ".join(line.strip() for line in lines)
    for item in metric_items(LOGS):
        assert item in joined, item


# ---------------------------------------------------------------- the consoles


def _console_width(env: dict[str, str]) -> int:
    code = (
        "from trainrun.console import console, err_console; print(console.width, err_console.width)"
    )
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TTY_COMPATIBLE")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return out.stdout.split()


def test_piped_output_has_no_width_limit():
    assert _console_width({}) == [str(PIPE_WIDTH)] * 2
    assert _console_width({"COLUMNS": "80"}) == [str(PIPE_WIDTH)] * 2  # still not a terminal


def test_a_terminal_keeps_its_width():
    assert _console_width({"TTY_COMPATIBLE": "1", "COLUMNS": "80"}) == ["80", "80"]


@pytest.mark.slow
def test_fit_piped_prints_whole_lines(tmp_path):
    from conftest import CONFIGS, SMALL, cli, only_run

    r = cli("fit", CONFIGS / "mnist_mlp.yaml", *SMALL, "--runs-dir", tmp_path, env={"COLUMNS": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    log = (only_run(tmp_path) / "train.log").read_text()
    names = ["loss", "sparse_categorical_accuracy", "val_loss", "val_sparse_categorical_accuracy"]
    for text in (r.stdout, log):
        epochs = [line for line in text.splitlines() if "epoch 1/2" in line or "epoch 2/2" in line]
        assert len(epochs) == 2, text
        for line in epochs:
            assert all(re.search(rf"\b{n} \d", line) for n in names), line  # value beside name
        last = next(line for line in text.splitlines() if re.search(r"\blast epoch:? ", line))
        assert all(re.search(rf"\b{n} \d", last) for n in names), last
        train_on = next(line for line in text.splitlines() if "train on" in line)
        assert train_on.rstrip().endswith("--epochs 12"), train_on
