"""tracking.mlflow: a run logged to a real MLflow store (a local file store in tmp_path),
read back with MlflowClient: parameters, one metric value per epoch at step = epoch
(counted from 1), the run's files as artifacts; a resumed run goes on in the same
MLflow run without logging an epoch twice; a store that fails mid-run never stops
training; bad settings are one error line before training.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from conftest import RESUME_FIXTURES, assert_clean_error, cli, only_run, read_history, run_info

pytest.importorskip("mlflow", reason="MLflow is not installed: pip install -e '.[mlflow]'")

from trainrun.tracking import mlflow as tracking  # noqa: E402

# MLflow 3 refuses its file store unless asked; it is the store a test can make
# without a server or a database driver.
STORE_ENV = {"MLFLOW_ALLOW_FILE_STORE": "true"}

CONFIG = """\
name: small
seed: 3
data: {source: mnist, flatten: true, scale: 255.0, validation_split: 0.25, limit: {train: 512}}
model:
  layers:
    - Input: {shape: [784]}
    - Dense: {units: 16, activation: relu}
    - Dense: {units: 10, activation: softmax}
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 3, batch_size: 64}    # 384 training images: 6 steps an epoch
outputs: {tensorboard: false, state_every: epoch}
"""

# Moves the store away at the end of epoch BREAK_AT and back at the end of
# epoch MEND_AT (counted from 0), before trainrun's tracker logs that epoch.
BREAKER = """\
import os, shutil
import keras


class BreakStore(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        store = os.environ["STORE"]
        if epoch == int(os.environ["BREAK_AT"]):
            shutil.move(store, store + ".away")
        if epoch == int(os.environ["MEND_AT"]):
            shutil.move(store + ".away", store)
"""


@pytest.fixture
def client(monkeypatch):
    from mlflow import MlflowClient

    for name, value in STORE_ENV.items():
        monkeypatch.setenv(name, value)
    return lambda uri: MlflowClient(tracking_uri=uri)


def _workdir(tmp_path: Path, tracking_yaml: str = "", callbacks: str = "") -> Path:
    for f in RESUME_FIXTURES.glob("*.py"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "breaker.py").write_text(BREAKER)
    (tmp_path / "c.yaml").write_text(CONFIG + callbacks + tracking_yaml)
    return tmp_path


def _history_by_step(mlflow_client, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = mlflow_client.get_run(run_id)
    return {
        key: sorted((m.step, m.value) for m in mlflow_client.get_metric_history(run_id, key))
        for key in run.data.metrics
    }


def _assert_one_value_per_epoch(mlflow_client, run_id: str, run: Path) -> None:
    """The store holds each epoch of history.csv once, at step = epoch + 1, equal values."""
    rows = read_history(run)
    logged = _history_by_step(mlflow_client, run_id)
    assert set(logged) == set(rows[0]) - {"epoch"}, logged.keys()
    for key, values in logged.items():
        assert [step for step, _ in values] == [int(r["epoch"]) + 1 for r in rows], (key, values)
        for (_, value), row in zip(values, rows, strict=True):
            assert value == pytest.approx(float(row[key]), rel=1e-6), (key, values, rows)


# ------------------------------------------------------------------ no training


def test_unknown_key_is_one_error_line(tmp_path):
    work = _workdir(tmp_path, "tracking:\n  mlflow: {url: http://mlflow:5000}\n")
    r = cli("validate", work / "c.yaml", "--explain")
    assert_clean_error(r, "tracking.mlflow", "url", "line 13")


def test_no_uri_anywhere_is_one_error_line(tmp_path):
    work = _workdir(tmp_path, "tracking:\n  mlflow:\n")
    r = cli("validate", work / "c.yaml", "--explain", env={tracking.URI_ENV: ""})
    assert_clean_error(r, "tracking.mlflow", "no MLflow tracking URI", tracking.URI_ENV)


def test_params_are_the_flat_config_within_mlflow_limits():
    config = {
        "fit": {"epochs": 3, "class_weight": None},
        "model": {"layers": [{"Dense": {"units": 16}}, "Flatten"]},
        "callbacks": [{"my_callbacks:Logger": {"note": "x" * 7000}}],
        "data": {"flatten": True, "reshape": []},
    }
    got = tracking.params(config)
    assert got["fit.epochs"] == "3"
    assert "fit.class_weight" not in got  # unset
    assert got["model.layers.0.Dense.units"] == "16"
    assert got["model.layers.1"] == "Flatten"
    assert got["data.flatten"] == "true"
    assert got["data.reshape"] == "[]"
    long = got["callbacks.0.my_callbacks_Logger.note"]  # a name MLflow accepts everywhere
    assert len(long) == tracking.MAX_VALUE and long.endswith("(7000 characters, cut)")


def test_config_yaml_keeps_tracking_off_and_a_bare_key_on():
    from trainrun.tracking.config import TrackingConfig

    assert TrackingConfig().model_dump(mode="json") == {}  # read back: still off
    assert TrackingConfig.model_validate({"mlflow": None}).mlflow is not None


# ------------------------------------------------------------------ training


@pytest.mark.slow
def test_fit_logs_params_epochs_and_files(tmp_path, client):
    work = _workdir(tmp_path, "tracking:\n  mlflow:\n")  # the URI from the environment
    uri = f"file:{work / 'mlruns'}"
    r = cli(
        "fit",
        work / "c.yaml",
        "--runs-dir",
        work / "runs",
        env={**STORE_ENV, tracking.URI_ENV: uri},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(work / "runs")
    recorded = run_info(run)["tracking"]["mlflow"]
    assert recorded["uri"] == uri and recorded["experiment"] == "small"
    store = client(uri)
    mlflow_run = store.get_run(recorded["run_id"])
    assert mlflow_run.info.status == "FINISHED"
    assert store.get_experiment(mlflow_run.info.experiment_id).name == "small"
    assert mlflow_run.data.params["fit.epochs"] == "3"
    assert mlflow_run.data.params["model.layers.1.Dense.units"] == "16"
    assert mlflow_run.data.tags["trainrun.run_id"] == run.name
    _assert_one_value_per_epoch(store, recorded["run_id"], run)
    artifacts = {a.path for a in store.list_artifacts(recorded["run_id"])}
    assert artifacts == {"config.yaml", "history.csv", "model.keras"}
    assert "warning" not in r.stdout


@pytest.mark.slow
def test_ctrl_c_then_resume_logs_each_epoch_once(tmp_path, client):
    work = _workdir(
        tmp_path,
        "tracking:\n  mlflow: {uri: file:mlruns}\n",  # relative to the config's directory
        callbacks="callbacks: [sigint:InterruptAt]\n",
    )
    # Ctrl-C in epoch 2's last step: the epoch ends and is saved, then training stops
    # before the tracker's epoch-end hook; it is logged as the run stops.
    r = cli("fit", work / "c.yaml", "--runs-dir", work / "runs", env={**STORE_ENV, "INT_AT": "1:5"})
    assert r.returncode == 130, r.stdout + r.stderr
    run = only_run(work / "runs")
    recorded = run_info(run)["tracking"]["mlflow"]
    assert recorded["uri"] == f"file:{work / 'mlruns'}"
    store = client(recorded["uri"])
    assert store.get_run(recorded["run_id"]).info.status == "KILLED"
    assert len(read_history(run)) == 2
    _assert_one_value_per_epoch(store, recorded["run_id"], run)

    r = cli("resume", run, env=STORE_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_info(run)["tracking"]["mlflow"] == recorded  # the same MLflow run
    assert len(store.search_runs([store.get_run(recorded["run_id"]).info.experiment_id])) == 1
    assert store.get_run(recorded["run_id"]).info.status == "FINISHED"
    assert len(read_history(run)) == 3
    _assert_one_value_per_epoch(store, recorded["run_id"], run)


@pytest.mark.slow
def test_store_failing_mid_training_warns_once_and_trains_on(tmp_path, client):
    work = _workdir(
        tmp_path,
        "tracking:\n  mlflow: {uri: file:mlruns}\n",
        callbacks="callbacks: [breaker:BreakStore]\n",
    )
    env = {**STORE_ENV, "STORE": str(work / "mlruns"), "BREAK_AT": "0", "MEND_AT": "2"}
    r = cli("fit", work / "c.yaml", "--runs-dir", work / "runs", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(work / "runs")
    assert run_info(run)["status"] == "completed" and len(read_history(run)) == 3
    assert r.stdout.count("warning: MLflow tracking") == 1, r.stdout
    assert "training goes on" in r.stdout
    log = (run / "train.log").read_text()
    assert log.count("warning: MLflow tracking") == 2, log  # epochs 1 and 2 failed
    # Once the store answered again, the missed epochs were logged, each once.
    recorded = run_info(run)["tracking"]["mlflow"]
    _assert_one_value_per_epoch(client(recorded["uri"]), recorded["run_id"], run)


@pytest.mark.slow
def test_unreachable_store_is_an_error_before_training(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = _workdir(tmp_path, f"tracking:\n  mlflow: {{uri: 'http://127.0.0.1:{port}'}}\n")
    r = cli(
        "fit",
        work / "c.yaml",
        "--runs-dir",
        work / "runs",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    assert_clean_error(r, "tracking.mlflow.uri", f"127.0.0.1:{port}", "line 13", "cannot be used")
    assert "epoch 1/" not in r.stdout
    assert not (work / "runs").exists() or not any((work / "runs").iterdir())
