"""The sweep orchestrator: checks, then trials as `trainrun fit` subprocesses.

Each worker thread asks Optuna for a trial, runs it as an ordinary run in the
sweep directory, follows its history.csv as epochs land (each epoch's metric is
reported to the trial, and a trial the pruner stops is sent SIGINT: trainrun
saves and stops it cleanly), and tells Optuna the result. A killed sweep is
continued by `resume`: trials of this machine left RUNNING by a dead process are
resumed from their run directory with `trainrun resume`, then new ones follow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainrun.errors import ConfigError, RunDirError, TrainrunError
from trainrun.runs.record import RunRecord
from trainrun.runs.rundir import RunDir, now
from trainrun.sweep import study as optuna_side
from trainrun.sweep.record import KIND, Record, SweepLock, read_record
from trainrun.sweep.spec import Spec, parse_param, resolve, set_arg

Say = Callable[[str], None]
POLL_S = 0.25
HOST = socket.gethostname()


@dataclass
class SweepRequest:
    """`trainrun sweep CONFIG` as given on the command line."""

    config: Path
    sets: list[str] = field(default_factory=list)
    runs_dir: Path = Path("runs")
    name: str | None = None
    study: str | None = None
    cli: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- checks


def check_params(config: Path, sets: list[str], spec: Spec) -> None:
    """Every parameter path exists and every value (a range's bounds) fits the config."""
    from trainrun.config import load_config
    from trainrun.precheck import precheck

    for param in spec.params:
        for value in param.probe_values():
            text = set_arg(param.name, value)
            try:
                precheck(load_config(config, [*sets, text]))
            except ConfigError as exc:
                detail = exc.message.replace(f" (from --set {text})", "")
                raise ConfigError(
                    f"sweep parameter {param.name} = {json.dumps(value)}: {detail}"
                ) from None


def run_probe(config: Path, sets: list[str], metric: str | None) -> dict[str, Any]:
    """Logged keys, monitor and directions, from a subprocess that builds the model."""
    cmd = [sys.executable, "-m", "trainrun.sweep.probe", str(config)]
    for text in sets:
        cmd += ["--set", text]
    if metric:
        cmd += ["--metric", metric]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    if not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise TrainrunError(f"checking {config} failed before any trial started: {tail}")
    out = json.loads(lines[-1][len("PROBE ") :])
    if "error" in out:
        error = TrainrunError(out["error"])
        error.exit_code = out.get("exit_code", 2)
        raise error
    return out


def _parse_cli_params(texts: list[str]) -> dict[str, Any]:
    from trainrun.config.loader import parse_override

    params: dict[str, Any] = {}
    for text in texts:
        if "=" not in text:
            raise ConfigError(
                f"--param {text}: expected PATH=VALUES, e.g. --param 'fit.batch_size=[32, 64]'"
            )
        name = text.partition("=")[0]
        params[name] = parse_override(text)[1]
    return params


# ---------------------------------------------------------------- starting, resuming


def start(request: SweepRequest, say: Say) -> int:
    """Check everything, create runs/<sweep-id>/, run the trials. Returns the exit code."""
    from trainrun.config import load_config, with_seed
    from trainrun.config.loader import dump_config
    from trainrun.precheck import precheck

    loaded = with_seed(load_config(request.config, request.sets))
    precheck(loaded)
    cli = dict(request.cli)
    from trainrun.config.loader import parse_override

    cli["params"] = _parse_cli_params(cli.get("params") or [])
    for key in ("sampler", "pruner"):  # a name, or YAML: {threshold: {upper: 2.0}}
        if isinstance(cli.get(key), str) and cli[key].lstrip().startswith("{"):
            cli[key] = parse_override(f"{key}={cli[key]}")[1]
    if cli.get("direction") and cli["direction"] not in ("minimize", "maximize", "min", "max"):
        raise ConfigError(f"--direction {cli['direction']}: expected minimize or maximize")
    spec = resolve(loaded.config.sweep, file=str(request.config), cli=cli)
    check_params(request.config, request.sets, spec)
    seed = loaded.config.seed
    optuna_side.make_sampler(spec, seed)
    optuna_side.make_pruner(spec)
    theirs = _joined_study(spec, request.study)
    # What the probe decides (metric, direction) is compared once it has: a sweep that
    # differs in the rest is refused before building the model.
    check_same_sweep(theirs, spec, request.study, spec.storage, unresolved=True)
    say(f"checking {request.config} (builds the model once)")
    probe = run_probe(request.config, request.sets, spec.metric)
    metric = spec.metric or probe["monitor"]
    direction = spec.direction or ("maximize" if probe["metric_mode"] == "max" else "minimize")
    spec.metric, spec.direction = metric, direction
    check_same_sweep(theirs, spec, request.study, spec.storage)

    name = request.name or loaded.config.name
    sweep_dir = RunDir.create(request.runs_dir, f"{name}-sweep").path
    try:
        (sweep_dir / "logs").mkdir()
        loaded.config.sweep = None
        loaded.config.name = name
        (sweep_dir / "base.yaml").write_text(dump_config(loaded), encoding="utf-8")
        storage = spec.storage or f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
        record = Record(
            sweep_dir,
            {
                "kind": KIND,
                "id": sweep_dir.name,
                "created": now(),
                "config": str(Path(request.config).resolve()),
                "sets": list(request.sets),
                "base_config": "base.yaml",
                "storage": storage,
                "study": request.study or sweep_dir.name,
                "metric": metric,
                "direction": direction,
                "seed": seed,
                "spec": spec.to_json(),
                "trials_target": spec.trials,
                "workers": spec.workers,
                "status": "running",
                "trials": {},
            },
        )
        record.update()
    except BaseException:
        shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    return Orchestrator(sweep_dir, record, spec, say).run()


def resume(sweep_dir: Path, say: Say, *, workers: int | None = None) -> int:
    """Continue a killed or interrupted sweep in its own directory."""
    data = read_record(sweep_dir)
    spec_json = data["spec"]
    params = [
        parse_param(name, raw, f"(in {sweep_dir / 'sweep.json'})")
        for name, raw in spec_json["parameters"].items()
    ]
    ((sampler, sampler_args),) = spec_json["sampler"].items()
    ((pruner, pruner_args),) = spec_json["pruner"].items()
    spec = Spec(
        params=params,
        sampler=sampler,
        sampler_args=sampler_args,
        pruner=pruner,
        pruner_args=pruner_args,
        trials=data["trials_target"],
        metric=data["metric"],
        direction=data["direction"],
        workers=workers or data.get("workers", 1),
        storage=data["storage"],
    )
    record = Record(sweep_dir, data)
    return Orchestrator(sweep_dir, record, spec, say, resuming=True).run()


def _joined_study(spec: Spec, study: str | None) -> Any:
    """The sweep (spec JSON) of the study joined by --study in --storage, if it exists;
    opening the storage checks it is reachable, before anything is built."""
    if not spec.storage:
        return None
    storage = optuna_side.open_storage(spec.storage)
    if not study:
        return None
    try:
        attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(study))
    except KeyError:
        return None
    return attrs.get("trainrun")


def check_same_sweep(
    theirs: Any, spec: Spec, study: str | None, storage: str | None, *, unresolved: bool = False
) -> None:
    """A study joined by name must be this sweep's: same parameters, sampler, metric...
    `unresolved`: leave out the metric and direction the config does not set (yet)."""
    mine = spec.to_json()
    if theirs is not None and unresolved:
        theirs = dict(theirs)
        for key in ("metric", "direction"):
            if mine[key] is None:
                mine.pop(key)
                theirs.pop(key, None)
    if theirs is not None and json.dumps(theirs, sort_keys=True) != json.dumps(
        mine, sort_keys=True
    ):
        raise ConfigError(
            f"study '{study}' in {optuna_side.storage_url_shown(storage)} was made by a "
            "different sweep (other parameters, sampler, pruner, trials, metric or direction); "
            "give another --study name, or the same sweep config"
        )


# ---------------------------------------------------------------- the orchestrator


@dataclass
class Job:
    """One trial this process runs: the Optuna trial and, when resumed, its run directory."""

    trial: Any
    number: int
    params: dict[str, Any]
    run_dir: Path | None = None
    reported: set[int] = field(default_factory=set)
    process: subprocess.Popen | None = None
    pruned: str | None = None


class Orchestrator:
    def __init__(
        self, sweep_dir: Path, record: Record, spec: Spec, say: Say, *, resuming: bool = False
    ) -> None:
        self.dir = Path(sweep_dir).resolve()
        self.record = record
        self.spec = spec
        self.say = say
        self.resuming = resuming
        self.metric: str = record.data["metric"]
        self.direction: str = record.data["direction"]
        self.stop = threading.Event()
        self.ask_lock = threading.Lock()
        self.jobs: dict[int, Job] = {}
        self.errors: list[BaseException] = []
        self.lock = SweepLock(self.dir)

    # ------------------------------------------------------------ study
    def open_study(self) -> Any:
        optuna = optuna_side.optuna()
        storage = optuna_side.open_storage(self.record.data["storage"])
        seed = self.record.data.get("seed")
        study = optuna.create_study(
            storage=storage,
            study_name=self.record.data["study"],
            direction=self.direction,
            sampler=optuna_side.make_sampler(self.spec, seed),
            pruner=optuna_side.make_pruner(self.spec),
            load_if_exists=True,
        )
        theirs = study.user_attrs.get("trainrun")
        check_same_sweep(theirs, self.spec, study.study_name, self.record.data["storage"])
        if theirs is None:
            study.set_user_attr("trainrun", self.spec.to_json())
        if study.direction.name.lower() != self.direction:
            raise ConfigError(
                f"study '{study.study_name}' maximizes/minimizes differently from this sweep"
            )
        return study

    # ------------------------------------------------------------ main loop
    def run(self) -> int:
        self.lock.acquire()
        try:
            self.study = self.open_study()
            self.record.update(status="running", pid=os.getpid(), host=HOST)
            where = (
                os.path.relpath(self.dir)
                if not os.path.relpath(self.dir).startswith("..")
                else self.dir
            )
            verb = "resuming" if self.resuming else "sweep"
            self.say(
                f"{verb} {self.dir.name}: {self.spec.trials} trials, sampler {self.spec.sampler}, "
                f"pruner {self.spec.pruner}, {self.direction} {self.metric}, "
                f"{self.spec.workers} worker(s); in {where}"
            )
            threads = [
                threading.Thread(target=self._worker, name=f"sweep-worker-{i}", daemon=True)
                for i in range(self.spec.workers)
            ]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    while thread.is_alive():
                        thread.join(0.2)
            except KeyboardInterrupt:
                self.stop.set()
                for job in list(self.jobs.values()):
                    if job.process and job.process.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            job.process.send_signal(signal.SIGINT)
                for thread in threads:
                    thread.join()
                self.record.update(status="interrupted", updated=now())
                self.say(
                    f"sweep interrupted: running trials saved their state; "
                    f"trainrun resume {where} continues the sweep"
                )
                return 130
            if self.errors:
                raise self.errors[0]
            return self._finish()
        finally:
            self.lock.release()

    def _finish(self) -> int:
        optuna = optuna_side.optuna()
        trials = self.study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        status = "completed" if not running else "running elsewhere"
        self.record.update(status="completed", updated=now())
        self.say(
            f"sweep {self.dir.name} {status}: {len(complete)} of {len(trials)} trials complete"
        )
        if not complete:
            raise TrainrunError(
                f"no trial of sweep {self.dir.name} completed; the reasons are in "
                f"`trainrun runs --sweep {self.dir}` and {self.dir / 'logs'}"
            ) from None
        return 0

    def _worker(self) -> None:
        try:
            while not self.stop.is_set():
                with self.ask_lock:
                    job = self._next_job()
                if job is None:
                    return
                self._run(job)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
            self.stop.set()

    # ------------------------------------------------------------ choosing trials
    def _orphans(self) -> list[Any]:
        """Trials of this machine and sweep left RUNNING by a process that is gone."""
        optuna = optuna_side.optuna()
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            attrs = t.user_attrs
            if t.number in self.jobs:
                continue
            if attrs.get("host") not in (None, HOST) or attrs.get("sweep") not in (
                None,
                str(self.dir),
            ):
                continue  # another machine's or another sweep directory's trial
            # The sweep's lock is ours: no other process drives this sweep directory,
            # so a RUNNING trial of it that none of our workers holds was left by a dead one.
            out.append(t)
        return sorted(out, key=lambda t: t.number)

    def _next_job(self) -> Job | None:
        optuna = optuna_side.optuna()
        for frozen in self._orphans():
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
            self._claim(trial)
            run = frozen.user_attrs.get("run")
            job = Job(
                trial,
                frozen.number,
                dict(frozen.params),
                run_dir=self.dir / run if run else self._find_run_dir(frozen.number),
                reported=set(frozen.intermediate_values),
            )
            self.jobs[job.number] = job
            return job
        if len(self.study.get_trials(deepcopy=False)) >= (self.spec.trials or 0):
            return None
        trial = self.study.ask(optuna_side.distributions(self.spec.params))
        self._claim(trial)
        job = Job(trial, trial.number, dict(trial.params))
        self.jobs[job.number] = job
        return job

    def _claim(self, trial: Any) -> None:
        trial.set_user_attr("host", HOST)
        trial.set_user_attr("pid", os.getpid())
        trial.set_user_attr("sweep", str(self.dir))

    def _find_run_dir(self, number: int) -> Path | None:
        found = [p for p in self.dir.glob(f"{trial_name(number)}-*") if (p / "run.json").is_file()]
        return max(found, key=lambda p: p.name) if found else None

    # ------------------------------------------------------------ one trial
    def _command(self, job: Job) -> list[str]:
        if job.run_dir is not None:
            return ["resume", str(job.run_dir)]
        sets = [a for name, v in job.params.items() for a in ("--set", set_arg(name, v))]
        return [
            "fit",
            str(self.dir / "base.yaml"),
            *sets,
            "--runs-dir",
            str(self.dir),
            "--name",
            trial_name(job.number),
        ]

    def _run(self, job: Job) -> None:
        shown = "  ".join(f"{k}={_fmt(v)}" for k, v in job.params.items())
        self.record.set_trial(job.number, number=job.number, params=job.params, state="RUNNING")
        if job.run_dir is not None:
            self._wait_unlocked(RunDir(job.run_dir))
            record = _read_record(job.run_dir)
            if record is not None and record.status.finished:
                self.say(f"trial {job.number} had finished before the sweep stopped")
                self._conclude(job, 0)
                return
        self.say(f"trial {job.number} {'resumed' if job.run_dir else 'started'}: {shown}")
        log = (self.dir / "logs" / f"{trial_name(job.number)}.log").open("ab")
        with log:
            job.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trainrun.sweep.child",
                    str(os.getpid()),
                    *self._command(job),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the sweep, which passes on one SIGINT
            )
            while job.process.poll() is None:
                time.sleep(POLL_S)
                self._follow(job)
        self._follow(job)
        self._conclude(job, job.process.returncode)

    def _follow(self, job: Job) -> None:
        """Find the trial's run directory, report new epochs, prune if the pruner says so."""
        if job.run_dir is None:
            job.run_dir = self._find_run_dir(job.number)
            if job.run_dir is None:
                return
            rel = job.run_dir.name
            job.trial.set_user_attr("run", rel)
            self.record.set_trial(job.number, run=rel)
        for epoch, value in self._values(job.run_dir):
            if epoch in job.reported:
                continue
            job.trial.report(value, epoch)
            job.reported.add(epoch)
            if job.pruned is None and job.process is not None and job.trial.should_prune():
                job.pruned = (
                    f"pruned after epoch {epoch}: {self.metric} {value:.4g} "
                    f"({self.spec.pruner} pruner)"
                )
                if job.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        job.process.send_signal(signal.SIGINT)

    def _values(self, run_dir: Path) -> list[tuple[int, float]]:
        import math

        from trainrun.runs.history import read_history

        try:
            _, rows, _ = read_history(run_dir / "history.csv")
        except RunDirError:
            return []
        return [
            (int(r["epoch"]) + 1, r[self.metric])
            for r in rows
            if self.metric in r and math.isfinite(r[self.metric])
        ]

    def _conclude(self, job: Job, code: int) -> None:
        optuna = optuna_side.optuna()
        state = optuna.trial.TrialState
        record = _read_record(job.run_dir)
        if self.stop.is_set() and code == 130 and not job.pruned:
            self.say(f"trial {job.number} interrupted; it stays running in the study, to resume")
            return
        if job.pruned:
            self._tell(job, state.PRUNED, job.pruned)
            return
        if code == 0:
            values = [v for _, v in self._values(job.run_dir)] if job.run_dir else []
            if not values:
                self._tell(job, state.FAIL, f"no finite {self.metric} in history.csv")
                return
            value = max(values) if self.direction == "maximize" else min(values)
            epoch = next(e for e, v in self._values(job.run_dir) if v == value)
            job.trial.set_user_attr("best_epoch", epoch)
            tell(self.study, job.trial, value)
            self.record.set_trial(job.number, state="COMPLETE", value=value, epoch=epoch)
            self.say(f"trial {job.number} complete: {self.metric} {value:.4g} at epoch {epoch}")
            return
        self._tell(job, state.FAIL, _failure_reason(code, record, self.dir, job.number))

    def _tell(self, job: Job, state: Any, reason: str) -> None:
        job.trial.set_user_attr("reason", reason)
        tell(self.study, job.trial, state=state)
        self.record.set_trial(job.number, state=state.name, reason=reason)
        self.say(f"trial {job.number} {state.name.lower()}: {reason}")

    def _wait_unlocked(self, run: RunDir, timeout: float = 30.0) -> None:
        """A trial killed with its sweep may take a moment to die and release its run."""
        deadline = time.monotonic() + timeout
        while run.lock_owner() is not None:
            if time.monotonic() > deadline:
                raise RunDirError(
                    f"run {run.path} of this sweep is still held by process {run.lock_owner()}; "
                    "stop it, then resume the sweep again"
                )
            time.sleep(0.2)


def tell(study: Any, trial: Any, value: float | None = None, *, state: Any = None) -> None:
    """study.tell; GridSampler's `study.stop()` once the grid is done is no error here.

    GridSampler calls `study.stop()` after the last grid point, which raises outside
    `study.optimize`; Optuna stores the trial's result before that (a `finally`), and
    the sweep stops by its own count of trials.
    """
    try:
        study.tell(trial, value, state=state)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _read_record(run_dir: Path | None) -> RunRecord | None:
    if run_dir is None:
        return None
    try:
        return RunDir(run_dir).read_record()
    except TrainrunError:
        return None


def _failure_reason(code: int, record: RunRecord | None, sweep_dir: Path, number: int) -> str:
    if record is not None and record.error:
        return record.error
    log = sweep_dir / "logs" / f"{trial_name(number)}.log"
    with contextlib.suppress(OSError):
        errors = [
            line.removeprefix("error:").strip()
            for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
            if line.startswith("error:")
        ]
        if errors:
            return errors[-1]
    if code < 0:
        return f"the trial process was killed by signal {-code}; see {log}"
    if code == 130:
        return "the trial was interrupted on its own (exit 130); `trainrun resume` of its run continues it"
    return f"the trial process exited with code {code}; see {log}"
