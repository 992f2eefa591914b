"""`trainrun diff RUN_A RUN_B`: what differs between two runs, from their files. No TensorFlow.

Config keys (config.yaml, by dotted path), provenance entries (versions, machine,
config hash, data files, code, git) and the monitored metric at each run's best epoch.
"""

from __future__ import annotations

from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from trainrun.errors import RunDirError
from trainrun.runs.listing import fmt_best
from trainrun.runs.provenance import short
from trainrun.runs.rundir import RunDir

# Provenance keys that say when or how, not what: left out of the comparison.
_NOT_COMPARED = ("seconds", "mtime_ns", "copy", "platform")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'fit': {'epochs': 3}} -> {'fit.epochs': 3}; lists of plain values stay one value."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}.{i}" if prefix else str(i)))
        return out
    return {prefix: value}


def _config(run: RunDir) -> dict[str, Any]:
    try:
        data = yaml.safe_load(run.config_file.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(f"{run.config_file} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{run.config_file} is not a trainrun config (not a mapping)")
    return data


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, a's value, b's value) for each dotted key whose values differ, in a's order."""
    fa, fb = flatten(a), flatten(b)
    keys = list(dict.fromkeys([*fa, *fb]))
    return [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]


def _provenance(prov: dict[str, Any]) -> dict[str, Any]:
    flat = flatten(prov)
    return {k: v for k, v in flat.items() if k.rsplit(".", 1)[-1] not in _NOT_COMPARED}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return short(value) if isinstance(value, list | str) else str(value)


def _table(title: str, a: RunDir, b: RunDir, rows: list[tuple[str, Any, Any]]) -> Table:
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("key", overflow="fold")
    table.add_column(a.id, overflow="fold")
    table.add_column(b.id, overflow="fold")
    for key, x, y in rows:
        table.add_row(key, _cell(x), _cell(y))
    return table


def diff_runs(a: RunDir, b: RunDir, out: Console) -> None:
    record_a, record_b = a.read_record(), b.read_record()
    config = differences(_config(a), _config(b))
    if config:
        out.print(_table("config", a, b, config))
    else:
        out.print("config: the same", markup=False)
    pa, pb = record_a.provenance, record_b.provenance
    if not pa or not pb:
        missing = ", ".join(r.id for r, p in ((a, pa), (b, pb)) if not p)
        out.print(f"provenance: not recorded for {missing}", markup=False)
    else:
        fa, fb = _provenance(pa), _provenance(pb)
        keys = list(dict.fromkeys([*fa, *fb]))
        rows = [(k, fa.get(k), fb.get(k)) for k in keys if fa.get(k) != fb.get(k)]
        if rows:
            out.print(_table("provenance", a, b, rows))
        else:
            out.print("provenance: the same", markup=False)
    best = Table(title="best epoch", title_justify="left", box=None, pad_edge=False)
    best.add_column("run")
    best.add_column("best")
    for run, record in ((a, record_a), (b, record_b)):
        best.add_row(run.id, fmt_best(record.best))
    out.print(best)
