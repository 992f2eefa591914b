"""How a run ends: train to the end, save the final model, record the outcome.

Shared by fit and resume. Nothing here leaves a traceback: a failure becomes a
`failed` outcome with its cause.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainrun.engine.events import RunEnd
from trainrun.engine.interrupts import InterruptFlag
from trainrun.errors import RunError
from trainrun.runs.files import no_space, writing, written_file
from trainrun.runs.record import Status
from trainrun.runs.rundir import now

if TYPE_CHECKING:
    from trainrun.engine.trainer import Trainer


@dataclass
class Outcome:
    status: Status  # completed | stopped_early | interrupted | failed
    error: str | None = None
    exit_code: int = 0

    def __post_init__(self) -> None:
        self.status = Status(self.status)


def run_end(trainer: Trainer, outcome: Outcome, seconds: float) -> RunEnd:
    """What the summary of a run shows."""
    history = trainer.history
    return RunEnd(
        status=outcome.status,
        error=outcome.error,
        path=trainer.run.path,
        config_file=trainer.run.config_file,
        epochs_done=len(history) and history[-1]["epoch"] + 1,
        epochs=trainer.loaded.config.fit.epochs,
        best=trainer.best(),
        final=trainer.final,
        last=history[-1] if history else None,
        seconds=seconds,
        resumable=trainer.loaded.config.outputs.state,
    )


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


def disk_full_message(trainer: Trainer, exc: BaseException) -> str:
    """'disk full while writing <file>: free space and run trainrun resume <run>'."""
    where = written_file(exc) or str(trainer.run.path)
    if trainer.loaded.config.outputs.state:
        then = f"trainrun resume {trainer.run.path}"
    else:  # no resume state: the run can only be trained again
        then = f"trainrun fit {trainer.run.config_file} (outputs.state is false: no resume)"
    return f"disk full while writing {where}: free space and run {then}"


def _failure(trainer: Trainer, exc: BaseException) -> Outcome:
    """The outcome of an exception that ended training or its final writes."""
    if isinstance(exc, RunError):
        return Outcome(Status.FAILED, error=exc.message, exit_code=1)
    if no_space(exc):
        # The traceback says no more than the message; train.log may be unwritable now.
        trainer.events.drop_log()
        return Outcome(Status.FAILED, error=disk_full_message(trainer, exc), exit_code=1)
    with contextlib.suppress(OSError):
        trainer.events.to_log(traceback.format_exc())
    if isinstance(exc, OSError) and written_file(exc):
        why = exc.strerror or str(exc)
        return Outcome(
            Status.FAILED,
            error=f"cannot write {written_file(exc)}: {why}; fix that and run "
            f"trainrun resume {trainer.run.path}",
            exit_code=1,
        )
    return Outcome(Status.FAILED, error=failure_message(exc), exit_code=1)


def _final_fields(final: tuple[int, str] | None) -> dict[str, Any]:
    """run.json's record of model.keras' weights; left as it was when no model was
    written now (a model.keras from an earlier session is still what it says)."""
    if final is None:
        return {}
    return {"final_weights_epoch": final[0], "final_weights_source": final[1]}


def run_to_end(trainer: Trainer) -> Outcome:
    """Train, save the final model and record the outcome in run.json and train.log.
    Shared by fit and resume.

    Nothing here leaves a traceback: a failure becomes a `failed` outcome with its
    cause (a full disk named with the file it was writing). When run.json itself
    cannot be written, it keeps saying `running` with this process's pid, which
    `trainrun runs` shows as killed once the process is gone: resumable either way.
    """
    run = trainer.run
    trainer.train_started = time.perf_counter()

    def mark_interrupted() -> None:
        run.update_record(status=Status.INTERRUPTED, finished=now(), pid=None)

    outcome: Outcome
    with InterruptFlag(mark_interrupted) as flag:
        with trainer.events.capture_output():
            try:
                outcome = trainer.train(flag)
            except Exception as exc:  # a failure at run time: user code, OOM, bad labels
                outcome = _failure(trainer, exc)
        # The clock stops with training (the final model's save is not training time).
        trainer.train_seconds_before, trainer.train_started = trainer.train_seconds(), None
        if outcome.status.finished:
            try:
                with writing(run.model_file):
                    trainer.save_final_model()
                if trainer.loaded.config.outputs.final_model:
                    trainer.final = trainer.final_weights()
            except Exception as exc:
                outcome = _failure(trainer, exc)
        if flag() and outcome.status.finished:
            # Ctrl-C after the last epoch: nothing was left to interrupt.
            trainer.events.warn(
                "interrupted after the last epoch; the run had finished and is saved"
            )
        if trainer.tracker is not None:  # never raises: a tracking failure is a warning
            trainer.tracker.finish(outcome.status, trainer.history, run)
        keeper = trainer.keeper
        try:
            with writing(run.run_json):
                run.update_record(
                    status=outcome.status,
                    error=outcome.error,
                    finished=now(),
                    epochs_done=len(trainer.history) and trainer.history[-1]["epoch"] + 1,
                    best=trainer.best(),
                    **_final_fields(trainer.final),
                    pid=None,
                    train_seconds=round(trainer.train_seconds(), 3),
                    state_saves=getattr(keeper, "saves", 0),
                    state_seconds=round(getattr(keeper, "save_seconds", 0.0), 3),
                    timing=trainer.timing,
                )
        except Exception as exc:
            if outcome.status is Status.FAILED:
                return outcome  # the first cause is the one to report
            outcome = _failure(trainer, exc)
    return outcome
