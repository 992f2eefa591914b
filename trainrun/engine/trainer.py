"""The trainer of a run: build, restore, train.

A `Trainer` is made from a validated config and a run directory in stages:
``prepare`` builds data, model and callbacks and checks they fit together;
``restore`` loads saved state; ``train`` runs ``model.fit`` from there.
`trainrun.engine.fit` and `trainrun.engine.resume` make one; `trainrun.engine.outcome`
runs it to its end and records the outcome.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

import trainrun
from trainrun import keras_compat
from trainrun.builders import adapt
from trainrun.builders.callback_list import build_callbacks
from trainrun.builders.compile import compile_args
from trainrun.builders.model import build_model
from trainrun.config import LoadedConfig
from trainrun.data.feed import Feed
from trainrun.engine import checks, runtime
from trainrun.engine import state as st
from trainrun.engine.events import Events
from trainrun.engine.interrupts import InterruptFlag
from trainrun.engine.outcome import Outcome
from trainrun.engine.run_callbacks import (
    Interrupted,
    LearningRateLogger,
    NanGuard,
    OneRun,
    ProgressBridge,
    StateKeeper,
)
from trainrun.errors import ConfigError, RunDirError
from trainrun.runs.files import writing
from trainrun.runs.history import restore_csv
from trainrun.runs.record import RunRecord, Status
from trainrun.runs.rundir import RunDir, now
from trainrun.tracking.callback import TrackingCallback


@dataclass
class Trainer:
    loaded: LoadedConfig
    run: RunDir
    events: Events
    device: str | None = None
    resuming: bool = False

    rt: runtime.Runtime | None = None
    feed: Feed | None = None
    model: Any = None
    callbacks: list[Any] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    steps_per_epoch: int | None = None
    spe: int = 1
    start_epoch: int = 0
    start_step: int = 0
    snapshot: st.Snapshot | None = None
    # Preprocessing layers to adapt on the training data, and what they learnt (meta.json).
    adaptable: list[adapt.Adaptable] = field(default_factory=list)
    adapted: dict[str, Any] = field(default_factory=dict)
    adapt_lines: list[str] = field(default_factory=list)
    monitor: str = "val_loss"
    monitor_mode: str = "min"  # the way `monitor` improves, as its callback sees it
    # (epoch counted from 1, why) of the weights model.keras holds, once it is written.
    final: tuple[int, str] | None = None
    log_keys: list[str] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)  # seconds since trainrun started
    # Training seconds of earlier sessions (killed ones included, from the saved
    # state), and when this session's training began.
    train_seconds_before: float = 0.0
    train_started: float | None = None
    # What restore found and repaired (a damaged state set aside, history.csv
    # rebuilt), said once the run's log is attached.
    restore_notes: list[str] = field(default_factory=list)
    # trainrun's own StateKeeper of the current train(); None until then.
    keeper: StateKeeper | None = None
    # The run's MLflow run (trainrun.tracking.mlflow.MlflowTracker), when the config asks.
    tracker: Any = None
    _state_recorded: bool = False

    # ------------------------------------------------------------ prepare
    def prepare(self) -> None:
        """Build data, model, optimizer and callbacks; check they fit together."""
        try:
            self._prepare()
        except ConfigError as exc:
            raise self.loaded.locate(exc) from exc.__cause__

    def _prepare(self) -> None:
        self.timing["tensorflow_ready_s"] = round(time.time() - trainrun.STARTED_AT, 3)
        self.rt = self.rt or runtime.setup(self.loaded, device=self.device)
        self.feed = Feed.build(self.loaded)
        self._split_batches()
        self.steps_per_epoch = self.feed.steps_per_epoch()
        self.spe = runtime.steps_per_execution(self.loaded, self.steps_per_epoch, self.rt)
        with self.rt.strategy.scope(), checks.weights_fit_in_memory(self.loaded):
            self.model = build_model(self.loaded)
            self.adaptable = adapt.find_adaptable(self.loaded, self.model)
            self._adapt()
            self.feed.encode_labels(self.model)
            self._place_data()
            args = compile_args(self.loaded, self.model)
            self.model.compile(
                **args, jit_compile=self.rt.jit_compile, steps_per_execution=self.spe
            )
            if self.rt.backend == "jax":
                from trainrun.engine import jax_steps

                asked = self.loaded.config.compile.scan_steps
                scanned = jax_steps.install(self.model, self.spe, asked)
                self.rt.devices["scan_steps"] = scanned
                if asked is True and not scanned:
                    self.rt.notes.append(
                        "compile.scan_steps: true applies with more than one step per "
                        f"execution (this run has {self.spe}), compiled, on one device; "
                        "Keras' own steps run"
                    )
            checks.check_inputs(self.loaded, self.model, self.feed)
            checks.check_labels(self.loaded, self.model, self.feed)
            self.log_keys = checks.build_and_list_logs(self.loaded, self.model, self.feed)
            self.model.optimizer.build(self.model.trainable_variables)
        keras_compat.prepare_model(self.model, self.rt.strategy)
        self.callbacks = build_callbacks(self.loaded, self.run.path, resuming=self.resuming)
        checks.check_monitors(self.loaded, self.log_keys)
        self.monitor = checks.main_monitor(self.loaded, self.log_keys)
        self.monitor_mode = checks.monitor_direction(self.loaded, self.model, self.monitor)
        keras_compat.make_saves_atomic(self.model)
        self.timing["prepared_s"] = round(time.time() - trainrun.STARTED_AT, 3)

    def _split_batches(self) -> None:
        """JAX, over several devices (keras.distribution): every batch must split evenly,
        and each process feeds its own part of it."""
        strategy = self.rt.strategy
        if self.rt.backend != "jax" or strategy.num_replicas_in_sync < 2:
            return
        import jax

        self.feed.split_over(strategy.num_replicas_in_sync, strategy.processes, jax.process_index())

    def _place_data(self) -> None:
        """JAX: whether the in-memory data lives on the device (data.on_device)."""
        if self.rt.backend != "jax":
            return
        note = self.feed.place()
        self.rt.devices["data_on_device"] = self.feed.on_device
        if note:
            self.rt.notes.append(note)

    def _adapt(self) -> None:
        """Adapt the preprocessing layers on the training data, before anything calls
        the model; a resumed run takes what they learnt from its state instead."""
        if not self.adaptable:
            return
        saved = _saved_adapted(self.run.state_dir) if self.resuming else None
        if saved is not None:
            adapt.restore_adapted(self.adaptable, saved)
            self.adapted = saved
        else:
            self.adapt_lines = adapt.adapt_layers(self.adaptable, self.feed)
            self.adapted = adapt.adapted_state(self.adaptable)

    # ------------------------------------------------------------ restore
    def restore(self, record: RunRecord | None = None, at: tuple[int, int] | None = None) -> bool:
        """Load the latest usable saved state, if any. Returns whether there was one.

        A damaged newest state is set aside (renamed, kept) and the previous one
        used; with no usable state, a run that has made progress is refused
        rather than silently started over. `at`: the newest state at or before
        that (epoch, step) (what every worker of a cluster has).
        """
        record = record or RunRecord()
        store = st.StateStore(self.run.state_dir)
        snap = store.load(
            max_epoch=self.loaded.config.fit.epochs, check=self._check_snapshot, at=at
        )
        if snap is None:
            progress = self.run.progress(record)
            if progress:
                raise RunDirError(
                    f"{self.run.state_dir} holds no saved state, but {progress}; resuming "
                    "from the start would silently drop that progress, so it is refused. Put "
                    f"back state/ from a backup, or train again as a new run: "
                    f"trainrun fit {self.run.config_file}"
                )
            return False
        for path, why in store.skipped:
            kept = store.set_aside(path)
            self.restore_notes.append(
                f"saved state {path.name} is damaged ({why}); continuing from the one "
                f"before it; the damaged one is kept as {kept.relative_to(self.run.path)}"
            )
        st.assign_variables(self.model, snap.arrays, prefixes=("model/", "optimizer/"))
        adapt.restore_adapted(self.adaptable, snap.meta.get("adapted"))
        self.adapted = snap.meta.get("adapted") or {}
        st.set_rng_state(snap.meta.get("rng", {}), snap.arrays)
        self.history = [row for row in snap.meta.get("history", []) if row["epoch"] < snap.epoch]
        self.start_epoch, self.start_step = snap.epoch, snap.step
        self.snapshot = snap
        self.train_seconds_before = max(
            record.train_seconds or 0.0, _seconds(snap.meta.get("train_seconds"))
        )
        for cb in self.callbacks:  # history.csv and any other CSVLogger file
            if isinstance(cb, keras.callbacks.CSVLogger):
                note = restore_csv(Path(cb.filename), cb.sep, self.history)
                if note:
                    self.restore_notes.append(note)
        return True

    def _check_snapshot(self, snap: st.Snapshot) -> str | None:
        """Why `snap` cannot continue this run's model, or None."""
        if self.steps_per_epoch and snap.step >= self.steps_per_epoch:
            return f"step {snap.step} is beyond the epoch's {self.steps_per_epoch} steps"
        prefixes = ("model/", "optimizer/", "metrics/") if snap.step else ("model/", "optimizer/")
        for key, var in st.training_variables(self.model).items():
            if not key.startswith(prefixes):
                continue
            value = snap.arrays.get(key)
            if value is None:
                return f"no value for {key} ({var.path}); does config.yaml still describe this run?"
            if tuple(value.shape) != tuple(var.shape):
                return (
                    f"{key} ({var.path}) has shape {tuple(value.shape)}, the model has "
                    f"{tuple(var.shape)}; does config.yaml still describe this run?"
                )
        for i, entry in enumerate(snap.meta.get("callbacks", [])):
            n = entry.get("best_weights")
            if n is None:
                continue
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                return f"callbacks[{i}].best_weights is {n!r}"
            missing = [j for j in range(n) if f"callbacks/{i}/best_weights/{j}" not in snap.arrays]
            if missing:
                return f"callbacks[{i}] best weights {missing[:3]} are missing from arrays.npz"
        return None

    def train_seconds(self) -> float:
        """Training time of the whole run so far, this session's included."""
        running = time.perf_counter() - self.train_started if self.train_started else 0.0
        return self.train_seconds_before + running

    def _on_save(self) -> None:
        if not self._state_recorded:  # once a session: a run with progress must not restart
            self._state_recorded = True
            with writing(self.run.run_json):
                self.run.update_record(state_saved=True)

    # ------------------------------------------------------------ train
    def train(self, interrupted: InterruptFlag) -> Outcome:
        cfg = self.loaded.config
        epochs = cfg.fit.epochs
        for line in self.adapt_lines:
            self.events.info(line)
        epoch_var = self.feed.epoch_counter(self.start_epoch)
        # Every worker saves (saving reads synchronised variables: a collective), each
        # into its own run directory; a non-chief's is <chief run>/<task>/.
        store = st.StateStore(self.run.state_dir) if cfg.outputs.state else None
        keeper = StateKeeper(
            store=store,
            callbacks=self.callbacks,
            history=self.history,
            every=self.rt.state_every(cfg.outputs.state_every),
            start_step=self.start_step,
            on_epoch=self._on_epoch,
            interrupted=interrupted,
            epoch_var=epoch_var,
            steps_per_epoch=self.steps_per_epoch,
            extra_meta=lambda: {
                "monitor": self.monitor,
                "train_seconds": round(self.train_seconds(), 3),
                "adapted": self.adapted,
            },
            on_save=self._on_save,
        )
        if self.snapshot is not None:
            keeper.carry = (self.snapshot.meta.get("callbacks", []), self.snapshot.arrays)
            if self.start_step:
                keeper.pending_metrics = keeper.pending_rng = self.snapshot.arrays
        progress = ProgressBridge(
            self.events, epochs, self.steps_per_epoch, self.start_step, self.timing
        )
        # A NaN loss fails the run unless the user chose TerminateOnNaN's stop.
        guard = (
            []
            if any(isinstance(cb, keras.callbacks.TerminateOnNaN) for cb in self.callbacks)
            else [NanGuard(self.start_step)]
        )
        tracking = [TrackingCallback(self.tracker, self.history)] if self.tracker else []
        run_callbacks = OneRun(
            [*guard, LearningRateLogger(), *self.callbacks, progress, keeper, *tracking],
            self.model,
        )
        self.keeper = keeper
        if self.start_epoch >= epochs:
            # Every epoch was trained and saved, but the run ended before its end
            # (killed, or the final model could not be written): the callbacks'
            # on_train_end (EarlyStopping's restore_best_weights) is still due.
            run_callbacks.on_train_begin()
            run_callbacks.finish()
            return self._outcome()
        validation = self.feed.validation_batches()
        fit_kw = {
            "validation_data": validation,
            "validation_steps": cfg.fit.validation_steps,
            "validation_freq": cfg.fit.validation_freq,
            "class_weight": {int(k): float(v) for k, v in cfg.fit.class_weight.items()}
            if cfg.fit.class_weight
            else None,
            "callbacks": run_callbacks,
            "shuffle": False,  # the pipeline shuffles, in an order resume can reproduce
            "verbose": 0,
        }
        self.events.start_training(
            initial_epoch=self.start_epoch, epochs=epochs, steps=self.steps_per_epoch
        )
        try:
            epoch = self.start_epoch
            if self.start_step:
                # The rest of the interrupted epoch, as its own fit call.
                ds, steps = self.feed.train_batches(
                    epoch, self.start_step, partial=True, epoch_var=epoch_var
                )
                run_callbacks.hold_end = epoch + 1 < epochs
                run_callbacks.set_params(
                    {"verbose": 0, "epochs": epochs, "steps": steps or self.steps_per_epoch}
                )
                self.model.fit(
                    ds, epochs=epoch + 1, initial_epoch=epoch, steps_per_epoch=steps, **fit_kw
                )
                epoch += 1
                keeper.start_step = progress.start_step = 0
            if epoch < epochs and not self.model.stop_training:
                ds, steps = self.feed.train_batches(epoch, 0, partial=False, epoch_var=epoch_var)
                run_callbacks.hold_end = False
                run_callbacks.set_params(
                    {"verbose": 0, "epochs": epochs, "steps": steps or self.steps_per_epoch}
                )
                self.model.fit(
                    ds, epochs=epochs, initial_epoch=epoch, steps_per_epoch=steps, **fit_kw
                )
            run_callbacks.finish()
        except Interrupted:
            return Outcome(Status.INTERRUPTED, exit_code=130)
        except KeyboardInterrupt:
            return Outcome(Status.INTERRUPTED, exit_code=130)
        finally:
            self.events.stop_training()
            self.timing["callbacks_s"] = {
                name: round(seconds, 4) for name, seconds in run_callbacks.seconds.items()
            }
        return self._outcome()

    def _outcome(self) -> Outcome:
        if (
            self.keeper is not None and self.keeper.saw_nan
        ):  # only with TerminateOnNaN listed: NanGuard fails the run first
            nan = next(
                (r["epoch"] + 1 for r in self.history if not math.isfinite(r.get("loss", 0.0))),
                None,
            )
            at = f" at epoch {nan}" if nan else ""
            return Outcome(
                Status.FAILED,
                error=f"loss became NaN{at}; training stopped (TerminateOnNaN)",
                exit_code=1,
            )
        stopped = (
            len(self.history) and self.history[-1]["epoch"] + 1 < self.loaded.config.fit.epochs
        )
        return Outcome(Status.STOPPED_EARLY if stopped else Status.COMPLETED)

    def _on_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        with writing(self.run.run_json):
            self.run.update_record(
                epochs_done=epoch + 1,
                best=self.best(),
                updated=now(),
                train_seconds=round(self.train_seconds(), 3),
            )

    def best(self) -> dict[str, Any] | None:
        rows = [r for r in self.history if self.monitor in r and math.isfinite(r[self.monitor])]
        if not rows:
            return None
        pick = max if self.monitor_mode == "max" else min
        row = pick(rows, key=lambda r: r[self.monitor])  # the first of equal values
        return {
            "monitor": self.monitor,
            "value": row[self.monitor],
            "epoch": row["epoch"] + 1,
            "mode": self.monitor_mode,
        }

    def final_weights(self) -> tuple[int, str] | None:
        """(epoch counted from 1, why) of the weights the model holds after training.

        EarlyStopping with restore_best_weights puts back its own best epoch at
        train end, chosen by its monitor, min_delta and start_from_epoch, which
        may differ from `best()`; several such callbacks restore in list order,
        so the last one's epoch stays. Otherwise the weights are the last epoch's.
        """
        if not self.history:
            return None
        restorers = [
            cb
            for cb in self.callbacks
            if isinstance(cb, keras.callbacks.EarlyStopping)
            and cb.restore_best_weights
            and cb.best_weights is not None
        ]
        if restorers:
            return restorers[-1].best_epoch + 1, "EarlyStopping restore_best_weights"
        return self.history[-1]["epoch"] + 1, "last epoch"

    # ------------------------------------------------------------ finish
    def save_final_model(self) -> None:
        if self.loaded.config.outputs.final_model:
            self.model.save(str(self.run.model_file))


def _saved_adapted(state_dir: Path) -> dict[str, Any] | None:
    """What the adapted layers learnt, from the newest state that says (restore()
    checks it again against the state it picks)."""
    store = st.StateStore(state_dir)
    latest = store._latest_name()
    for path in sorted(store._complete(), key=lambda p: (p.name == latest, p.name), reverse=True):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            adapted = json.loads((path / st.META).read_text()).get("adapted")
            if isinstance(adapted, dict):
                return adapted
    return None


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0
