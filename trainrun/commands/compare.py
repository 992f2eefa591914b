"""`trainrun compare RUN...` and `trainrun runs --sweep ID`: runs side by side.

A table of the config values that differ between the runs (a sweep's
parameters) and the best monitored value, best first, and a plot, compare.png:
the runs' curves overlaid, or for a sweep the metric against each parameter.
Reads run directories (and a sweep's study); never imports TensorFlow.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trainrun.errors import RunDirError, TrainrunError
from trainrun.fmt import fmt_value
from trainrun.runs.files import write_atomic
from trainrun.runs.history import read_history
from trainrun.runs.listing import effective_status
from trainrun.runs.record import Best, finite
from trainrun.runs.rundir import RunDir

SKIPPED_KEYS = ("name", "base_dir")


@dataclass
class Entry:
    """One run (or trial) as a row: its values by dotted path and its best value."""

    label: str
    status: str
    values: dict[str, Any]
    best: float | None = None
    epoch: int | None = None
    run: RunDir | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{'fit': {'batch_size': 32}} -> {'fit.batch_size': 32}; lists by index."""
    out: dict[str, Any] = {}
    if isinstance(node, dict) and node:
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(node, list) and node:
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = node
    return out


def differing(entries: list[Entry]) -> list[str]:
    """The paths whose values are not the same in every entry, in first-seen order."""
    keys: list[str] = []
    for entry in entries:
        keys += [k for k in entry.values if k not in keys]
    missing = object()
    return [
        k
        for k in keys
        if k.split(".")[0] not in SKIPPED_KEYS
        and len({json.dumps(e.values.get(k, missing), default=str) for e in entries}) > 1
    ]


def _order(entries: list[Entry], mode: str) -> list[Entry]:
    """Best first; runs without a value last, in the order given."""
    scored = [e for e in entries if e.best is not None]
    rest = [e for e in entries if e.best is None]
    scored.sort(key=lambda e: -e.best if mode == "max" else e.best)  # type: ignore[operator]
    return scored + rest


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return fmt_value(value)
    return "-" if value is None else str(value)


def print_table(
    out: Console, entries: list[Entry], columns: list[str], metric: str, first: str
) -> None:
    table = Table()
    for header in (first, "status", *columns, f"best {metric}", "epoch"):
        table.add_column(header, no_wrap=True)
    for e in entries:
        table.add_row(
            Text(e.label),
            Text(e.status),
            *(Text(_cell(e.values.get(c))) for c in columns),
            Text(_cell(e.best)),
            Text(_cell(e.epoch)),
        )
    out.print(table)
    for e in entries:
        if e.note:
            out.print(Text(f"* {e.label}: {e.note}"), soft_wrap=True)


# ---------------------------------------------------------------- compare RUN...


def _run_entry(run: RunDir) -> Entry:
    import yaml

    record = run.read_record()
    try:
        config = yaml.safe_load(run.config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(f"{run.config_file} is unreadable: {exc}") from None
    best = record.best or Best()
    status, note = effective_status(run, record)
    return Entry(
        label=run.id,
        status=status,
        values=flatten(config),
        best=finite(best.value),
        epoch=best.epoch,
        run=run,
        note=note,
        extra={"monitor": best.monitor, "mode": best.mode},
    )


def expand(refs: list[str], runs_dir: Path) -> list[RunDir]:
    """Run directories from the arguments; a sweep directory stands for its trials."""
    from trainrun.sweep.record import is_sweep_dir

    runs: list[RunDir] = []
    for ref in refs:
        path = Path(ref) if Path(ref).exists() else Path(runs_dir) / ref
        if is_sweep_dir(path):
            runs += [RunDir(p) for p in sorted(path.iterdir()) if (p / "run.json").is_file()]
        else:
            runs.append(RunDir.open(ref, runs_dir))
    return runs


def compare_runs(refs: list[str], runs_dir: Path, out_png: Path, out: Console) -> Path:
    runs = expand(refs, runs_dir)
    if len(runs) < 2:
        raise TrainrunError(f"compare needs two runs or more; got {len(runs)} ({', '.join(refs)})")
    entries = [_run_entry(run) for run in runs]
    monitors = {(e.extra["monitor"], e.extra["mode"]) for e in entries if e.best is not None}
    if len(monitors) > 1:
        names = ", ".join(sorted(f"{m} ({d})" for m, d in monitors if m))
        out.print(
            f"note: the runs follow different monitors ({names}); each row shows its own",
            markup=False,
        )
    monitor, mode = next(iter(monitors)) if len(monitors) == 1 else ("value", "min")
    ordered = _order(entries, mode or "min")
    out.print(Text(f"{len(entries)} runs, best {monitor} first", style="italic"), soft_wrap=True)
    print_table(out, ordered, differing(entries), monitor, "run")
    return write_curves(ordered, out_png)


def write_curves(entries: list[Entry], target: Path) -> Path:
    """Each metric of history.csv in a panel, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    histories = {}
    keys: list[str] = []
    for e in entries:
        columns, rows, _ = read_history(e.run.history_csv) if e.run else ([], [], [])
        histories[e.label] = rows
        keys += [c for c in columns if c not in ("epoch", "learning_rate", "lr") and c not in keys]
    keys.sort(key=lambda c: (c.removeprefix("val_") != "loss", c.removeprefix("val_"), c))
    cols = min(3, len(keys)) or 1
    nrows = math.ceil(len(keys) / cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for label, rows in histories.items():
            points = [(int(r["epoch"]) + 1, r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=label)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    if keys:
        axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, plt, target)


def _save(fig: Any, plt: Any, target: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    try:
        write_atomic(target, buf.getvalue())
    except OSError as exc:
        raise TrainrunError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


# ---------------------------------------------------------------- runs --sweep


def open_sweep(ref: str, runs_dir: Path) -> Path:
    from trainrun.sweep.record import is_sweep_dir

    path = Path(ref)
    if not path.exists():
        candidates = [Path(runs_dir) / ref]
        if Path(runs_dir).is_dir():
            candidates += sorted(p for p in Path(runs_dir).iterdir() if p.name.startswith(ref))
        found = [p for p in candidates if is_sweep_dir(p)]
        if len(found) > 1 and found[0] != candidates[0]:
            raise RunDirError(f"'{ref}' matches several sweeps in {runs_dir}; give more of the id")
        path = found[0] if found else path
    if not is_sweep_dir(path):
        raise RunDirError(
            f"--sweep {ref}: no sweep directory (with sweep.json) there or in {runs_dir}; "
            "`trainrun runs` lists the sweeps"
        )
    return path


def sweep_entries(sweep_dir: Path) -> tuple[dict[str, Any], list[Entry]]:
    """The study's trials (every machine's) as entries, from its storage."""
    from trainrun.sweep import study as optuna_side
    from trainrun.sweep.record import read_record

    record = read_record(sweep_dir)
    optuna = optuna_side.optuna()
    storage = optuna_side.open_storage(record["storage"], option="storage")
    try:
        study = optuna.load_study(study_name=record["study"], storage=storage)
    except KeyError:
        raise RunDirError(
            f"{sweep_dir}: its study '{record['study']}' is not in its storage"
        ) from None
    entries = []
    for t in study.get_trials(deepcopy=False):
        run = t.user_attrs.get("run")
        host = t.user_attrs.get("host")
        note = t.user_attrs.get("reason") or ""
        if run and record.get("host") and host and host != record.get("host"):
            note = (note + "; " if note else "") + f"run on {host}"
        entries.append(
            Entry(
                label=str(t.number),
                status=t.state.name.lower(),
                values=dict(t.params),
                best=t.value if t.state.name == "COMPLETE" else None,
                epoch=t.user_attrs.get("best_epoch"),
                run=RunDir(Path(sweep_dir) / run) if run else None,
                note=note,
                extra={"run": run or "-", "intermediate": dict(t.intermediate_values)},
            )
        )
    return record, entries


def show_sweep(ref: str, runs_dir: Path, out: Console) -> Path:
    sweep_dir = open_sweep(ref, runs_dir)
    record, entries = sweep_entries(sweep_dir)
    mode = "max" if record["direction"] == "maximize" else "min"
    states = {"complete": 0, "running": 1, "pruned": 2, "fail": 3, "waiting": 4}
    done = _order([e for e in entries if e.status == "complete"], mode)
    others = sorted(
        (e for e in entries if e.status != "complete"),
        key=lambda e: (states.get(e.status, 5), int(e.label)),
    )
    ordered = done + others
    params = list(record["spec"]["parameters"])
    columns = differing(entries) if len(entries) > 1 else params
    columns = [c for c in params if c in columns] or params
    out.print(
        Text(
            f"sweep {sweep_dir.name}: {len(entries)}/{record.get('trials_target')} trials, "
            f"{record['direction']} {record['metric']}, best first",
            style="italic",
        ),
        soft_wrap=True,
    )
    table = Table()
    for header in ("trial", "state", *columns, record["metric"], "epoch", "run"):
        table.add_column(header, no_wrap=True)
    for e in ordered:
        table.add_row(
            e.label,
            e.status,
            *(_cell(e.values.get(c)) for c in columns),
            _cell(e.best),
            _cell(e.epoch),
            e.extra["run"],
        )
    out.print(table)
    for e in ordered:
        if e.note:
            out.print(Text(f"* trial {e.label}: {e.note}"), soft_wrap=True)
    return write_sweep_plot(sweep_dir, record, entries, params)


def write_sweep_plot(
    sweep_dir: Path, record: dict[str, Any], entries: list[Entry], params: list[str]
) -> Path:
    """The metric against each parameter: one panel a parameter, one point a finished trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = record["spec"]["parameters"]
    cols = min(3, len(params)) or 1
    nrows = math.ceil(len(params) / cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.4 * nrows), squeeze=False)
    complete = [e for e in entries if e.best is not None]
    for ax, name in zip(axes.flat, params, strict=False):
        values = [e.values.get(name) for e in complete]
        kind = next(iter(spec[name]))
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            xs: list[Any] = values
        else:
            labels = sorted({str(v) for v in values})
            xs = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        ax.scatter(xs, [e.best for e in complete], s=18)
        if kind in ("loguniform", "logint") or (
            numeric and values and min(values) > 0 and max(values) / min(values) >= 100
        ):
            ax.set_xscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(record["metric"])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(params) :]:
        ax.set_visible(False)
    fig.suptitle(sweep_dir.name, fontsize=11)
    fig.tight_layout()
    return _save(fig, plt, sweep_dir / "compare.png")
