"""Provenance as tables: what changed since a run started, and `show`'s summary. No TensorFlow."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from trainrun.runs.provenance import Change, short


def changes_table(changes: list[Change]) -> Table:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in ("what", "then", "now"):
        table.add_column(column, overflow="fold")
    for change in changes:
        table.add_row(change.what, change.then, change.now)
    return table


def summary_rows(prov: dict[str, Any]) -> list[tuple[str, str]]:
    """`trainrun show`'s provenance section: one line per kind of thing recorded."""
    if not prov:
        return []
    rows: list[tuple[str, str]] = []
    env = prov.get("environment") if isinstance(prov.get("environment"), dict) else {}
    versions = env.get("versions") if isinstance(env.get("versions"), dict) else {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    machine = [env.get("machine"), env.get("cpu")]
    if any(machine):
        rows.append(("machine", " / ".join(str(m) for m in machine if m)))
    if env.get("cpu_flags"):
        rows.append(("cpu flags", short(env["cpu_flags"])))
    if "gpus" in env:
        rows.append(("gpus", short(env["gpus"]) if env["gpus"] else "none"))
    config = prov.get("config") if isinstance(prov.get("config"), dict) else {}
    if config.get("sha256"):
        rows.append(("config", short(config["sha256"])))
    for key, entry in (prov.get("data") or {}).items():
        if isinstance(entry, dict):
            rows.append((key, _file(entry)))
    for module, entry in (prov.get("code") or {}).items():
        if isinstance(entry, dict):
            rows.append(
                (
                    f"code {module}",
                    f"{entry.get('file')} {short(entry.get('sha256'))} -> {entry.get('copy')}",
                )
            )
    git = prov.get("git")
    if isinstance(git, dict):
        rows.append(
            ("git", f"{git.get('commit', '-')[:12]}{' (dirty)' if git.get('dirty') else ''}")
        )
    return rows


def _file(entry: dict[str, Any]) -> str:
    if entry.get("missing"):
        return f"{entry.get('path')} (missing)"
    what = f"{entry.get('files')} files, " if entry.get("folder") else ""
    return f"{entry.get('path')} ({what}{entry.get('size')} B, {short(entry.get('sha256'))})"
