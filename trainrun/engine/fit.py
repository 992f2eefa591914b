"""`trainrun fit` and `trainrun resume`: set up a Session and run the shared path."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from trainrun import signals
from trainrun.config import LoadedConfig, dump_config, load_config, with_seed
from trainrun.console import Reporter
from trainrun.engine import runtime
from trainrun.engine.session import Outcome, Session, run_session
from trainrun.errors import RunDirError, RunError, TrainrunError
from trainrun.runs.files import no_space, writing, written_file
from trainrun.runs.rundir import RunDir, now


def _info(session: Session, loaded: LoadedConfig, run: RunDir) -> dict:
    return {
        "id": _label(session),
        "status": "running",
        "error": None,
        "created": now(),
        "finished": None,
        "epochs_done": 0,
        "epochs": loaded.config.fit.epochs,
        "best": None,
        "seed": loaded.config.seed,
        "devices": session.rt.devices,
        "versions": runtime.versions(),
        "config_source": str(Path(loaded.file).resolve()),
        "command": " ".join(["trainrun", *sys.argv[1:]]),
        "pid": os.getpid(),
        "resumes": [],
        "train_seconds": 0.0,
    }


def _label(session: Session) -> str:
    """The run id; `<id>/worker-1` for a non-chief worker's directory."""
    run = session.run
    return run.id if session.rt.is_chief else f"{run.path.parent.name}/{run.id}"


def _report_start(reporter: Reporter, session: Session, verb: str) -> None:
    d = session.rt.devices
    reporter.info(f"[bold]{verb}[/] {_label(session)}  ->  {session.run.path}")
    task = d.get("task")
    cluster = (
        f", {task['type']} {task['index']} of {d['workers']} workers"
        + (" (chief)" if task["chief"] else "")
        if task
        else ""
    )
    reporter.info(
        f"device {', '.join(d['used'])} ({d['strategy']}, {d['replicas']} replica(s){cluster}, {d['precision']}); "
        f"{session.steps_per_epoch or '?'} steps/epoch, {session.spe} per execution, "
        f"jit_compile={session.rt.jit_compile}"
    )
    for note in session.rt.notes:
        reporter.warn(note)


def _finish(reporter: Reporter, session: Session, outcome: Outcome, seconds: float) -> Outcome:
    title = {
        "completed": "[green]run completed[/]",
        "stopped_early": "[green]run stopped early[/]",
        "interrupted": "[yellow]run interrupted; state saved[/]",
        "failed": "[red]run failed[/]",
    }[outcome.status]
    if outcome.error:
        reporter.info(f"[red]error:[/] {outcome.error}")
    reporter.summary(title, session.summary_rows(outcome, seconds))
    return outcome


def _create_run(runs_dir: Path, name: str, rt: runtime.Runtime) -> RunDir:
    """A new run directory. Under multi-worker training the chief creates
    runs/<id>/ and every other worker writes its own files, the same set, into
    runs/<id>/<task>/ (e.g. worker-1/), on whichever filesystem it has."""
    if not rt.multi_worker:
        return RunDir.create(runs_dir, name)
    run = RunDir.create(runs_dir, name) if rt.is_chief else None
    run_id = rt.agree(run.id if run else "")
    if run is not None:
        return run
    path = runs_dir / run_id / rt.task.name
    path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def _worker_ref(ref: str | Path, runs_dir: Path) -> str | Path:
    """On a non-chief worker, `trainrun resume runs/<id>` means its own runs/<id>/<task>/."""
    with contextlib.suppress(TrainrunError):  # a bad TF_CONFIG is reported by setup, if used
        sub = runtime.worker_subdir(runtime.tf_config_task())
        if sub:
            for base in (Path(ref), Path(runs_dir) / str(ref)):
                if (base / sub / "run.json").is_file():
                    return base / sub
    return ref


def _check_workers_agree(session: Session, unusable: RunDirError | None = None) -> None:
    """All workers must resume from the same step, each from its own saved state.

    `unusable`: why this worker's state cannot be resumed from; the others hear
    it too, so that every worker fails instead of waiting on this one.
    """
    rt = session.rt
    if not rt.multi_worker:
        if unusable is not None:
            raise unusable
        return
    own_dir = rt.is_chief or session.run.path.name == rt.task.name
    here = f"epoch {session.start_epoch + 1}, step {session.start_step}"
    if unusable is not None:
        here = f"{rt.task.name}: no usable state"
    # Gathered before raising, so that every worker fails instead of waiting on this one.
    seen = rt.worker_values(here if own_dir else f"no {rt.task.name}/ directory")
    if unusable is not None:
        raise unusable
    if not own_dir:
        raise RunDirError(
            f"{session.run.path / rt.task.name} not found: a non-chief worker resumes from its "
            "own directory; run `trainrun resume runs/<id>` on each worker where it trained"
        )
    if len(seen) > 1:
        raise RunDirError(
            f"the workers' saved states differ ({' / '.join(sorted(seen))}); resume needs "
            "every worker's state from the same step: copy the chief's runs/<id>/state/ "
            "over each worker's runs/<id>/worker-<i>/state/ (synchronised workers save equal states)"
        )


def fit(
    config: str | Path,
    overrides: list[str],
    *,
    runs_dir: Path,
    name: str | None,
    device: str | None,
    reporter: Reporter,
    loaded: LoadedConfig | None = None,
) -> tuple[Outcome, RunDir]:
    """Validate, build, train. A config error leaves no run directory behind."""
    started = time.perf_counter()
    loaded = loaded or with_seed(load_config(config, overrides, name=name))
    rt = runtime.setup(loaded, device=device)
    run = _create_run(Path(runs_dir), loaded.config.name, rt)
    session = Session(loaded, run, reporter, device=device, rt=rt)
    try:
        session.prepare()
        with writing(run.config_file):
            run.write_config(dump_config(loaded))
        with writing(run.run_json):
            run.write_info(_info(session, loaded, run))
        with writing(run.train_log):
            reporter.attach_log(run.train_log)
            _report_start(reporter, session, "fit")
        run.acquire()
        signals.raise_if_received()  # one that library code swallowed during start-up
    except BaseException as exc:
        # Start-up failed or was interrupted (Ctrl-C, SIGTERM): no half-made run is left.
        _remove_run(run, rt, reporter)
        if isinstance(exc, Exception) and not isinstance(exc, TrainrunError):
            _startup_write_error(exc)
        raise
    try:
        outcome = run_session(session, fresh=True)
        return _finish(reporter, session, outcome, time.perf_counter() - started), run
    finally:
        run.release()
        reporter.detach_log()


def _remove_run(run: RunDir, rt: runtime.Runtime, reporter: Reporter) -> None:
    """Remove a run directory that start-up made; a second Ctrl-C cannot cut this short."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.suppress(Exception):
            reporter.detach_log()
        run.release()
        shutil.rmtree(run.path, ignore_errors=True)
        if not rt.is_chief:
            with contextlib.suppress(OSError):
                run.path.parent.rmdir()  # runs/<id>/ made for this worker only
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _startup_write_error(exc: Exception) -> None:
    """A run directory that could not be written at start: one message, not a traceback."""
    if no_space(exc):
        raise RunError(
            f"disk full while writing {written_file(exc)}: free space and run the same "
            "trainrun fit again (no run directory was left)"
        ) from None
    if isinstance(exc, OSError) and written_file(exc):
        raise RunError(
            f"cannot write {written_file(exc)}: {exc.strerror or exc}; no run directory was left"
        ) from None


def _start_resume(
    run: RunDir, *, epochs: int | None, device: str | None, reporter: Reporter
) -> Session:
    """Load, check and restore a run under its lock; record the resume in run.json."""
    info = run.read_info()  # read under the lock: no other process changes it now
    overrides = [f"fit.epochs={epochs}"] if epochs is not None else []
    loaded = load_config(run.config_file, overrides)
    if loaded.config.seed is None:
        raise RunDirError(f"{run.config_file} has no seed; it was not written by trainrun fit")
    multi_worker = loaded.config.distribute == "multi_worker"
    run.check_resumable(info, epochs, state=not multi_worker)
    status = info.get("status")
    session = Session(loaded, run, reporter, device=device, resuming=True)
    session.prepare()
    try:
        if multi_worker:
            run.check_state_present(info)
        restored = session.restore(info)
        unusable = None
    except RunDirError as exc:
        if not session.rt.multi_worker:
            raise
        restored, unusable = False, exc  # told to the other workers first, then raised
    _check_workers_agree(session, unusable)
    signals.raise_if_received()  # before the run's files change: it is left as it was
    if status == "stopped_early" and epochs is not None:
        session.model.stop_training = False
    if epochs is not None:
        with writing(run.config_file):
            run.write_config(dump_config(loaded))
    with writing(run.train_log):
        reporter.attach_log(run.train_log)
        _report_start(reporter, session, "resume")
    for note in session.restore_notes:
        reporter.warn(note)
    where = (
        f"epoch {session.start_epoch + 1}, step {session.start_step}"
        if restored
        else "the start (no saved state)"
    )
    reporter.info(f"resuming from {where}")
    resumes = [
        *info.get("resumes", []),
        {
            "at": now(),
            "from_epoch": session.start_epoch,
            "from_step": session.start_step,
            "previous_status": status,
            "epochs": loaded.config.fit.epochs,
            **({"repairs": session.restore_notes} if session.restore_notes else {}),
        },
    ]
    with writing(run.run_json):
        run.update_info(
            status="running",
            error=None,
            finished=None,
            pid=os.getpid(),
            resumes=resumes,
            epochs=loaded.config.fit.epochs,
            devices=session.rt.devices,
        )
    return session


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
    reporter: Reporter,
) -> tuple[Outcome, RunDir]:
    """Continue a run in its own directory from its last saved state."""
    started = time.perf_counter()
    run = RunDir.open(_worker_ref(ref, runs_dir), runs_dir)
    run.acquire()
    try:
        try:
            session = _start_resume(run, epochs=epochs, device=device, reporter=reporter)
        except Exception as exc:
            if not isinstance(exc, TrainrunError):
                _resume_write_error(exc, run)
            raise
        outcome = run_session(session, fresh=False)
        return _finish(reporter, session, outcome, time.perf_counter() - started), run
    finally:
        run.release()
        with contextlib.suppress(Exception):
            reporter.detach_log()
