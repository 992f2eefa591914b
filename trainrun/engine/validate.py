"""`trainrun validate`: build everything a run would, train nothing, write nothing."""

from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path

from trainrun.config import LoadedConfig
from trainrun.console import Reporter
from trainrun.engine.session import Session
from trainrun.runs.rundir import RunDir


def validate(loaded: LoadedConfig) -> str:
    """Return the model summary; raise a TrainrunError for anything that would fail."""
    if loaded.config.distribute == "multi_worker":
        # Building needs no cluster: the multi-worker strategy would wait for the
        # other workers to join a run that validate never starts.
        loaded = dataclasses.replace(
            loaded, config=loaded.config.model_copy(update={"distribute": "none"})
        )
    with tempfile.TemporaryDirectory(prefix="trainrun-validate-") as tmp:
        session = Session(loaded, RunDir(Path(tmp)), Reporter())
        session.prepare()
        buf = io.StringIO()
        session.model.summary(print_fn=lambda line, **_: buf.write(line + "\n"))
        keys = ", ".join(k for k in session.log_keys if k != "learning_rate")
        buf.write(f"training will log: {keys}\n")
        buf.write(
            f"steps per epoch: {session.steps_per_epoch}, steps per execution: {session.spe}\n"
        )
        return buf.getvalue()
