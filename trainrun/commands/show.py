"""`trainrun show`: one run at a glance, from its files. No TensorFlow.

Reads run.json, config.yaml and history.csv; prints a config summary, the
per-epoch history with the best epoch marked, and each curve as a sparkline;
writes the same curves as curves.png in the run directory (matplotlib, Agg,
imported only here).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from trainrun.errors import RunDirError, RunError
from trainrun.fmt import fmt_value
from trainrun.registry import split_component
from trainrun.runs.evals import UnreadableEval, read_evaluations
from trainrun.runs.exports import describe_export, read_exports
from trainrun.runs.files import write_atomic
from trainrun.runs.history import read_history
from trainrun.runs.listing import effective_status, fmt_best, fmt_duration, fmt_epochs
from trainrun.runs.record import Best, RunRecord
from trainrun.runs.rundir import RunDir

SPARKS = "▁▂▃▄▅▆▇█"
NUMBER_COLUMNS = ("first", "last", "min", "max")
MAX_ROWS = 40  # longer histories show their first and last epochs and the best one


# ---------------------------------------------------------------- reading


def series_of(columns: list[str], rows: list[dict[str, float]]) -> list[tuple[str, str | None]]:
    """(train metric, its val_ twin or None) for each metric; val-only metrics too."""
    names = [c for c in columns if c not in ("epoch", "learning_rate", "lr")]
    names.sort(key=lambda c: c.removeprefix("val_") != "loss")  # loss first
    pairs: list[tuple[str, str | None]] = []
    for name in names:
        if name.startswith("val_"):
            if name.removeprefix("val_") not in names:
                pairs.append((name, None))
            continue
        pairs.append((name, f"val_{name}" if f"val_{name}" in names else None))
    return pairs


def lr_changed(rows: list[dict[str, float]]) -> bool:
    values = {r["learning_rate"] for r in rows if "learning_rate" in r}
    return len(values) > 1


def _values(rows: list[dict[str, float]], key: str) -> list[float]:
    return [r[key] for r in rows if key in r]


def sparkline(values: list[float], width: int = 40) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    if len(values) > width:  # resample to the width, keeping the last point
        step = (len(values) - 1) / (width - 1)
        values = [values[round(i * step)] for i in range(width)]
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("×")
        elif span == 0:
            out.append(SPARKS[len(SPARKS) // 2])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * len(SPARKS)))])
    return "".join(out)


# ---------------------------------------------------------------- curves.png


def write_curves_png(run: RunDir, columns: list[str], rows: list[dict[str, float]]) -> Path:
    """Loss and each metric (train vs validation), and the learning rate if it changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    pairs = series_of(columns, rows)
    panels: list[tuple[str, list[str]]] = [(a, [k for k in (a, b) if k]) for a, b in pairs]
    if lr_changed(rows):
        panels.append(("learning_rate", ["learning_rate"]))
    cols = min(3, len(panels)) or 1
    nrows = math.ceil(len(panels) / cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.4 * nrows), squeeze=False)
    epochs = [int(r["epoch"]) + 1 for r in rows]
    for ax, (title, keys) in zip(axes.flat, panels, strict=False):
        for key in keys:
            xs = [e for e, r in zip(epochs, rows, strict=True) if key in r]
            label = "validation" if key.startswith("val_") else "train"
            ax.plot(xs, _values(rows, key), marker="o", markersize=3, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title == "learning_rate":
            ax.set_yscale("log")
        elif len(keys) > 1:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(run.id, fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    target = run.path / "curves.png"
    write_atomic(target, buf.getvalue())
    return target


# ---------------------------------------------------------------- printing


def _component(item: Any) -> str:
    name, args = split_component(item)
    if not args:
        return name
    return f"{name}(" + ", ".join(f"{k}={v}" for k, v in args.items()) + ")"


def _mapping(value: Any) -> dict[str, Any]:
    """A config section as a dict; an odd one (hand-edited) shows as empty, not a crash."""
    return value if isinstance(value, dict) else {}


def _config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    data, model = _mapping(config.get("data")), _mapping(config.get("model"))
    comp, fit = _mapping(config.get("compile")), _mapping(config.get("fit"))
    rows = [("name", str(config.get("name", "-"))), ("seed", str(config.get("seed", "-")))]
    source = str(data.get("source", "-"))
    extra = [
        f"{k}={data[k]}" for k in ("flatten", "reshape", "scale", "validation_split") if data.get(k)
    ]
    limit = {k: v for k, v in _mapping(data.get("limit")).items() if v is not None}
    if limit:
        extra.append("limit " + ", ".join(f"{k}={v}" for k, v in limit.items()))
    rows.append(("data", " ".join([source, *extra])))
    if model.get("layers"):
        rows.append(("model", " -> ".join(_component(layer) for layer in model["layers"])))
    elif model.get("graph"):
        outs = model.get("outputs")
        rows.append(
            (
                "model",
                f"functional: inputs {', '.join(model.get('inputs') or {})}; "
                f"{len(model['graph'])} nodes; outputs {outs}",
            )
        )
    elif model.get("builder"):
        rows.append(("model", f"builder {model['builder'].get('factory')}"))
    elif model.get("path"):
        rows.append(("model", f"from {model['path']}"))
    if comp:
        rows.append(("optimizer", _component(comp.get("optimizer", "-"))))
        rows.append(("loss", str(comp.get("loss"))))
        if comp.get("metrics"):
            rows.append(("metrics", str(comp.get("metrics"))))
    if fit:
        rows.append(
            (
                "fit",
                ", ".join(f"{k}={v}" for k, v in fit.items() if v is not None and k != "shuffle"),
            )
        )
    callbacks = config.get("callbacks") or []
    if callbacks:
        rows.append(("callbacks", "; ".join(_component(c) for c in callbacks)))
    return rows


def _section(out: Console, title: str, rows: list[tuple[str, str]]) -> None:
    """A bold title line (never squeezed to the table's width), then key/value rows."""
    out.print(Text(title, style="bold"), soft_wrap=True)
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, Text(value))
    out.print(table)


def _shown_rows(rows: list[dict[str, float]], best_epoch: int | None) -> list[dict | None]:
    if len(rows) <= MAX_ROWS:
        return list(rows)
    keep = set(range(MAX_ROWS // 2)) | set(range(len(rows) - MAX_ROWS // 2, len(rows)))
    keep |= {i for i, r in enumerate(rows) if int(r["epoch"]) + 1 == best_epoch}
    out: list[dict | None] = []
    for i, row in enumerate(rows):
        if i in keep:
            out.append(row)
        elif out and out[-1] is not None:
            out.append(None)  # a gap
    return out


def show_run(run: RunDir, out: Console) -> None:
    """Print the run's summary and history; write curves.png."""
    record = run.read_record()
    try:
        config = yaml.safe_load(run.config_file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(f"{run.config_file} is unreadable: {exc}") from None
    if not isinstance(config, dict):
        raise RunDirError(f"{run.config_file} is not a trainrun config (not a mapping)")
    status, note = effective_status(run, record)
    best = record.best
    best_epoch = best.epoch if best else None
    summary = [
        ("status", status + (f" ({note})" if note else "")),
        ("epochs", fmt_epochs(record)),
        ("best", _best_text(best)),
        *_final_weights(record),
        ("train time", fmt_duration(record.train_seconds)),
        ("created", record.created or "-"),
        ("finished", record.finished or "-"),
    ]
    if record.error:
        summary.append(("error", record.error))
    if record.resumes:
        summary.append(("resumes", str(len(record.resumes))))
    _section(out, f"run {run.id}  ({run.path})", summary)
    _section(out, "config", _config_rows(config))
    if record.provenance:
        from trainrun.commands.provenance import summary_rows

        _section(out, "provenance", summary_rows(record.provenance))
    evaluation = _last_evaluation(run)
    if evaluation:
        _section(out, *evaluation)
    exports = [describe_export(e) for e in read_exports(run)]
    if exports:
        _section(out, "exports (trainrun export)", exports)

    columns, rows, problems = read_history(run.history_csv)
    for problem in problems:
        out.print(Text(f"note: {problem}"), soft_wrap=True)
    if not rows:
        out.print("no epochs recorded yet (history.csv is missing or empty)")
        return
    _print_history(out, columns, rows, best_epoch)
    out.print(_curves_table(columns, rows, out.width))
    try:
        png = write_curves_png(run, columns, rows)
    except OSError as exc:  # a read-only or full disk: everything above is still shown
        raise RunError(
            f"{run.path / 'curves.png'} could not be written: {exc.strerror or exc}"
        ) from None
    out.print(f"curves written to {png}", markup=False, soft_wrap=True)


def _best_text(best: Best | None) -> str:
    """'val_AUC 0.9100 @ 4 (max)': run.json's best as training picked it, with the
    direction it followed (older run.json files have none: shown without)."""
    mode = best.mode if best else None
    return fmt_best(best) + (f" ({mode})" if mode else "")


def _final_weights(record: RunRecord) -> list[tuple[str, str]]:
    """The epoch whose weights model.keras holds, when run.json says (it says since
    trainrun recorded it; older runs show no such line)."""
    epoch = record.final_weights_epoch
    if epoch is None:
        return []
    source = record.final_weights_source
    why = f" ({source})" if source else ""
    return [("final model", f"weights of epoch {epoch}{why}")]


def _last_evaluation(run: RunDir) -> tuple[str, list[tuple[str, str]]] | None:
    """The latest `trainrun evaluate` result, if eval.json is there and readable."""
    try:
        evaluations = read_evaluations(run.path)
        if not evaluations:
            return None
        result = evaluations[0]
        metrics = dict(result["metrics"])
        title = (
            f"evaluation ({result.get('checkpoint', '?')} on {result.get('split', '?')}, "
            f"{result.get('evaluated', '?')})"
        )
    except (UnreadableEval, ValueError, KeyError, TypeError) as exc:
        return "evaluation", [("eval.json", f"unreadable: {exc}")]
    return title, [(k, fmt_value(v)) for k, v in metrics.items()]


def _print_history(
    out: Console, columns: list[str], rows: list[dict[str, float]], best_epoch: int | None
) -> None:
    """The per-epoch table, split into several (each with the epoch) if it is too wide.

    Numbers are never wrapped: a terminal too narrow for all the metrics gets
    them in groups. Piped, the console has no width limit and one table holds all.
    """
    shown = [c for c in columns if c != "epoch" and (c != "learning_rate" or lr_changed(rows))]
    shown = [c for c in shown if _values(rows, c)]
    rates = _values(rows, "learning_rate")
    title_lr = (
        f"; learning_rate {fmt_value(rates[0])} throughout"
        if rates and not lr_changed(rows)
        else ""
    )
    out.print(Text(f"history (* best epoch{title_lr})", style="italic"), soft_wrap=True)
    headers = ["epoch", *(c.replace("_", " ") for c in shown)]
    table_rows = _history_cells(shown, rows, best_epoch)
    needs = _column_needs(headers, table_rows)
    for group in _column_groups(needs, out.width):
        natural = 1 + sum(max(len(headers[i]), needs[i]) + 3 for i in group)
        table = Table(header_style="bold")
        for i in group:
            # Too wide as is: fix each column at its need, so Rich wraps headers
            # between words instead of squeezing the numbers.
            fixed = needs[i] if natural > out.width else None
            table.add_column(headers[i], justify="right", no_wrap=i == 0, width=fixed)
        for cells, style in table_rows:
            table.add_row(*(cells[i] for i in group), style=style)
        out.print(table)


def _history_cells(
    shown: list[str], rows: list[dict[str, float]], best_epoch: int | None
) -> list[tuple[list[str], str | None]]:
    out: list[tuple[list[str], str | None]] = []
    for row in _shown_rows(rows, best_epoch):
        if row is None:
            out.append((["…" for _ in range(len(shown) + 1)], None))  # a gap
            continue
        epoch = int(row["epoch"]) + 1
        mark = " *" if epoch == best_epoch else ""
        cells = [f"{epoch}{mark}", *(fmt_value(row[c]) if c in row else "-" for c in shown)]
        out.append((cells, "bold" if mark else None))
    return out


def _column_needs(headers: list[str], rows: list[tuple[list[str], str | None]]) -> list[int]:
    """Each column's narrowest width: its widest value or the longest word of its header."""
    return [
        max([len(word) for word in header.split()] + [len(cells[i]) for cells, _ in rows])
        for i, header in enumerate(headers)
    ]


def _column_groups(needs: list[int], width: int) -> list[list[int]]:
    """Column indexes for each table: the epoch (0) first in each, then as many metrics
    as fit the width (a boxed table adds 3 a column and 1)."""
    groups: list[list[int]] = []
    for i in range(1, len(needs)):
        if groups and 1 + sum(needs[j] + 3 for j in [*groups[-1], i]) <= width:
            groups[-1].append(i)
        else:
            groups.append([0, i])
    return groups or [[0]]


def _curves_layout(
    need: Callable[[str], int], full: int, width: int
) -> tuple[tuple[str, ...], int]:
    """(number columns, sparkline width) that fit: a sparkline at least 10 wide (or
    one point an epoch) with as many numbers as fit, else the numbers alone."""
    choices = [NUMBER_COLUMNS, ("last", "min", "max"), ("last", "min"), ("last",), ()]
    for with_curve in (True, False):
        for kept in choices:
            used = need("series") + sum(need(name) for name in kept)
            room = width - used - 4
            if used <= width and (not with_curve or room >= min(full, 10)):
                return kept, min(full, room) if with_curve else 0
    return (), 0


def _curves_table(columns: list[str], rows: list[dict[str, float]], width: int) -> Table:
    keys = [k for pair in series_of(columns, rows) for k in pair if k]
    if lr_changed(rows):
        keys.append("learning_rate")
    lines = []
    for key in keys:
        values = _values(rows, key)
        if not values:
            continue  # a column with no number in it
        finite = [v for v in values if math.isfinite(v)] or [math.nan]
        numbers = [fmt_value(x) for x in (values[0], values[-1], min(finite), max(finite))]
        lines.append((key, values, numbers))

    # Series names and numbers stay whole: on a narrow terminal the number
    # columns go (first, then max, then min), and the sparkline takes the width
    # left (box-less columns are padded by 2 on each side), or goes if none is.
    def need(name: str) -> int:
        i = NUMBER_COLUMNS.index(name) if name in NUMBER_COLUMNS else -1
        cells = [line[0] if i < 0 else line[2][i] for line in lines]
        return max([len(name), *map(len, cells)]) + 4

    kept, curve = _curves_layout(need, min(40, len(rows)), width)
    table = Table(title="curves", title_justify="left", box=None, padding=(0, 2))
    table.add_column("series", no_wrap=True)
    if curve:
        table.add_column("curve", no_wrap=True, min_width=curve)
    for name in kept:
        table.add_column(name, no_wrap=True, justify="right")
    for key, values, numbers in lines:
        spark = [sparkline(values, curve)] if curve else []
        table.add_row(key, *spark, *(numbers[NUMBER_COLUMNS.index(n)] for n in kept))
    return table
