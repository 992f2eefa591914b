"""`trainrun fit`: a new run directory, a trainer, training to the end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import yaml

from trainrun import signals
from trainrun.config import LoadedConfig, dump_config, load_config, with_seed
from trainrun.engine import runtime
from trainrun.engine.events import Events, RunStart
from trainrun.engine.outcome import Outcome, run_end, run_to_end
from trainrun.engine.trainer import Trainer
from trainrun.errors import ConfigError, RunError, TrainrunError
from trainrun.runs.files import no_space, writing, written_file
from trainrun.runs.record import RunRecord, Status
from trainrun.runs.rundir import RunDir, now
from trainrun.tracking.mlflow import MlflowTracker


def _record(trainer: Trainer, loaded: LoadedConfig, provenance: dict) -> RunRecord:
    """run.json of a run that starts now."""
    return RunRecord.new(
        id=label(trainer),
        status=Status.RUNNING,
        error=None,
        created=now(),
        finished=None,
        epochs_done=0,
        epochs=loaded.config.fit.epochs,
        best=None,
        seed=loaded.config.seed,
        backend=trainer.rt.backend,
        devices=trainer.rt.devices,
        versions=runtime.versions(),
        config_source=str(Path(loaded.file).resolve()),
        command=" ".join(["trainrun", *sys.argv[1:]]),
        pid=os.getpid(),
        resumes=[],
        train_seconds=0.0,
        provenance=provenance,
        **({"tracking": trainer.tracker.record()} if trainer.tracker else {}),
    )


def _provenance(run: RunDir, loaded: LoadedConfig, config_text: str) -> dict:
    """What made the run (run.json's `provenance`), with copies of the user's modules in code/."""
    from trainrun.runs import provenance

    mnist = None
    if loaded.config.data.source == "mnist":
        from trainrun.data.mnist import mnist_file

        mnist = mnist_file()
    found = provenance.collect(loaded, config_text, mnist=mnist)
    with writing(run.path / provenance.CODE_DIR):
        provenance.copy_code(run.path, found["code"])
    return found


def label(trainer: Trainer) -> str:
    """The run id; `<id>/worker-1` for a non-chief worker's directory."""
    run = trainer.run
    return run.id if trainer.rt.is_chief else f"{run.path.parent.name}/{run.id}"


def report_start(events: Events, trainer: Trainer, verb: str) -> None:
    events.run_started(
        RunStart(
            verb=verb,
            label=label(trainer),
            path=trainer.run.path,
            devices=trainer.rt.devices,
            steps_per_epoch=trainer.steps_per_epoch,
            steps_per_execution=trainer.spe,
            jit_compile=trainer.rt.jit_compile,
        )
    )
    for note in trainer.rt.notes:
        events.warn(note)


def finish(events: Events, trainer: Trainer, outcome: Outcome, seconds: float) -> Outcome:
    events.run_finished(run_end(trainer, outcome, seconds))
    return outcome


def _agree_on_config(loaded: LoadedConfig, rt: runtime.Runtime) -> None:
    """Every worker of a cluster trains the same config (collectives; all workers call them).

    A config without a seed gets a random one in each process: the chief's is taken by
    all, or each would shuffle (and initialise) its own way. Configs that still differ
    (another --set on one machine) are refused on every worker, naming the sections.
    """
    if not rt.multi_worker:
        return
    seed = int(rt.agree(str(loaded.config.seed)))
    if seed != loaded.config.seed:
        import keras

        loaded.config.seed = seed
        keras.utils.set_random_seed(seed)  # as runtime.setup did with this worker's own
    sections = yaml.safe_load(dump_config(loaded))
    sections.pop("base_dir", None)  # where this machine finds the config's files
    mine = {
        key: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:8]
        for key, value in sections.items()
    }
    seen = [
        dict(item.split("=") for item in text.split(","))
        for text in rt.worker_values(
            ",".join(f"{key}={digest}" for key, digest in sorted(mine.items()))
        )
    ]
    differ = sorted(
        {
            key
            for other in seen
            for key in mine.keys() | other.keys()
            if other.get(key) != mine.get(key)
        }
    )
    if differ:
        raise ConfigError(
            f"the workers' configs differ in {', '.join(differ)}: every worker runs the same "
            "config and --set (only TF_CONFIG or KERAS_DISTRIBUTION_PROCESS_ID differs)"
        )


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


def fit(
    config: str | Path,
    overrides: list[str],
    *,
    runs_dir: Path,
    name: str | None,
    device: str | None,
    events: Events,
    loaded: LoadedConfig | None = None,
) -> tuple[Outcome, RunDir]:
    """Validate, build, train. A config error leaves no run directory behind."""
    started = time.perf_counter()
    loaded = loaded or with_seed(load_config(config, overrides, name=name))
    rt = runtime.setup(loaded, device=device)
    _agree_on_config(loaded, rt)
    run = _create_run(Path(runs_dir), loaded.config.name, rt)
    trainer = Trainer(loaded, run, events, device=device, rt=rt)
    try:
        # A signal is raised as this block ends, not inside TensorFlow's C++; so is one
        # that library code swallowed during start-up.
        with signals.deferred():
            trainer.prepare()
            config_text = dump_config(loaded)
            if rt.is_chief:
                trainer.tracker = MlflowTracker.start(loaded, run, events)
            with writing(run.config_file):
                run.write_config(config_text)
            found = _provenance(run, loaded, config_text)
            with writing(run.run_json):
                run.write_record(_record(trainer, loaded, found))
            with writing(run.train_log):
                events.attach_log(run.train_log)
                report_start(events, trainer, "fit")
            run.acquire()
    except BaseException as exc:
        # Start-up failed or was interrupted (Ctrl-C, SIGTERM): no half-made run is left.
        _remove_run(run, rt, events)
        if trainer.tracker is not None:
            trainer.tracker.abandon()
        if isinstance(exc, Exception) and not isinstance(exc, TrainrunError):
            _startup_write_error(exc)
        raise
    try:
        outcome = run_to_end(trainer)
        return finish(events, trainer, outcome, time.perf_counter() - started), run
    finally:
        run.release()
        events.detach_log()


def _remove_run(run: RunDir, rt: runtime.Runtime, events: Events) -> None:
    """Remove a run directory that start-up made; a second Ctrl-C cannot cut this short."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.suppress(Exception):
            events.detach_log()
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
