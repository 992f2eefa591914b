"""`trainrun runs`: the runs of a runs directory as one table. No TensorFlow."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trainrun.runs.listing import list_runs

STYLES = {
    "completed": "green",
    "stopped_early": "green",
    "running": "cyan",
    "interrupted": "yellow",
    "killed": "red",
    "failed": "red",
    "broken": "red",
    "not a run": "dim",
}


def show_runs(runs_dir: Path, out: Console) -> None:
    rows = list_runs(runs_dir)
    if not rows:
        out.print(f"no runs in {runs_dir}; `trainrun fit CONFIG --runs-dir {runs_dir}` makes one")
        return
    table = Table(title=f"runs in {runs_dir} (newest first)", title_justify="left")
    table.add_column("id", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("epochs", no_wrap=True)
    table.add_column("best (value @ epoch)")
    table.add_column("time", no_wrap=True)
    table.add_column("started")
    for row in rows:
        cells = (row.epochs, row.best, row.duration, row.started)
        status = Text(row.status + (" *" if row.note else ""), style=STYLES.get(row.status, ""))
        table.add_row(Text(row.id), status, *map(Text, cells))
    out.print(table)
    for row in rows:
        if row.note:
            out.print(Text(f"* {row.id}: {row.note}"), soft_wrap=True)
