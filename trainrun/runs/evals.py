"""eval.json: the results of `trainrun evaluate` on a run, the latest first.

`evaluate` writes the latest result with the earlier ones under `previous`;
`show` prints the latest. One reader for both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVAL_JSON = "eval.json"
KEEP_PREVIOUS = 20


class UnreadableEval(ValueError):
    """eval.json is there but cannot be read as evaluate writes it."""


def read_evaluations(run_path: Path) -> list[dict[str, Any]]:
    """The run's evaluations, newest first ([] when eval.json is missing).

    Raises UnreadableEval, with the reason, for a file that is not a JSON object.
    """
    path = Path(run_path) / EVAL_JSON
    if not path.is_file():
        return []
    try:
        latest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableEval(str(exc)) from None
    if not isinstance(latest, dict):
        raise UnreadableEval(f"not a JSON object (it holds {type(latest).__name__})")
    previous = latest.pop("previous", [])
    earlier = [e for e in previous if isinstance(e, dict)] if isinstance(previous, list) else []
    return [latest, *earlier]


def previous_evaluations(run_path: Path) -> list[dict[str, Any]]:
    """What a new evaluation keeps of eval.json, newest first: an unreadable file is
    replaced by a good one."""
    try:
        return read_evaluations(run_path)[:KEEP_PREVIOUS]
    except UnreadableEval:
        return []
