"""`trainrun evaluate`: a run's saved model on its own test or validation data.

The data is rebuilt from the run's config.yaml exactly as training built it
(same source, limits, validation_split, reshape and scale), so the numbers are
what `keras.saving.load_model(...).evaluate(...)` gives on that data.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from trainrun.config import LoadedConfig, load_config
from trainrun.data.feed import EVAL_SPLITS as SPLITS
from trainrun.data.feed import Feed
from trainrun.engine.saved import Checkpoint, choose_checkpoint, load_model
from trainrun.errors import ConfigError, DataError, TrainrunError
from trainrun.runs.evals import previous_evaluations
from trainrun.runs.files import write_json
from trainrun.runs.rundir import RunDir, now


@dataclass
class Evaluation:
    run: str
    checkpoint: str
    checkpoint_choice: str
    split: str
    samples: int | None
    batch_size: int | None
    metrics: dict[str, float]
    seconds: float
    evaluated: str
    note: str = ""
    previous: list[dict[str, Any]] = field(default_factory=list)
    unwritten: str = ""  # why eval.json could not be written (not part of it)


def pick_split(loaded: LoadedConfig, feed: Feed, split: str | None) -> str:
    """The requested split (default: test if the config has one, else validation)."""
    available = [name for name in SPLITS if feed.split(name) is not None]
    if not available:
        raise DataError(
            f"{loaded.file} has neither test nor validation data to evaluate on; "
            "add data.test (numpy/tfdata) or data.validation_split"
        )
    if split is None:
        split = available[0]
    if split not in SPLITS:
        raise TrainrunError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    if split not in available:
        have = ", ".join(feed.describe(s) for s in available)
        raise DataError(f"this run has no {split} data; it has: {have} (--split {available[0]})")
    return split


def evaluate(run: RunDir, *, checkpoint: str = "last", split: str | None = None) -> Evaluation:
    """Evaluate the run's model on `split`; write eval.json (earlier results kept in it)."""
    loaded = load_config(run.config_file)
    chosen: Checkpoint = choose_checkpoint(run, loaded, checkpoint)
    try:
        feed = Feed.build(loaded)
    except ConfigError as exc:  # the data changed since training, say: point into config.yaml
        raise loaded.locate(exc) from None
    split = pick_split(loaded, feed, split)
    model = load_model(run, loaded, chosen)
    try:
        feed.encode_labels(model)  # the labels as training fed them (data.one_hot)
    except ConfigError as exc:
        raise loaded.locate(exc) from None
    batches = feed.eval_batches(split)
    if not model.compiled:
        raise TrainrunError(
            f"{chosen.shown(run)} holds an uncompiled model; it has no loss or metrics to evaluate"
        )
    started = time.perf_counter()
    logs = model.evaluate(batches.dataset, steps=batches.steps, verbose=0, return_dict=True)
    seconds = time.perf_counter() - started
    result = Evaluation(
        run=run.id,
        checkpoint=chosen.shown(run),
        checkpoint_choice=chosen.choice,
        split=split,
        samples=batches.samples,
        batch_size=batches.batch_size,
        metrics={k: float(v) for k, v in logs.items()},
        seconds=round(seconds, 3),
        evaluated=now(),
        note=chosen.note,
    )
    result.previous = previous_evaluations(run.path)
    record = {k: v for k, v in asdict(result).items() if k != "unwritten"}
    try:
        write_json(run.path / "eval.json", record)
    except OSError as exc:  # a read-only or full disk: the numbers are still shown
        result.unwritten = f"{run.path / 'eval.json'} could not be written: {exc.strerror or exc}"
    return result
