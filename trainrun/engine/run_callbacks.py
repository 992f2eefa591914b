"""trainrun's own callbacks, placed around the user's in every run.

Order in the list given to ``fit``::

    LearningRateLogger, <user callbacks, CSVLogger, TensorBoard>, ProgressBridge, StateKeeper

LearningRateLogger runs first at epoch end, so the ``learning_rate`` it logs is
the rate the epoch trained with (before ReduceLROnPlateau lowers it). StateKeeper
runs last: at epoch end every other callback has updated its state, and at
train begin it re-applies restored state after the others have reset theirs.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

import trainrun
from trainrun import keras_compat
from trainrun.engine import state as st
from trainrun.engine.events import Events
from trainrun.errors import RunError
from trainrun.runs.files import no_space, writing, written_file


def _float(value: Any) -> float:
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return float("nan")


def current_lr(optimizer: Any) -> float:
    return _float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class Interrupted(Exception):  # noqa: N818 - a signal, not a failure
    """Raised from a callback after state is saved, to leave fit at once."""


def callback_file(callback: Any) -> str | None:
    """What a callback writes (CSVLogger's file, ModelCheckpoint's, TensorBoard's dir)."""
    for attr in ("filename", "filepath", "log_dir", "backup_dir"):
        value = getattr(callback, attr, None)
        if isinstance(value, str | Path):
            return str(value)
    log = getattr(getattr(callback, "events", None), "log_path", None)  # ProgressBridge: train.log
    return str(log) if log is not None else None


class LossNotFinite(RunError):
    """The training loss became NaN or infinite, and no TerminateOnNaN was listed."""

    def __init__(self, value: float, epoch: int, step: int | None) -> None:
        self.epoch, self.step = epoch, step
        what = "NaN" if math.isnan(value) else "infinite"
        at = f"epoch {epoch + 1}" + (f" (step {step})" if step else "")
        super().__init__(
            f"loss became {what} at {at}; lower the learning rate or add TerminateOnNaN; "
            "the run's last finite state is kept (nothing after it was saved)"
        )


class NanGuard(keras.callbacks.Callback):
    """Fails a run whose loss is NaN or infinite, before any other callback sees it.

    First in the callback list, so that no CSVLogger row, ModelCheckpoint file,
    resume state or final model is written from a diverged model. The loss is
    read where StateKeeper and the progress display read it anyway (once per
    execution), so the check costs nothing more. Not used when the config lists
    TerminateOnNaN: that callback's own stop is then the user's choice.
    """

    def __init__(self, start_step: int = 0) -> None:
        super().__init__()
        self.start_step = start_step
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._check((logs or {}).get("loss"), self.start_step + batch + 1)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.start_step = 0
        self._check((logs or {}).get("loss"), None)

    def _check(self, value: Any, step: int | None) -> None:
        if value is None:
            return
        loss = _float(value)
        if not math.isfinite(loss):
            raise LossNotFinite(loss, self.epoch, step)


class LearningRateLogger(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None and self.model.optimizer is not None:
            logs["learning_rate"] = current_lr(self.model.optimizer)


SHOW_EVERY = 0.05  # seconds between the progress display's batch updates, at most


class ProgressBridge(keras.callbacks.Callback):
    """Feeds the Rich progress display from Keras' batch and epoch hooks; records the
    first step's and each epoch's time (its own cost is in timing.callbacks_s)."""

    def __init__(
        self,
        events: Events,
        epochs: int,
        steps: int | None,
        start_step: int = 0,
        timing: dict | None = None,
    ) -> None:
        super().__init__()
        self.events = events
        self.epochs = epochs
        self.steps = steps
        self.start_step = start_step
        self.timing = timing if timing is not None else {}
        self._epoch_t0 = 0.0
        self._shown = 0.0  # when the display last got a batch update

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_t0 = time.time()
        self.events.begin_epoch(epoch, self.epochs, self.steps, self.start_step)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        t0 = time.time()
        if "first_step_s" not in self.timing:
            self.timing["first_step_s"] = round(t0 - trainrun.STARTED_AT, 3)
        step = self.start_step + batch + 1
        if self.steps:
            step = min(step, self.steps)  # Keras reports a short last execution as a full one
        if t0 - self._shown < SHOW_EVERY and step != self.steps:
            return  # the display redraws 10 times a second: a faster update is never seen
        self._shown = t0
        self.events.batch(step, {k: _float(v) for k, v in (logs or {}).items()})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.start_step = 0
        self.timing.setdefault("epoch_s", []).append(round(time.time() - self._epoch_t0, 3))
        self.events.end_epoch(epoch, self.epochs, {k: _float(v) for k, v in (logs or {}).items()})


class StateKeeper(keras.callbacks.Callback):
    """Saves what resume needs, at epoch ends and every so often within an epoch."""

    def __init__(
        self,
        *,
        store: st.StateStore | None,
        callbacks: list[Any],
        history: list[dict[str, Any]],
        every: str | int,
        start_step: int,
        on_epoch: Callable[[int, dict[str, Any]], None],
        interrupted: Callable[[], bool],
        epoch_var: Any = None,
        steps_per_epoch: int | None = None,
        extra_meta: Callable[[], dict[str, Any]] | None = None,
        on_save: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.callbacks = callbacks
        self.history = history
        self.every = every
        self.start_step = start_step
        self.on_epoch = on_epoch
        self.interrupted = interrupted
        self.epoch_var = epoch_var
        self.steps_per_epoch = steps_per_epoch
        # Restored callback state, applied after the callbacks' own on_train_begin
        # has reset theirs.
        self.carry: tuple[list[Any], dict[str, np.ndarray]] | None = None
        # The epoch-in-progress metric sums of a mid-epoch snapshot.
        self.pending_metrics: dict[str, np.ndarray] | None = None
        # A mid-epoch snapshot's torch RNG, for the first step: torch's DataLoader
        # (Keras' torch feed) draws from that RNG as each epoch's iterator starts,
        # which the uninterrupted run did before the state was saved.
        self.pending_rng: dict[str, np.ndarray] | None = None
        self.extra_meta = extra_meta or dict
        self.on_save = on_save
        self.epoch = 0
        self.step = start_step
        self.save_seconds = 0.0
        self.saves = 0
        self._last_save_end = time.perf_counter()
        self.last_saved: tuple[int, int] | None = None
        self._saved_step = start_step
        self.saw_nan = False

    # ------------------------------------------------------------ saving
    def snapshot(self, epoch: int, step: int) -> st.Snapshot:
        arrays = st.read_variables(self.model)
        cb_meta, cb_arrays = st.callback_state(self.callbacks)
        rng_meta, rng_arrays = st.rng_state()
        arrays.update(cb_arrays)
        arrays.update(rng_arrays)
        meta = {"history": self.history, "callbacks": cb_meta, "rng": rng_meta, **self.extra_meta()}
        return st.Snapshot(epoch, step, arrays, meta)

    def save(self, epoch: int, step: int) -> None:
        if self.store is None:
            return
        t0 = time.perf_counter()
        try:
            with writing(self.store.dir):
                self.store.save(self.snapshot(epoch, step))
        except Exception:
            self._drop_unfinished()
            raise
        t1 = time.perf_counter()
        self.save_seconds += t1 - t0
        self.saves += 1
        self._last_save_end = t1
        self._saved_step = step
        self.last_saved = (epoch, step)
        if self.on_save is not None:
            self.on_save()

    def _drop_unfinished(self) -> None:
        """Remove the state directory a failed save left unfinished (no meta.json: never
        loaded). On a full disk this frees what it held, so run.json can say why."""
        for path in self.store.dir.glob("ckpt-*"):
            if path.is_dir() and not (path / st.META).is_file():
                shutil.rmtree(path, ignore_errors=True)

    def _due(self) -> bool:
        if self.every == "epoch":
            return False
        if isinstance(self.every, int):
            return (
                self.step % self.every == 0
                or self.step - (self.last_saved or (0, 0))[1] >= self.every
            )
        # 'auto': save when the time trained since the last save is 50x what a save
        # costs (about 2% overhead), and at least every 60 s.
        cost = self.save_seconds / self.saves if self.saves else 0.05
        return time.perf_counter() - self._last_save_end >= max(50 * cost, 1.0) or (
            time.perf_counter() - self._last_save_end >= 60
        )

    # ------------------------------------------------------------ hooks
    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.carry is not None:
            st.set_callback_state(self.callbacks, *self.carry)
            self.carry = None
        self._last_save_end = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch
        if self.epoch_var is not None:
            self.epoch_var.assign(epoch)
        if self.pending_metrics is not None:
            # Mid-epoch resume: the epoch's running metric sums, after fit reset them.
            st.assign_variables(self.model, self.pending_metrics, prefixes=("metrics/",))
            self.pending_metrics = None
        self.step = self._saved_step = self.start_step
        if self.interrupted():
            raise Interrupted

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.pending_rng is not None:
            st.set_torch_rng_state(self.pending_rng)
            self.pending_rng = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step = self.start_step + batch + 1
        loss = _float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            self.saw_nan = True
            return  # never persist a state that has gone NaN
        if self.steps_per_epoch and self.step >= self.steps_per_epoch:
            # The epoch's last step: what remains is validation and epoch end, which
            # a mid-epoch state cannot replay; the epoch-end save follows shortly.
            return
        if self.interrupted():
            self.save(self.epoch, self.step)
            raise Interrupted
        if self._due():
            self.save(self.epoch, self.step)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # TensorBoard buffers events for up to two minutes; a kill would lose them.
        for cb in self.callbacks:
            for writer in keras_compat.tensorboard_writers(cb):
                with writing(callback_file(cb) or "TensorBoard's log_dir"):
                    writer.flush()
        row = {"epoch": epoch, **{k: _float(v) for k, v in (logs or {}).items()}}
        self.history.append(row)
        self.start_step = 0
        if math.isfinite(row.get("loss", 0.0)):
            self.save(epoch + 1, 0)
        else:
            self.saw_nan = True
        self.on_epoch(epoch, row)
        if self.interrupted():
            raise Interrupted


def _name_failed_file(callback: Any) -> Callable[[Exception], None]:
    """A write that fails in `callback`'s hook is named after the callback's file."""

    def name(exc: Exception) -> None:
        if no_space(exc) and written_file(exc) is None:
            with contextlib.suppress(AttributeError, TypeError):
                exc.trainrun_file = callback_file(callback)  # type: ignore[attr-defined]

    return name


class OneRun(keras.callbacks.CallbackList):
    """The callbacks of one training run that may span several ``model.fit`` calls.

    A mid-epoch resume trains the rest of the interrupted epoch in one fit call
    and the remaining epochs in another. To the callbacks that is still one run:
    ``on_train_begin`` is delivered once, and ``on_train_end`` only after the
    last call (EarlyStopping restores its best weights there, which must not
    happen between the two). It also times every callback's hooks.
    """

    def __init__(self, callbacks: list[Any], model: Any) -> None:
        super().__init__(callbacks, add_history=True, add_progbar=False, model=model)
        # Time spent in each callback's hooks, by class: run.json's timing.callbacks_s.
        self.seconds: dict[str, float] = {}
        for callback in self.callbacks:
            keras_compat.time_callback_hooks(callback, self.seconds, _name_failed_file(callback))
        self.began = False
        self.ended = False
        self.hold_end = False
        self._held_logs: dict | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.began:
            self.began = True
            super().on_train_begin(logs)

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.hold_end:
            self._held_logs = logs
            return
        if self.began and not self.ended:
            self.ended = True
            super().on_train_end(logs)

    def finish(self) -> None:
        """Deliver a held on_train_end (the run ended before its last fit call)."""
        self.hold_end = False
        self.on_train_end(self._held_logs)
