"""Numbers and metrics as trainrun shows them (the terminal, train.log, tables)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def metric_items(logs: Mapping[str, Any], keys: list[str] | None = None) -> list[str]:
    """`name value` for each metric (the learning rate apart), in Keras' order."""
    keys = keys if keys is not None else [k for k in logs if k != "learning_rate"]
    return [f"{k} {fmt_value(logs[k])}" for k in keys if k in logs]


def fmt_metrics(logs: Mapping[str, Any], keys: list[str] | None = None) -> str:
    return "  ".join(metric_items(logs, keys))
