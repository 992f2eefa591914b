"""`trainrun evaluate`: a run's saved model on its own test or validation data.

The data is rebuilt from the run's config.yaml exactly as training built it
(same source, limits, validation_split, reshape and scale), so the numbers are
what `keras.saving.load_model(...).evaluate(...)` gives on that data.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import tensorflow as tf

from trainrun.config import LoadedConfig, load_config
from trainrun.data import Data, build_data, encode_labels
from trainrun.data import pipeline as pl
from trainrun.data.arrays import ArraySplit
from trainrun.engine.saved import Checkpoint, choose_checkpoint, load_model
from trainrun.errors import ConfigError, DataError, TrainrunError
from trainrun.runs.files import write_json
from trainrun.runs.rundir import RunDir, now

SPLITS = ("test", "validation")
KEEP_PREVIOUS = 20


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


def _where(loaded: LoadedConfig, data: Data, split: str) -> str:
    cfg = loaded.config.data
    if split == "validation" and cfg.validation_split:
        return f"validation (the last {cfg.validation_split:g} of train)"
    if cfg.source == "mnist" and split == "test":
        return "test (MNIST's 10000 test images)"
    return split


def pick_split(loaded: LoadedConfig, data: Data, split: str | None) -> tuple[str, Any]:
    """The requested split (default: test if the config has one, else validation)."""
    available = {name: getattr(data, name) for name in SPLITS if getattr(data, name) is not None}
    if not available:
        raise DataError(
            f"{loaded.file} has neither test nor validation data to evaluate on; "
            "add data.test (numpy/tfdata) or data.validation_split"
        )
    if split is None:
        split = next(iter(available))
    if split not in SPLITS:
        raise TrainrunError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    if split not in available:
        have = ", ".join(_where(loaded, data, s) for s in available)
        raise DataError(
            f"this run has no {split} data; it has: {have} (--split {next(iter(available))})"
        )
    return split, available[split]


def _count_samples(ds: tf.data.Dataset) -> int:
    def add(n: tf.Tensor, *batch: Any) -> tf.Tensor:
        first = tf.nest.flatten(batch)[0]
        return n + tf.cast(tf.shape(first)[0], tf.int64)

    return int(ds.reduce(tf.constant(0, tf.int64), add).numpy())


def feed(
    loaded: LoadedConfig, data: Data, split: str, value: Any
) -> tuple[Any, int | None, int | None]:
    """(dataset, steps or None, samples) with training's preprocessing."""
    cfg = loaded.config
    if isinstance(value, ArraySplit):
        if len(value) == 0:
            raise DataError(f"the {split} data of this run is empty")
        ds = pl.batches(value, batch_size=cfg.fit.eval_batch_size(), scale=data.scale)
        return ds, None, len(value)
    steps = cfg.fit.validation_steps if split == "validation" else None
    if int(value.cardinality().numpy()) == tf.data.INFINITE_CARDINALITY:
        if steps is None:
            raise DataError(
                f"the {split} dataset repeats for ever; evaluate needs a finite dataset"
                + (" (or fit.validation_steps)" if split == "validation" else "")
            )
        return value, steps, None
    return value, steps, (_count_samples(value) if steps is None else None)


def evaluate(run: RunDir, *, checkpoint: str = "last", split: str | None = None) -> Evaluation:
    """Evaluate the run's model on `split`; write eval.json (earlier results kept in it)."""
    loaded = load_config(run.config_file)
    chosen: Checkpoint = choose_checkpoint(run, loaded, checkpoint)
    try:
        data = build_data(loaded)
    except ConfigError as exc:  # the data changed since training, say: point into config.yaml
        raise loaded.locate(exc) from None
    split, value = pick_split(loaded, data, split)
    model = load_model(run, loaded, chosen)
    if loaded.config.data.one_hot:  # the labels as training fed them
        try:
            value = getattr(encode_labels(loaded, data, model), split)
        except ConfigError as exc:
            raise loaded.locate(exc) from None
    ds, steps, samples = feed(loaded, data, split, value)
    if not model.compiled:
        raise TrainrunError(
            f"{chosen.shown(run)} holds an uncompiled model; it has no loss or metrics to evaluate"
        )
    started = time.perf_counter()
    logs = model.evaluate(ds, steps=steps, verbose=0, return_dict=True)
    seconds = time.perf_counter() - started
    result = Evaluation(
        run=run.id,
        checkpoint=chosen.shown(run),
        checkpoint_choice=chosen.choice,
        split=split,
        samples=samples,
        batch_size=loaded.config.fit.eval_batch_size() if isinstance(value, ArraySplit) else None,
        metrics={k: float(v) for k, v in logs.items()},
        seconds=round(seconds, 3),
        evaluated=now(),
        note=chosen.note,
    )
    result.previous = _previous(run)
    record = {k: v for k, v in asdict(result).items() if k != "unwritten"}
    try:
        write_json(run.path / "eval.json", record)
    except OSError as exc:  # a read-only or full disk: the numbers are still shown
        result.unwritten = f"{run.path / 'eval.json'} could not be written: {exc.strerror or exc}"
    return result


def _previous(run: RunDir) -> list[dict[str, Any]]:
    """Earlier evaluations from eval.json, newest first: a new one never erases them."""
    path = run.path / "eval.json"
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []  # unreadable: replaced by a good one
    if not isinstance(old, dict):
        return []
    earlier = old.pop("previous", []) if isinstance(old.get("previous"), list) else []
    return [old, *earlier][:KEEP_PREVIOUS]
