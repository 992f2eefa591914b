"""`trainrun validate`: build everything a run would, train nothing, write nothing."""

from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path

from trainrun.config import LoadedConfig
from trainrun.engine.events import Quiet
from trainrun.engine.trainer import Trainer
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
        trainer = Trainer(loaded, RunDir(Path(tmp)), Quiet())
        trainer.prepare()
        buf = io.StringIO()
        trainer.model.summary(print_fn=lambda line, **_: buf.write(line + "\n"))
        keys = ", ".join(k for k in trainer.log_keys if k != "learning_rate")
        buf.write(f"training will log: {keys}\n")
        buf.write(
            f"steps per epoch: {trainer.steps_per_epoch}, steps per execution: {trainer.spe}\n"
        )
        return buf.getvalue()
