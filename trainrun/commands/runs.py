"""`trainrun runs`: the runs of a runs directory as one table. No TensorFlow.

Run ids are what a user copies into `show`, `resume` and `evaluate`, so they are
never wrapped or cut: on a narrow terminal the other columns are shortened, then
dropped, until the table fits; piped, the table takes the width it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from trainrun.runs.listing import RunRow, list_runs
from trainrun.runs.record import Status

STYLES = {
    Status.COMPLETED: "green",
    Status.STOPPED_EARLY: "green",
    Status.RUNNING: "cyan",
    Status.INTERRUPTED: "yellow",
    Status.KILLED: "red",
    Status.FAILED: "red",
    Status.BROKEN: "red",
    Status.NOT_A_RUN: "dim",
}

Cell = Callable[[RunRow], str]


def _status(row: RunRow) -> Text:
    return Text(row.status + (" *" if row.note else ""), style=STYLES.get(row.status, ""))


def _best_value(row: RunRow) -> str:
    """'val_loss 0.2500 @ 2' without its monitor name: '0.2500 @ 2'."""
    monitor, _, rest = row.best.partition(" ")
    return rest if rest and monitor != "-" else row.best


def _started_short(row: RunRow) -> str:
    return row.started[5:] if row.started != "-" else "-"  # MM-DD HH:MM


# Each layout is tried in turn, widest first; the first that fits the console is used.
LAYOUTS: list[list[tuple[str, Cell]]] = [
    [
        ("epochs", lambda r: r.epochs),
        ("best (value @ epoch)", lambda r: r.best),
        ("time", lambda r: r.duration),
        ("started", lambda r: r.started),
    ],
    [
        ("epochs", lambda r: r.epochs),
        ("best @ epoch", lambda r: r.best),
        ("time", lambda r: r.duration),
        ("started", _started_short),
    ],
    [
        ("epochs", lambda r: r.epochs),
        ("best @ epoch", lambda r: r.best),
        ("time", lambda r: r.duration),
    ],
    [("epochs", lambda r: r.epochs), ("best @ epoch", _best_value), ("time", lambda r: r.duration)],
    [("epochs", lambda r: r.epochs), ("best @ epoch", _best_value)],
    [("epochs", lambda r: r.epochs)],
    [],
]


def with_exports(layouts: list[list[tuple[str, Cell]]]) -> list[list[tuple[str, Cell]]]:
    """The widest layouts with an exports column (shown when some run has an export)."""
    return [[*columns, ("exports", lambda r: r.exports)] for columns in layouts[:3]] + layouts


def _header(header: str, cell: Cell, rows: list[RunRow]) -> str:
    """'best val_loss @ epoch' when the values leave out a monitor that all runs share."""
    if cell is not _best_value:
        return header
    monitors = {r.best.partition(" ")[0] for r in rows if r.best != "-"}
    return f"best {monitors.pop()} @ epoch" if len(monitors) == 1 else header


def runs_table(rows: list[RunRow], columns: list[tuple[str, Cell]]) -> tuple[Table, int]:
    """The table and the width it needs (Rich's own measure is capped at the console's)."""
    headers = ["id", "status", *(_header(h, cell, rows) for h, cell in columns)]
    cells = [[Text(r.id), _status(r), *(Text(cell(r)) for _, cell in columns)] for r in rows]
    table = Table()
    for header in headers:
        table.add_column(header, no_wrap=True)
    for row_cells in cells:
        table.add_row(*row_cells)
    widths = [
        max(cell_len(header), *(row_cells[i].cell_len for row_cells in cells))
        for i, header in enumerate(headers)
    ]
    return table, 1 + sum(w + 3 for w in widths)  # "│ cell │ cell │"


def show_runs(runs_dir: Path, out: Console) -> None:
    rows = list_runs(runs_dir)
    if not rows:
        out.print(
            f"no runs in {runs_dir}; `trainrun fit CONFIG --runs-dir {runs_dir}` makes one",
            markup=False,
            soft_wrap=True,
        )
        return
    out.print(Text(f"runs in {runs_dir} (newest first)", style="italic"), soft_wrap=True)
    layouts = with_exports(LAYOUTS) if any(r.exports != "-" for r in rows) else LAYOUTS
    for columns in layouts:
        table, width = runs_table(rows, columns)
        if width <= out.width:
            out.print(table)
            break
    else:
        # Not even id and status fit: one plain line a run, the id first and whole.
        for row in rows:
            out.print(Text.assemble(row.id, "  ", _status(row)), soft_wrap=True)
    for row in rows:
        if row.note:
            out.print(Text(f"* {row.id}: {row.note}"), soft_wrap=True)
