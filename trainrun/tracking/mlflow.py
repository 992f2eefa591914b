"""A trainrun run's MLflow run: opened before training, logged each epoch, finished once.

What is logged: the resolved config flattened to parameters (``fit.epochs``,
``model.layers.1.Dense.units``), each epoch's metrics at step = the epoch counted
from 1 (as train.log and run.json count it), and at the end config.yaml,
history.csv and model.keras as artifacts. run.json's ``tracking.mlflow`` names
the MLflow run, so `trainrun resume` logs into the same one.

Each epoch is logged once: the tracker logs the rows of the run's history that the
store does not have yet (read from the store when a run is resumed), so a resumed
run adds only the epochs after those already logged, and epochs missed while the
store was unreachable are logged as soon as it answers again.

Bad settings (no URI, an unknown scheme, a store that does not answer) are a
ConfigError before training starts. Once training has started, a tracking failure
never stops it: the first is shown as a warning (and written to train.log), later
ones go to train.log only, and the run trains on.

MLflow is imported inside the functions that need it: a config without
`tracking.mlflow` never imports it. No Keras here (the callback is in `callback`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainrun.errors import ConfigError, RunDirError

if TYPE_CHECKING:
    from trainrun.config import LoadedConfig
    from trainrun.engine.events import Events
    from trainrun.runs.rundir import RunDir

EXTRA = "pip install 'trainrun[mlflow]'"
URI_ENV = "MLFLOW_TRACKING_URI"
PATH = ("tracking", "mlflow")

# MLflow's limits (mlflow/utils/validation.py), held here so that a long value is
# cut by trainrun, visibly, rather than refused by a server.
MAX_KEY = 250
MAX_VALUE = 6000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
# Characters MLflow accepts in a parameter or metric name on every platform.
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")

# MLflow retries a failing HTTP request 7 times with backoff (minutes). trainrun
# lowers that, unless the environment says otherwise, so that an unreachable server
# costs seconds at start and between epochs.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}

# trainrun's statuses as MLflow's run statuses.
_END_STATUS = {
    "completed": "FINISHED",
    "stopped_early": "FINISHED",
    "interrupted": "KILLED",
    "failed": "FAILED",
}


@dataclass(frozen=True)
class Settings:
    """Where a run is logged: the tracking URI and the experiment's name."""

    uri: str
    experiment: str


def settings(loaded: LoadedConfig) -> Settings | None:
    """The config's MLflow settings with their defaults, or None when it has none."""
    cfg = loaded.config.tracking.mlflow
    if cfg is None:
        return None
    uri = cfg.uri or os.environ.get(URI_ENV, "")
    if not uri.strip():
        raise loaded.error(
            f"no MLflow tracking URI: set tracking.mlflow.uri (e.g. http://mlflow:5000) "
            f"or the {URI_ENV} environment variable",
            (*PATH, "uri"),
        )
    return Settings(
        uri=_absolute(uri.strip(), loaded.base_dir), experiment=cfg.experiment or loaded.config.name
    )


def _absolute(uri: str, base_dir: Path) -> str:
    """A local store's path made absolute (against the config's directory, as every path
    in a config is), so that resume finds the same store from anywhere."""
    if uri.startswith("file:") and not uri.startswith("file:/"):
        return "file:" + str((base_dir / os.path.expanduser(uri[5:])).resolve())
    if "://" not in uri and ":" not in uri.split("/")[0]:  # a bare path
        return str((base_dir / os.path.expanduser(uri)).resolve())
    return uri


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError(
            f"tracking.mlflow needs MLflow, which is not installed: {EXTRA}"
        ) from None
    return mlflow


def check(loaded: LoadedConfig) -> None:
    """The checks that need no tracking store: MLflow installed, a URI known (`precheck`)."""
    if settings(loaded) is not None:
        _import_mlflow()


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, text) for every leaf of a config: MLflow parameters."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            yield from flatten(item, f"{prefix}.{i}")
    else:
        yield prefix, value if isinstance(value, str) else json.dumps(value)


def params(config: dict[str, Any]) -> dict[str, str]:
    """The config as MLflow parameters, keys and values within MLflow's limits."""
    out: dict[str, str] = {}
    for key, text in flatten(config):
        if text == "null":
            continue  # an unset key: MLflow shows a missing parameter as unset already
        key = _BAD_KEY_CHARS.sub("_", key)[:MAX_KEY]
        if len(text) > MAX_VALUE:
            cut = f"... ({len(text)} characters, cut)"
            text = text[: MAX_VALUE - len(cut)] + cut
        out[key] = text
    return out


def metric_key(name: str) -> str:
    return _BAD_KEY_CHARS.sub("_", name)[:MAX_KEY]


@dataclass
class MlflowTracker:
    """The MLflow run of one trainrun run, as one training session sees it."""

    client: Any
    run_id: str
    settings: Settings
    experiment_id: str
    logged_through: int = 0  # the last step (epoch counted from 1) the store holds
    events: Any = None
    failures: int = 0
    notes: list[str] = field(default_factory=list)

    # ------------------------------------------------------------ opening
    @classmethod
    def start(cls, loaded: LoadedConfig, run: RunDir, events: Events) -> MlflowTracker | None:
        """A new MLflow run for a new trainrun run, with the config as its parameters.
        None when the config does not ask for MLflow."""
        found = settings(loaded)
        if found is None:
            return None
        try:
            return cls._start(loaded, found, run, events)
        except ConfigError as exc:
            raise loaded.locate(exc) from None

    @classmethod
    def _start(
        cls, loaded: LoadedConfig, found: Settings, run: RunDir, events: Events
    ) -> MlflowTracker:
        client, experiment_id = _connect(found)
        try:
            mlflow_run = client.create_run(
                experiment_id,
                run_name=run.id,
                tags={"trainrun.run_dir": str(run.path.resolve()), "trainrun.run_id": run.id},
            )
            tracker = cls(client, mlflow_run.info.run_id, found, experiment_id, events=events)
            items = list(params(loaded.config.model_dump(mode="json")).items())
            from mlflow.entities import Param

            for i in range(0, len(items), PARAMS_PER_BATCH):
                chunk = items[i : i + PARAMS_PER_BATCH]
                client.log_batch(tracker.run_id, params=[Param(k, v) for k, v in chunk])
        except Exception as exc:
            raise _store_error(found, exc) from None
        return tracker

    @classmethod
    def reopen(
        cls, loaded: LoadedConfig, recorded: dict[str, Any], run: RunDir, events: Events
    ) -> MlflowTracker | None:
        """The MLflow run run.json names, for a resumed run; a new one when run.json names
        none but the config asks for MLflow."""
        entry = recorded.get("mlflow") if isinstance(recorded, dict) else None
        if not isinstance(entry, dict):
            return cls.start(loaded, run, events)
        run_id, uri = entry.get("run_id"), entry.get("uri")
        if not isinstance(run_id, str) or not isinstance(uri, str):
            raise RunDirError(
                f"{run.run_json}: tracking.mlflow is {entry!r}, without a run_id and uri; "
                "remove tracking from run.json to log the rest of the run to a new MLflow run"
            )
        found = Settings(uri=uri, experiment=str(entry.get("experiment", "")))
        _import_mlflow()
        _limit_http_retries()
        from mlflow import MlflowClient

        try:
            client = MlflowClient(tracking_uri=uri)
            mlflow_run = client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            logged = max(
                (
                    m.step
                    for key in mlflow_run.data.metrics
                    for m in client.get_metric_history(run_id, key)
                ),
                default=0,
            )
        except Exception as exc:
            raise ConfigError(
                f"run.json's MLflow run {run_id} cannot be reopened in {uri}: {_first_line(exc)}; "
                "start the tracking server, or remove tracking from run.json to log the rest "
                "of the run to a new MLflow run"
            ) from None
        return cls(
            client,
            run_id,
            found,
            mlflow_run.info.experiment_id,
            logged_through=logged,
            events=events,
        )

    def record(self) -> dict[str, Any]:
        """run.json's `tracking`."""
        return {
            "mlflow": {
                "run_id": self.run_id,
                "uri": self.settings.uri,
                "experiment": self.settings.experiment,
                "experiment_id": self.experiment_id,
            }
        }

    # ------------------------------------------------------------ logging
    def log_epochs(self, history: list[dict[str, Any]]) -> None:
        """Log the epochs of `history` the store does not hold yet. Never raises."""
        from mlflow.entities import Metric

        pending = [row for row in history if row["epoch"] + 1 > self.logged_through]
        if not pending:
            return
        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_key(key), float(value), now, row["epoch"] + 1)
            for row in pending
            for key, value in row.items()
            if key != "epoch" and isinstance(value, int | float) and not math.isnan(value)
        ]
        try:
            for i in range(0, len(metrics), METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[i : i + METRICS_PER_BATCH])
        except Exception as exc:
            self._failed(f"logging epoch {pending[-1]['epoch'] + 1}", exc)
            return
        self.logged_through = pending[-1]["epoch"] + 1

    def finish(self, status: str, history: list[dict[str, Any]], run: RunDir) -> None:
        """Log what is still pending, the run's files, and MLflow's end status. Never raises."""
        self.log_epochs(history)
        try:
            for path in (run.config_file, run.path / "history.csv", run.model_file):
                if path.is_file():
                    self.client.log_artifact(self.run_id, str(path))
            self.client.set_terminated(self.run_id, status=_END_STATUS.get(status, "FAILED"))
        except Exception as exc:
            self._failed("logging the run's files", exc)

    def abandon(self) -> None:
        """Delete the MLflow run of a start-up that failed (its run directory is removed)."""
        try:
            self.client.delete_run(self.run_id)
        except Exception as exc:
            self._failed("deleting the MLflow run of a run that did not start", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        text = (
            (
                f"MLflow tracking ({self.settings.uri}, run {self.run_id}): {what} failed: "
                f"{_first_line(exc)}"
            )
            .replace("[", "(")
            .replace("]", ")")
        )  # no Rich markup
        if self.events is None:
            return
        if self.failures == 1:
            self.events.warn(
                f"{text}; training goes on; the epochs the store misses are logged when it "
                "answers again (later tracking failures are written to train.log only)"
            )
        else:
            self.events.to_log(f"warning: {text}")


def _limit_http_retries() -> None:
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def _connect(found: Settings) -> tuple[Any, str]:
    """A client of the store and the experiment's id (created when missing)."""
    _import_mlflow()
    _limit_http_retries()
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=found.uri)
        experiment = client.get_experiment_by_name(found.experiment)
        if experiment is None:
            return client, client.create_experiment(found.experiment)
    except Exception as exc:
        raise _store_error(found, exc) from None
    if experiment.lifecycle_stage != "active":
        raise ConfigError(
            f"MLflow experiment '{found.experiment}' is deleted in {found.uri}: restore it "
            "(mlflow experiments restore) or choose another tracking.mlflow.experiment",
            path="tracking.mlflow.experiment",
        )
    return client, experiment.experiment_id


def _store_error(found: Settings, exc: BaseException) -> ConfigError:
    return ConfigError(
        f"the MLflow tracking store {found.uri} cannot be used: {_first_line(exc)}; "
        f"check tracking.mlflow.uri (or {URI_ENV}) and that the store answers",
        path="tracking.mlflow.uri",
    )
