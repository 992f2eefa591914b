"""trainrun: a config-driven training runner for Keras."""

from __future__ import annotations

import os
import time as _time
from typing import Any

__version__ = "0.1.0"

# When this process started trainrun: run.json's timings count from here.
STARTED_AT = _time.time()


def load_model(run_or_path: str | os.PathLike, *, compile: bool = True) -> Any:  # noqa: A002
    """Load a run's keras.Model with the custom objects its config names by import path.

    `run_or_path`: a run directory (loads its model.keras) or a .keras file inside
    one. See trainrun.custom for how the objects are found.
    """
    from trainrun.custom import load_model as _load

    return _load(run_or_path, compile=compile)


def custom_objects(run_or_path: str | os.PathLike) -> dict[str, Any]:
    """{name: object} of a run's import-path objects, for keras.saving.load_model(custom_objects=...)."""
    from trainrun.custom import custom_objects_of

    return custom_objects_of(run_or_path)
