"""One training path for `fit` and `resume`.

A `Session` is built from a validated config and a run directory in stages
(``prepare`` builds data, model and callbacks and checks they fit together;
``restore`` loads saved state; ``train`` runs ``model.fit``; ``finish`` writes
the final model and run.json). `fit` and `resume` differ only in where the run
directory and the starting point come from.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import trainrun
from trainrun.builders import adapt
from trainrun.builders.callback_list import build_callbacks
from trainrun.builders.compile import compile_args
from trainrun.builders.model import build_model
from trainrun.config import LoadedConfig
from trainrun.console import Reporter, fmt_value
from trainrun.data import Data, build_data, encode_labels
from trainrun.data import pipeline as pl
from trainrun.data.arrays import ArraySplit
from trainrun.engine import checks, keras_compat, runtime
from trainrun.engine import state as st
from trainrun.engine.run_callbacks import (
    Interrupted,
    LearningRateLogger,
    NanGuard,
    OneRun,
    ProgressBridge,
    StateKeeper,
)
from trainrun.errors import ConfigError, RunDirError, RunError
from trainrun.runs.files import no_space, write_atomic, writing, written_file
from trainrun.runs.rundir import RunDir, now

MAX_MODES = ("acc", "accuracy", "auc", "precision", "recall", "f1", "iou")


def monitor_mode(monitor: str) -> str:
    base = monitor.removeprefix("val_")
    return (
        "max" if any(base == m or base.endswith(f"_{m}") or m in base for m in MAX_MODES) else "min"
    )


@dataclass
class Outcome:
    status: str  # completed | stopped_early | interrupted | failed
    error: str | None = None
    exit_code: int = 0


class InterruptFlag:
    """SIGINT/SIGTERM -> finish the step, save, exit 130. A second Ctrl-C exits at once.

    Held from the start of training until the outcome is in run.json, the final
    model's save included, so that a signal never cuts those writes. After that
    the run's files are complete, and a signal (a second Ctrl-C while the process
    prints its summary or flushes at exit, say) exits at once, with no traceback.
    """

    def __init__(self, on_hard_exit: Any) -> None:
        self.raised = False
        self.on_hard_exit = on_hard_exit

    def __call__(self) -> bool:
        return self.raised

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            with contextlib.suppress(Exception):
                self.on_hard_exit()
            exit_at_once()
        self.raised = True

    def __enter__(self) -> InterruptFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_on_signal)


def exit_at_once() -> None:
    """Leave now with 130: what is on disk is consistent, only buffered output is flushed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)


def _exit_on_signal(signum: int, frame: Any) -> None:
    exit_at_once()


@dataclass
class Session:
    loaded: LoadedConfig
    run: RunDir
    reporter: Reporter
    device: str | None = None
    resuming: bool = False

    rt: runtime.Runtime | None = None
    data: Data | None = None
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
    _state_recorded: bool = False

    # ------------------------------------------------------------ prepare
    def prepare(self) -> None:
        """Build data, model, optimizer and callbacks; check they fit together."""
        try:
            self._prepare()
        except ConfigError as exc:
            raise self.loaded.locate(exc) from exc.__cause__

    def _prepare(self) -> None:
        cfg = self.loaded.config
        self.timing["tensorflow_ready_s"] = round(time.time() - trainrun.STARTED_AT, 3)
        self.rt = self.rt or runtime.setup(self.loaded, device=self.device)
        self.data = build_data(self.loaded)
        train = self.data.train
        if isinstance(train, ArraySplit):
            if len(train) == 0:
                raise self.loaded.error("the training data is empty", ("data",))
            self.steps_per_epoch = cfg.fit.steps_per_epoch or pl.steps_per_pass(
                train, cfg.fit.batch_size
            )
        else:
            self.steps_per_epoch = cfg.fit.steps_per_epoch or _cardinality(train)
        self.spe = runtime.steps_per_execution(self.loaded, self.steps_per_epoch, self.rt)
        with self.rt.strategy.scope(), checks.weights_fit_in_memory(self.loaded):
            self.model = build_model(self.loaded)
            self.adaptable = adapt.find_adaptable(self.loaded, self.model)
            self._adapt()
            self.data = encode_labels(self.loaded, self.data, self.model)
            args = compile_args(self.loaded, self.model)
            self.model.compile(
                **args, jit_compile=self.rt.jit_compile, steps_per_execution=self.spe
            )
            checks.check_inputs(self.loaded, self.model, self.data)
            checks.check_labels(self.loaded, self.model, self.data)
            self.log_keys = checks.build_and_list_logs(self.loaded, self.model, self.data)
            self.model.optimizer.build(self.model.trainable_variables)
        keras_compat.prepare_model(self.model, self.rt.strategy)
        self.callbacks = build_callbacks(self.loaded, self.run.path, resuming=self.resuming)
        checks.check_monitors(self.loaded, self.log_keys)
        self.monitor = checks.main_monitor(self.loaded, self.log_keys)
        self.monitor_mode = checks.monitor_direction(self.loaded, self.model, self.monitor)
        _atomic_saves(self.model)
        self.timing["prepared_s"] = round(time.time() - trainrun.STARTED_AT, 3)

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
            self.adapt_lines = adapt.adapt_layers(self.adaptable, self.data)
            self.adapted = adapt.adapted_state(self.adaptable)

    # ------------------------------------------------------------ restore
    def restore(self, info: dict[str, Any] | None = None) -> bool:
        """Load the latest usable saved state, if any. Returns whether there was one.

        A damaged newest state is set aside (renamed, kept) and the previous one
        used; with no usable state, a run that has made progress is refused
        rather than silently started over.
        """
        info = info or {}
        store = st.StateStore(self.run.state_dir)
        snap = store.load(max_epoch=self.loaded.config.fit.epochs, check=self._check_snapshot)
        if snap is None:
            progress = self.run.progress(info)
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
            _seconds(info.get("train_seconds")), _seconds(snap.meta.get("train_seconds"))
        )
        for cb in self.callbacks:  # history.csv and any other CSVLogger file
            if isinstance(cb, keras.callbacks.CSVLogger):
                note = _restore_csv(Path(cb.filename), cb.sep, self.history)
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
                self.run.update_info(state_saved=True)

    # ------------------------------------------------------------ datasets
    def _train_data(
        self, epoch: int, step: int, *, partial: bool, epoch_var: Any
    ) -> tuple[Any, int | None]:
        """(dataset, steps_per_epoch for fit) starting at (epoch, step)."""
        cfg = self.loaded.config
        train = self.data.train
        if not isinstance(train, ArraySplit):
            return (train.skip(step) if partial else train), cfg.fit.steps_per_epoch
        kw = {
            "batch_size": cfg.fit.batch_size,
            "shuffle": cfg.fit.shuffle,
            "seed": cfg.seed or 0,
            "scale": self.data.scale,
        }
        if cfg.fit.steps_per_epoch:
            # Keras semantics: one iterator runs on across epochs.
            spe_user = cfg.fit.steps_per_epoch
            ds = pl.batches(train, start_batch=epoch * spe_user + step, repeat=True, **kw)
            return ds, (spe_user - step) if partial else spe_user
        if partial:
            return pl.batches(train, start_batch=epoch * self.steps_per_epoch + step, **kw), None
        return pl.epoch_batches(train, epoch_var=epoch_var, **kw), None

    def _validation_data(self) -> Any:
        val = self.data.validation
        if val is None:
            return None
        if isinstance(val, ArraySplit):
            return pl.batches(
                val, batch_size=self.loaded.config.fit.eval_batch_size(), scale=self.data.scale
            )
        return val

    # ------------------------------------------------------------ train
    def train(self, interrupted: InterruptFlag) -> Outcome:
        cfg = self.loaded.config
        epochs = cfg.fit.epochs
        for line in self.adapt_lines:
            self.reporter.info(line)
        epoch_var = tf.Variable(self.start_epoch, dtype=tf.int64, trainable=False)
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
                keeper.pending_metrics = self.snapshot.arrays
        progress = ProgressBridge(
            self.reporter, epochs, self.steps_per_epoch, self.start_step, self.timing
        )
        # A NaN loss fails the run unless the user chose TerminateOnNaN's stop.
        guard = (
            []
            if any(isinstance(cb, keras.callbacks.TerminateOnNaN) for cb in self.callbacks)
            else [NanGuard(self.start_step)]
        )
        run_callbacks = OneRun(
            [*guard, LearningRateLogger(), *self.callbacks, progress, keeper], self.model
        )
        self.keeper = keeper
        if self.start_epoch >= epochs:
            # Every epoch was trained and saved, but the run ended before its end
            # (killed, or the final model could not be written): the callbacks'
            # on_train_end (EarlyStopping's restore_best_weights) is still due.
            run_callbacks.on_train_begin()
            run_callbacks.finish()
            return self._outcome()
        validation = self._validation_data()
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
        self.reporter.start_training(
            initial_epoch=self.start_epoch, epochs=epochs, steps=self.steps_per_epoch
        )
        try:
            epoch = self.start_epoch
            if self.start_step:
                # The rest of the interrupted epoch, as its own fit call.
                ds, steps = self._train_data(
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
                ds, steps = self._train_data(epoch, 0, partial=False, epoch_var=epoch_var)
                run_callbacks.hold_end = False
                run_callbacks.set_params(
                    {"verbose": 0, "epochs": epochs, "steps": steps or self.steps_per_epoch}
                )
                self.model.fit(
                    ds, epochs=epochs, initial_epoch=epoch, steps_per_epoch=steps, **fit_kw
                )
            run_callbacks.finish()
        except Interrupted:
            return Outcome("interrupted", exit_code=130)
        except KeyboardInterrupt:
            return Outcome("interrupted", exit_code=130)
        finally:
            self.reporter.stop_training()
            self.timing["callbacks_s"] = {
                name: round(seconds, 4) for name, seconds in run_callbacks.seconds.items()
            }
        return self._outcome()

    def _outcome(self) -> Outcome:
        if _nan_stopped(self):  # only with TerminateOnNaN listed: NanGuard fails the run first
            nan = next(
                (r["epoch"] + 1 for r in self.history if not math.isfinite(r.get("loss", 0.0))),
                None,
            )
            at = f" at epoch {nan}" if nan else ""
            return Outcome(
                "failed",
                error=f"loss became NaN{at}; training stopped (TerminateOnNaN)",
                exit_code=1,
            )
        stopped = (
            len(self.history) and self.history[-1]["epoch"] + 1 < self.loaded.config.fit.epochs
        )
        return Outcome("stopped_early" if stopped else "completed")

    def _on_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        with writing(self.run.run_json):
            self.run.update_info(
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

    def summary_rows(self, outcome: Outcome, seconds: float) -> list[tuple[str, str]]:
        rows = [
            ("status", outcome.status),
            (
                "epochs",
                f"{len(self.history) and self.history[-1]['epoch'] + 1}/{self.loaded.config.fit.epochs}",
            ),
        ]
        best = self.best()
        if best:
            rows.append(
                ("best", f"{best['monitor']} {fmt_value(best['value'])} at epoch {best['epoch']}")
            )
        if self.final:
            rows.append(("final model", f"weights of epoch {self.final[0]} ({self.final[1]})"))
        if self.history:
            last = self.history[-1]
            rows.append(
                (
                    "last epoch",
                    "  ".join(f"{k} {fmt_value(v)}" for k, v in last.items() if k != "epoch"),
                )
            )
        rows.append(("time", f"{seconds:.1f}s"))
        rows.append(("run", str(self.run.path)))
        if self.loaded.config.outputs.state:
            if outcome.status in ("interrupted", "failed"):
                rows.append(("resume", f"trainrun resume {self.run.path}"))
            else:
                more = self.loaded.config.fit.epochs + 10
                rows.append(("train on", f"trainrun resume {self.run.path} --epochs {more}"))
        if outcome.status in ("completed", "stopped_early"):
            rows.append(("evaluate", f"trainrun evaluate {self.run.path}"))
        return rows


# ---------------------------------------------------------------- helpers


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


def _cardinality(ds: Any) -> int | None:
    n = int(ds.cardinality().numpy())
    return n if n > 0 else None


def _nan_stopped(session: Session) -> bool:
    keeper = getattr(session, "keeper", None)
    return bool(keeper and keeper.saw_nan)


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else 0.0


def _restore_csv(path: Path, sep: str, history: list[dict[str, Any]]) -> str | None:
    """Make a CSVLogger file hold exactly the saved epochs' rows, as CSVLogger wrote them.

    Rows of epochs after the saved state (written, then lost to a kill) are
    dropped, keeping the file's own bytes. A file that is missing, truncated
    or lacks rows the state has is rebuilt from the state's history in
    CSVLogger's format (excel dialect: CRLF line ends); returns a note
    saying so.
    """
    raw = path.read_bytes() if path.is_file() else b""
    lines = raw.splitlines(keepends=True)
    epochs = _csv_epochs(lines, sep)
    n = len(history)
    if epochs is not None and epochs[:n] == list(range(n)):
        if len(epochs) > n:
            write_atomic(path, b"".join(lines[: n + 1]))
        return None
    if not history:
        if raw:
            write_atomic(path, b"")  # CSVLogger writes the header into an empty file
        return None
    write_atomic(path, _csv_text(history, sep))
    what = "missing or empty" if not raw else "damaged or short"
    return f"{path.name} was {what}; rebuilt its {n} row(s) from the saved state"


def _csv_epochs(lines: list[bytes], sep: str) -> list[int] | None:
    """The epoch of each row, or None when the file is not whole (no header, a cut line)."""
    if not lines or not all(line.endswith(b"\n") for line in lines):
        return None
    try:
        rows = list(csv.reader([line.decode("utf-8") for line in lines], delimiter=sep))
    except (UnicodeDecodeError, csv.Error):
        return None
    header = rows[0]
    if "epoch" not in header or any(len(r) != len(header) for r in rows[1:]):
        return None
    i = header.index("epoch")
    if not all(r[i].isdigit() for r in rows[1:]):
        return None
    return [int(r[i]) for r in rows[1:]]


def _csv_text(history: list[dict[str, Any]], sep: str) -> str:
    """`history` as Keras' CSVLogger writes it (the same keys, order, values and line ends)."""
    keys = sorted(k for k in history[0] if k != "epoch")
    if not any(k.startswith("val_") for k in keys):
        keys.extend(f"val_{k}" for k in list(keys))

    class Dialect(csv.excel):
        delimiter = sep

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["epoch", *keys], dialect=Dialect)
    writer.writeheader()
    for row in history:
        writer.writerow({"epoch": row["epoch"], **{k: row.get(k, "NA") for k in keys}})
    return buf.getvalue()


def _atomic_saves(model: Any) -> None:
    """Make model.save / save_weights write a temp file and rename it into place.

    Keras writes .keras and .weights.h5 files in place, so a kill during
    ModelCheckpoint's save would destroy the previous good checkpoint.
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


def failure_message(exc: BaseException) -> str:
    """'ValueError: ... (in my_callbacks.py line 12)': the user's frame if there is one."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [
        f
        for f in frames
        if not any(
            part in f.filename
            for part in ("site-packages", "dist-packages", "/trainrun/", "<frozen")
        )
    ]
    where = f" (in {Path(user[-1].filename).name} line {user[-1].lineno})" if user else ""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1 and text.endswith(":"):
        # TensorFlow's "Graph execution error:" lists where the op was defined,
        # then the cause, then the failing node ("[[{{node ...}}]]").
        causes = [
            line for line in lines[1:] if not line.startswith(("File ", "[[", "Detected at node"))
        ]
        cause = (causes or lines)[-1]
        text = f"{text} {cause[:300]}"
    return f"{type(exc).__name__}: {text}{where}"


def disk_full_message(session: Session, exc: BaseException) -> str:
    """'disk full while writing <file>: free space and run trainrun resume <run>'."""
    where = written_file(exc) or str(session.run.path)
    if session.loaded.config.outputs.state:
        then = f"trainrun resume {session.run.path}"
    else:  # no resume state: the run can only be trained again
        then = f"trainrun fit {session.run.config_file} (outputs.state is false: no resume)"
    return f"disk full while writing {where}: free space and run {then}"


def _failure(session: Session, exc: BaseException) -> Outcome:
    """The outcome of an exception that ended training or its final writes."""
    if isinstance(exc, RunError):
        return Outcome("failed", error=exc.message, exit_code=1)
    if no_space(exc):
        # The traceback says no more than the message; train.log may be unwritable now.
        _drop_log(session.reporter)
        return Outcome("failed", error=disk_full_message(session, exc), exit_code=1)
    with contextlib.suppress(OSError):
        session.reporter.to_log(traceback.format_exc())
    if isinstance(exc, OSError) and written_file(exc):
        why = exc.strerror or str(exc)
        return Outcome(
            "failed",
            error=f"cannot write {written_file(exc)}: {why}; fix that and run "
            f"trainrun resume {session.run.path}",
            exit_code=1,
        )
    return Outcome("failed", error=failure_message(exc), exit_code=1)


def _final_fields(final: tuple[int, str] | None) -> dict[str, Any]:
    """run.json's record of model.keras' weights; left as it was when no model was
    written now (a model.keras from an earlier session is still what it says)."""
    if final is None:
        return {}
    return {"final_weights_epoch": final[0], "final_weights_source": final[1]}


def _drop_log(reporter: Reporter) -> None:
    """Stop writing train.log (its disk is full): what it buffered cannot be written."""
    with contextlib.suppress(Exception):
        reporter.detach_log()
    reporter.log = None


def run_session(session: Session, *, fresh: bool) -> Outcome:
    """Train, save the final model and record the outcome in run.json and train.log.
    Shared by fit and resume.

    Nothing here leaves a traceback: a failure becomes a `failed` outcome with its
    cause (a full disk named with the file it was writing). When run.json itself
    cannot be written, it keeps saying `running` with this process's pid, which
    `trainrun runs` shows as killed once the process is gone: resumable either way.
    """
    run = session.run
    session.train_started = time.perf_counter()

    def mark_interrupted() -> None:
        run.update_info(status="interrupted", finished=now(), pid=None)

    outcome: Outcome
    with InterruptFlag(mark_interrupted) as flag:
        with session.reporter.capture_output():
            try:
                outcome = session.train(flag)
            except Exception as exc:  # a failure at run time: user code, OOM, bad labels
                outcome = _failure(session, exc)
        # The clock stops with training (the final model's save is not training time).
        session.train_seconds_before, session.train_started = session.train_seconds(), None
        if outcome.status in ("completed", "stopped_early"):
            try:
                with writing(run.model_file):
                    session.save_final_model()
                if session.loaded.config.outputs.final_model:
                    session.final = session.final_weights()
            except Exception as exc:
                outcome = _failure(session, exc)
        if flag() and outcome.status in ("completed", "stopped_early"):
            # Ctrl-C after the last epoch: nothing was left to interrupt.
            session.reporter.warn(
                "interrupted after the last epoch; the run had finished and is saved"
            )
        keeper = getattr(session, "keeper", None)
        try:
            with writing(run.run_json):
                run.update_info(
                    status=outcome.status,
                    error=outcome.error,
                    finished=now(),
                    epochs_done=len(session.history) and session.history[-1]["epoch"] + 1,
                    best=session.best(),
                    **_final_fields(session.final),
                    pid=None,
                    train_seconds=round(session.train_seconds(), 3),
                    state_saves=getattr(keeper, "saves", 0),
                    state_seconds=round(getattr(keeper, "save_seconds", 0.0), 3),
                    timing=session.timing,
                )
        except Exception as exc:
            if outcome.status == "failed":
                return outcome  # the first cause is the one to report
            outcome = _failure(session, exc)
    return outcome
