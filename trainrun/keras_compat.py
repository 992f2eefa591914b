"""Every place trainrun reaches past Keras' public API, each behind one named function.

Each has a canary test (tests/test_keras_compat.py, and for the multi-worker
shim tests/test_distribute.py) that fails when Keras changes what it relies on,
so an upgrade breaks a test here rather than a run.

What is here:

- model.save / save_weights made atomic (`make_saves_atomic`);
- the callback hooks Keras calls, wrapped to time them (`time_callback_hooks`);
- TensorBoard without per-batch work (`TensorBoard`: Keras' class name, which
  saved states and run.json's timing record), its writers
  (`tensorboard_writers`), and the private attributes that hold Keras
  callbacks' state between epochs (`callback_state_attributes`);
- the graph of a functional model (`producing_layer`, `inbound_tensors`), the
  vocabulary layers' internals (`lookup_layer`, `has_input_vocabulary`), Keras'
  registry of aliases (`registered_objects`), the symbolic build
  (`symbolic_build`) and Keras' monitor-direction rule (`MonitorCallback`);
- training under MultiWorkerMirroredStrategy (below).

Training under MultiWorkerMirroredStrategy
------------------------------------------

Keras 3's TensorFlow trainer does not run ``fit`` under
``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585, open;
MirroredStrategy is fine). Two places fail once a cluster has more than one
worker, and trainrun works around exactly those, for that strategy only:

1. ``TensorFlowTrainer._maybe_symbolic_build(iterator=...)`` takes a batch from
   the distributed dataset and averages it over the replicas with an eager
   ``strategy.reduce("MEAN", batch, axis=None)``, only to learn input shapes;
   under MultiWorkerMirroredStrategy that raises "Attempt to convert a value
   (PerReplica...) to a Tensor". trainrun builds the model, loss, metrics and
   optimizer inside the strategy scope before ``fit`` (``Trainer.prepare``), so
   there is nothing left to build: `skip_symbolic_build` makes the step a no-op
   for a model that is fully built (and leaves any other model to Keras).
2. ``reduce_per_replica(..., reduction="mean")`` reduces each train/test step's
   outputs (the scalar loss and metric results) with
   ``strategy.reduce("MEAN", v, axis=0)``; a scalar has no axis 0. What Keras
   does for MirroredStrategy, ``tf.reduce_mean`` over the replicas' values, is
   ``strategy.reduce("MEAN", v, axis=None)`` across workers: `enable_multi_worker`
   swaps that in when the strategy is multi-worker, and calls Keras' own
   function in every other case.

A third limit has no small fix and is not specific to multi-worker training:
``steps_per_execution > 1`` (Keras' ``tf.while_loop`` of steps over a
distributed iterator) fails with "You must feed a value for placeholder tensor
'while/cond/Placeholder'" under any strategy with more than one replica
(MirroredStrategy over two devices included). trainrun then runs one step per
execution (`DISTRIBUTED_MAX_STEPS_PER_EXECUTION`).

``tests/test_distribute.py::test_keras_still_needs_the_compat_shim`` fails when
an upgraded Keras no longer has these bugs: then delete this module's fix for it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras.src.callbacks.monitor_callback import MonitorCallback  # noqa: F401 - re-exported

from trainrun.errors import TrainrunError
from trainrun.lazy import lazy_module
from trainrun.runs.files import writing

# Imported on first use: the JAX and torch backends run without TensorFlow.
tf = lazy_module("tensorflow")

DISTRIBUTED_MAX_STEPS_PER_EXECUTION = 1

_TEXT_LEN = 512


def _trainer_module() -> Any:
    from keras.src.backend.tensorflow import trainer

    return trainer


def _is_multi_worker(trainer: Any, strategy: Any) -> bool:
    return bool(trainer._collective_all_reduce_multi_worker(strategy))


def enable_multi_worker() -> None:
    """Route Keras' step-output reduction through `reduce_per_replica` below. Idempotent."""
    trainer = _trainer_module()
    current = trainer.reduce_per_replica
    if getattr(current, "_trainrun_original", None) is not None:
        return
    for name in ("reduce_per_replica", "_collective_all_reduce_multi_worker"):
        if not callable(getattr(trainer, name, None)):
            raise TrainrunError(
                f"distribute: multi_worker relies on keras.src.backend.tensorflow.trainer.{name}, "
                "which this Keras version lacks; see trainrun/keras_compat.py"
            )

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and _is_multi_worker(trainer, strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return current(values, strategy, reduction)

    reduce_per_replica._trainrun_original = current  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica


def original_reduce_per_replica() -> Any:
    """Keras' own function, whether or not `enable_multi_worker` ran."""
    fn = _trainer_module().reduce_per_replica
    return getattr(fn, "_trainrun_original", fn)


def fully_built(model: Any) -> bool:
    """What Keras' `_symbolic_build` would still build: nothing (the same checks it makes)."""
    return (
        all(layer.built for layer in model._flatten_layers())
        and (model._compile_metrics is None or model._compile_metrics.built)
        and (model._compile_loss is None or model._compile_loss.built)
        and (model.optimizer is None or model.optimizer.built)
    )


def skip_symbolic_build(model: Any) -> None:
    """Make fit/evaluate's symbolic build a no-op while `model` is fully built."""
    original = model._maybe_symbolic_build

    def maybe_symbolic_build(iterator: Any = None, data_batch: Any = None) -> Any:
        if fully_built(model):
            return None
        return original(iterator=iterator, data_batch=data_batch)

    object.__setattr__(model, "_maybe_symbolic_build", maybe_symbolic_build)


def prepare_model(model: Any, strategy: Any) -> None:
    """Apply what `model` needs before `fit` under `strategy` (nothing, for most)."""
    if sys.modules.get("tensorflow") is not None and isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ):
        skip_symbolic_build(model)


def text_row(text: str, *, is_chief: bool) -> np.ndarray:
    """`text` as one int32 row of a gather: a chief mark, then its UTF-8 bytes."""
    data = text.encode("utf-8")
    if len(data) >= _TEXT_LEN:
        raise ValueError(f"text to gather is {len(data)} bytes, more than {_TEXT_LEN - 1}")
    codes = np.zeros(_TEXT_LEN, np.int32)
    codes[0] = 2 if is_chief else 1  # never 0: marks a filled row
    codes[1 : 1 + len(data)] = np.frombuffer(data, np.uint8)
    return codes


def text_rows(rows: np.ndarray) -> list[tuple[bool, str]]:
    """The (is_chief, text) of each gathered `text_row`."""
    out = []
    for row in rows:
        body = row[1:]
        out.append((bool(row[0] == 2), bytes(body[body > 0].astype(np.uint8)).decode("utf-8")))
    return out


def gather_text(strategy: Any, text: str, *, is_chief: bool) -> list[tuple[bool, str]]:
    """Every replica's (is_chief, text) of its worker: one all-gather that all workers must join.

    A worker with several local devices appears once per device.
    """
    codes = text_row(text, is_chief=is_chief)
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(codes[None, :])
    )
    return text_rows(strategy.gather(values, axis=0).numpy())


# ---------------------------------------------------------------- callbacks

# The hooks Keras' CallbackList calls during fit; on_batch_begin/end are left out
# because the base class calls them from on_train_batch_begin/end (they would
# count twice), and predict's hooks never run in fit.
TIMED_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_begin",
    "on_test_end",
    "on_test_batch_begin",
    "on_test_batch_end",
)


def time_callback_hooks(
    callback: Any, seconds: dict[str, float], on_error: Callable[[Exception], None]
) -> None:
    """Add the time `callback`'s hooks take to ``seconds[<its class name>]``, by
    replacing each hook on the instance; `on_error` sees an exception a hook raises."""
    name = type(callback).__name__
    seconds.setdefault(name, 0.0)
    for hook in TIMED_HOOKS:
        method = getattr(callback, hook)

        def timed(*args: Any, _method: Callable = method, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            except Exception as exc:
                on_error(exc)
                raise
            finally:
                seconds[name] += time.perf_counter() - t0

        setattr(callback, hook, timed)


class TensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard without per-batch work that writes nothing.

    With ``update_freq='epoch'`` (the default) Keras still passes every batch's
    logs to ``tf.summary.scalar``, which records nothing when no writer is set;
    at one step per execution that took 14% of an MNIST run's training time.
    """

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        super().on_train_batch_end(batch, None if self.update_freq == "epoch" else logs)


def tensorboard_writers(callback: Any) -> Iterable[Any]:
    """The summary writers a TensorBoard callback has open (none for other callbacks)."""
    if not isinstance(callback, keras.callbacks.TensorBoard):
        return ()
    return callback._writers.values()


# Attributes that make up each Keras callback's state between epochs. Some are
# set only once training begins: a callback that has not begun lacks them.
CALLBACK_STATE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "EarlyStopping": ("wait", "stopped_epoch", "best", "best_epoch", "best_weights"),
    "ReduceLROnPlateau": ("wait", "cooldown_counter", "best"),
    "ModelCheckpoint": (
        "best",
        "_last_batch_seen",
        "_batches_seen_since_last_saving",
        "_current_epoch",
    ),
    "TensorBoard": ("_global_train_batch",),
}


def callback_state_attributes(callback: Any) -> tuple[str, ...]:
    """The state attributes of `callback`'s nearest Keras class in CALLBACK_STATE_ATTRIBUTES."""
    for klass in type(callback).__mro__:
        if klass.__name__ in CALLBACK_STATE_ATTRIBUTES and klass.__module__.startswith("keras"):
            return CALLBACK_STATE_ATTRIBUTES[klass.__name__]
    return ()


# ---------------------------------------------------------------- models and layers


def make_saves_atomic(model: Any) -> None:
    """Make model.save / save_weights write a temp file and rename it into place.

    Keras writes .keras and .weights.h5 files in place, so a kill during
    ModelCheckpoint's save would destroy the previous good checkpoint. The temp
    name keeps the target's suffix, which Keras reads to pick the format.
    """

    def wrap(save: Any) -> Any:
        def atomic(filepath: Any, *args: Any, **kwargs: Any) -> Any:
            target = Path(str(filepath))
            tmp = target.parent / f".tmp-{os.getpid()}-{target.name}"
            try:
                with writing(target):
                    result = save(str(tmp), *args, **kwargs)
                    with open(tmp, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp, target)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            return result

        return atomic

    object.__setattr__(model, "save", wrap(model.save))
    object.__setattr__(model, "save_weights", wrap(model.save_weights))


def producing_layer(tensor: Any) -> Any:
    """The layer (or Input) whose output `tensor` is, in a functional graph; None if unknown."""
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


def inbound_tensors(layer: Any) -> list[Any]:
    """The symbolic tensors `layer` was called on, over all its calls in functional graphs."""
    return [t for node in layer._inbound_nodes for t in node.input_tensors]


def lookup_layer(layer: Any) -> Any:
    """The StringLookup/IntegerLookup doing a vocabulary layer's lookup (TextVectorization's inner one)."""
    if isinstance(layer, keras.layers.TextVectorization):
        return layer._lookup_layer
    return layer


def has_input_vocabulary(layer: Any) -> bool:
    """Whether a vocabulary layer (a lookup or TextVectorization) was given its vocabulary."""
    return bool(layer._has_input_vocabulary)


def registered_objects(kind: str) -> dict[str, Any]:
    """Keras' own registry of `kind` (initializer, ...) names, aliases included."""
    module = importlib.import_module(f"keras.src.{kind}s")
    return getattr(module, "ALL_OBJECTS_DICT", {})


def symbolic_build(model: Any, batch: Any) -> None:
    """Build model, loss and metrics from one batch, as Keras' fit does first."""
    model._symbolic_build(data_batch=batch)


def use_step_functions(model: Any, *, train: Any, test: Any) -> None:
    """Make `model.fit` and `model.evaluate` call `train` / `test` as their step
    functions ``(state, iterator) -> (logs, state)`` (JAX trainer).

    Keras builds its own in `make_train_function` / `make_test_function` only
    while `model.train_function` / `model.test_function` is None; `compile()`
    resets both, so this is called after it.
    """
    model.train_function = train
    model.test_function = test


def one_step_per_execution(model: Any) -> None:
    """Let a loaded model run on Keras' torch trainer, which refuses a
    `steps_per_execution` above 1 (a model trained elsewhere keeps its compile's).
    The attribute is what `compile()` sets; the step functions are made anew."""
    if model.steps_per_execution > 1:
        model.steps_per_execution = 1
        model.train_function = model.test_function = model.predict_function = None
