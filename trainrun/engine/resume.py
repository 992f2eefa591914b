"""`trainrun resume`: continue a run in its own directory from its last saved state."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from trainrun import signals
from trainrun.cluster import own_run_ref
from trainrun.config import dump_config, load_config
from trainrun.engine import state as st
from trainrun.engine.events import Events
from trainrun.engine.fit import finish, report_start
from trainrun.engine.outcome import Outcome, run_to_end
from trainrun.engine.trainer import Trainer
from trainrun.errors import RunDirError, RunError, TrainrunError
from trainrun.runs.files import no_space, writing, written_file
from trainrun.runs.provenance import Change, check_unchanged
from trainrun.runs.record import RunRecord, Status
from trainrun.runs.rundir import RunDir, now
from trainrun.tracking.mlflow import MlflowTracker


def _common_position(trainer: Trainer, record: RunRecord) -> tuple[int, int] | None:
    """The newest (epoch, step) whose saved state every worker has (a collective; None
    when not multi-worker, or no worker has a state yet).

    A worker killed mid-epoch may have saved one state fewer than the others, which ran
    on until the next collective failed: all then resume from the one they share (the
    states of synchronised workers at one step are equal). With none in common every
    worker refuses here, before any restores: on JAX, restoring different values
    fails inside a collective."""
    rt = trainer.rt
    if not rt.multi_worker:
        return None
    mine = st.StateStore(trainer.run.state_dir).positions()
    texts = rt.worker_values(",".join(f"{epoch}:{step}" for epoch, step in mine))
    held = [{_position(p) for p in text.split(",") if p} for text in texts]
    common = set.intersection(*held) if held else set()
    if common:
        at = max(common)
        if mine[0] != at:
            trainer.restore_notes.append(
                f"this worker saved up to epoch {mine[0][0] + 1}, step {mine[0][1]}, another "
                f"only to epoch {at[0] + 1}, step {at[1]}: every worker resumes from there"
            )
        return at
    if not any(held):
        return None  # no state anywhere: every worker starts at the beginning
    if not mine:
        trainer.run.check_state_present(record)  # this worker's own reason, if it has one
    raise _states_differ(
        {f"epoch {max(h)[0] + 1}, step {max(h)[1]}" if h else "no usable state" for h in held},
        "none is saved by all",
    )


def _states_differ(seen: set[str], why: str = "") -> RunDirError:
    return RunDirError(
        f"the workers' saved states differ ({' / '.join(sorted(seen))}){'; ' + why if why else ''}"
        "; resume needs every worker's state from the same step: copy the chief's "
        "runs/<id>/state/ over each worker's runs/<id>/worker-<i>/state/ (synchronised "
        "workers save equal states)"
    )


def _position(text: str) -> tuple[int, int]:
    epoch, step = text.split(":")
    return int(epoch), int(step)


def _check_workers_agree(trainer: Trainer, unusable: RunDirError | None = None) -> None:
    """All workers must resume from the same step, each from its own saved state.

    `unusable`: why this worker's state cannot be resumed from; the others hear
    it too, so that every worker fails instead of waiting on this one.
    """
    rt = trainer.rt
    if not rt.multi_worker:
        if unusable is not None:
            raise unusable
        return
    own_dir = rt.is_chief or trainer.run.path.name == rt.task.name
    here = f"epoch {trainer.start_epoch + 1}, step {trainer.start_step}"
    if unusable is not None:
        here = f"{rt.task.name}: no usable state"
    # Gathered before raising, so that every worker fails instead of waiting on this one.
    seen = rt.worker_values(here if own_dir else f"no {rt.task.name}/ directory")
    if unusable is not None:
        raise unusable
    if not own_dir:
        raise RunDirError(
            f"{trainer.run.path / rt.task.name} not found: a non-chief worker resumes from its "
            "own directory; run `trainrun resume runs/<id>` on each worker where it trained"
        )
    if len(seen) > 1:
        raise _states_differ(seen)


def _start_resume(
    run: RunDir,
    *,
    epochs: int | None,
    device: str | None,
    events: Events,
    allow_changed: bool = False,
    changed: list[Change] | None = None,
) -> Trainer:
    """Load, check and restore a run under its lock; record the resume in run.json.
    `changed`: what the caller's provenance check found (None: not checked yet)."""
    record = run.read_record()  # read under the lock: no other process changes it now
    overrides = [f"fit.epochs={epochs}"] if epochs is not None else []
    loaded = load_config(run.config_file, overrides)
    if loaded.config.seed is None:
        raise RunDirError(f"{run.config_file} has no seed; it was not written by trainrun fit")
    multi_worker = loaded.config.distribute == "multi_worker"
    run.check_resumable(record, epochs, state=not multi_worker)
    if changed is None:
        changed = check_unchanged(run.path, record, run.config_file, allow=allow_changed)
        for change in changed:
            events.warn(
                f"changed since the run started: {change.what}: {change.then} -> {change.now}"
            )
    trainer = Trainer(loaded, run, events, device=device, resuming=True)
    with signals.deferred():  # raised as building ends, not inside TensorFlow's C++
        trainer.prepare()
    at = _common_position(trainer, record)
    try:
        if multi_worker:
            run.check_state_present(record)
        restored = trainer.restore(record, at=at)
        unusable = None
    except RunDirError as exc:
        if not trainer.rt.multi_worker:
            raise
        restored, unusable = False, exc  # told to the other workers first, then raised
    _check_workers_agree(trainer, unusable)
    if trainer.rt.is_chief:  # before the run's files change: a store that fails leaves it as it was
        trainer.tracker = MlflowTracker.reopen(loaded, record.tracking, run, events)
    signals.raise_if_received()  # before the run's files change: it is left as it was
    if record.status is Status.STOPPED_EARLY and epochs is not None:
        trainer.model.stop_training = False
    if epochs is not None:
        with writing(run.config_file):
            run.write_config(dump_config(loaded))
    with writing(run.train_log):
        events.attach_log(run.train_log)
        report_start(events, trainer, "resume")
    for note in trainer.restore_notes:
        events.warn(note)
    where = (
        f"epoch {trainer.start_epoch + 1}, step {trainer.start_step}"
        if restored
        else "the start (no saved state)"
    )
    events.info(f"resuming from {where}")
    resumes = [
        *record.resumes,
        {
            "at": now(),
            "from_epoch": trainer.start_epoch,
            "from_step": trainer.start_step,
            "previous_status": record.raw("status"),
            "epochs": loaded.config.fit.epochs,
            **({"repairs": trainer.restore_notes} if trainer.restore_notes else {}),
            **({"changed": [c.to_json() for c in changed]} if changed else {}),
        },
    ]
    with writing(run.run_json):
        run.update_record(
            status=Status.RUNNING,
            error=None,
            finished=None,
            pid=os.getpid(),
            resumes=resumes,
            epochs=loaded.config.fit.epochs,
            devices=trainer.rt.devices,
            **({"tracking": trainer.tracker.record()} if trainer.tracker else {}),
        )
    return trainer


def _resume_write_error(exc: Exception, run: RunDir) -> None:
    """A run that could not be written while resuming: one message, not a traceback.
    run.json is written atomically, so the run is as it was."""
    if no_space(exc):
        raise RunError(
            f"disk full while writing {written_file(exc) or run.path}: free space and run "
            f"trainrun resume {run.path} again"
        ) from None
    if isinstance(exc, OSError) and written_file(exc):
        raise RunError(
            f"cannot write {written_file(exc)}: {exc.strerror or exc}; fix that and run "
            f"trainrun resume {run.path} again"
        ) from None


def resume(
    ref: str | Path,
    *,
    runs_dir: Path,
    epochs: int | None,
    device: str | None,
    events: Events,
    allow_changed: bool = False,
    changed: list[Change] | None = None,
) -> tuple[Outcome, RunDir]:
    """Continue a run in its own directory from its last saved state.

    What made the run (run.json's `provenance`) must be as it was, unless
    `allow_changed`; `changed` is what the CLI's check found before TensorFlow."""
    started = time.perf_counter()
    run = RunDir.open(own_run_ref(ref, runs_dir), runs_dir)
    run.acquire()
    try:
        try:
            trainer = _start_resume(
                run,
                epochs=epochs,
                device=device,
                events=events,
                allow_changed=allow_changed,
                changed=changed,
            )
        except Exception as exc:
            if not isinstance(exc, TrainrunError):
                _resume_write_error(exc, run)
            raise
        outcome = run_to_end(trainer)
        return finish(events, trainer, outcome, time.perf_counter() - started), run
    finally:
        run.release()
        with contextlib.suppress(Exception):
            events.detach_log()
