"""`backend: tensorflow | jax | torch`: the same YAML on any Keras backend.

On JAX (installed with the `dev` extra) and on torch, the same tests: a killed
run resumes bitwise as if never stopped, evaluate/predict use the run's backend,
the trained model predicts the same on TensorFlow, and training runs with
TensorFlow not importable. On JAX, `distribute: mirrored` is
keras.distribution.DataParallel over two CPU devices. torch is not in `dev` (its
Linux wheel pulls gigabytes of CUDA libraries): its tests run where it is
installed and are skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CONFIGS,
    ROOT,
    assert_clean_error,
    assert_same_model,
    cli,
    cli_processes,
    data_dir,
    free_ports,
    only_run,
    read_history,
    resume_workdir,
    run_info,
)

MLP = CONFIGS / "mnist_mlp.yaml"
TINY = ["--set", "data.limit.train=512", "--set", "fit.epochs=1"]
HAS_JAX = importlib.util.find_spec("jax") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="jax is not installed: pip install -e '.[jax]'")
needs_torch = pytest.mark.skipif(
    not HAS_TORCH, reason="torch is not installed: pip install -e '.[torch]' (a large wheel)"
)
# As if TensorFlow were not installed: `import tensorflow` fails, and
# importlib.util.find_spec('tensorflow') finds nothing.
NO_TF_SITE = "import sys\nsys.modules['tensorflow'] = None\n"


@pytest.fixture(autouse=True, scope="module")
def jax_cache(tmp_path_factory) -> Path:
    """One JAX compilation cache for this file's runs (not the user's ~/.cache)."""
    cache = tmp_path_factory.mktemp("jax_cache")
    before = os.environ.get("TRAINRUN_JAX_CACHE")
    os.environ["TRAINRUN_JAX_CACHE"] = str(cache)
    yield cache
    if before is None:
        del os.environ["TRAINRUN_JAX_CACHE"]
    else:
        os.environ["TRAINRUN_JAX_CACHE"] = before


def no_tensorflow(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "no_tf"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(NO_TF_SITE)
    return {"PYTHONPATH": f"{ROOT}:{site}"}


def fit(runs: Path, *extra: str, env: dict | None = None, config: Path = MLP):
    r = cli("fit", config, "--runs-dir", runs, *extra, env=env)
    return r


# ---------------------------------------------------------------- fast: bad input


def test_missing_backend_package_is_one_line(tmp_path):
    if HAS_TORCH:
        pytest.skip("torch is installed: nothing missing to report")
    r = fit(tmp_path / "runs", "--set", "backend=torch")
    assert_clean_error(r, "backend: torch needs torch", "pip install -e '.[torch]'")
    assert not (tmp_path / "runs").exists()


def test_unknown_backend_is_a_config_error(tmp_path):
    r = cli("validate", MLP, "--set", "backend=theano")
    assert_clean_error(r, "backend", "tensorflow", "jax", "torch")


@pytest.mark.parametrize("kind", ["mirrored", "multi_worker"])
def test_torch_cannot_distribute(kind):
    r = cli("validate", MLP, "--set", "backend=torch", "--set", f"distribute={kind}")
    assert_clean_error(r, f"distribute: {kind}", "torch")


def test_torch_runs_one_step_per_execution(tmp_path):
    # Keras' torch trainer raises for more; refused before anything is built.
    r = fit(tmp_path / "runs", "--set", "backend=torch", "--set", "compile.steps_per_execution=4")
    assert_clean_error(r, "compile.steps_per_execution", "torch", "1 or auto")
    assert (r.stdout + r.stderr).count("steps_per_execution") == 2  # the key, the option
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- the NumPy feed


@pytest.mark.slow
def test_numpy_feed_order_is_decided_by_seed_and_epoch():
    from trainrun.data.arrays import ArraySplit
    from trainrun.data.numpy_feed import EpochBatches, EpochCounter, batches

    x = np.arange(50, dtype=np.uint8).reshape(25, 2)
    split = ArraySplit(x, np.arange(25))
    kw = {"batch_size": 4, "shuffle": True, "seed": 3, "scale": 2.0}
    run = list(batches(split, start_batch=0, repeat=False, **kw))
    assert len(run) == 7 and len(run[-1][0]) == 1  # the last batch is short
    assert sorted(np.concatenate([b[1] for b in run]).tolist()) == list(range(25))
    assert run[0][0].dtype == np.float32 and np.array_equal(run[0][0], x[run[0][1]] / 2.0)
    # From any global batch, the uninterrupted run's batches.
    stream = batches(split, start_batch=0, repeat=True, **kw)
    whole = [next(stream) for _ in range(21)]  # three passes
    for start in (0, 5, 7, 16):
        tail = itertools.islice(batches(split, start_batch=start, repeat=True, **kw), 21 - start)
        for got, want in zip(tail, whole[start:], strict=True):
            assert np.array_equal(got[1], want[1])
    # Each epoch its own order; the PyDataset of epoch e is pass e.
    counter = EpochCounter(0)
    epochs = EpochBatches(split, counter=counter, **kw)
    assert len(epochs) == 7
    for e in range(3):
        counter.assign(e)
        got = np.concatenate([epochs[i][1] for i in range(len(epochs))])
        want = np.concatenate([b[1] for b in whole[7 * e : 7 * e + 7]])
        assert np.array_equal(got, want)
    assert not np.array_equal(whole[0][1], whole[7][1])


# ---------------------------------------------------------------- JAX and torch

# The same checks on each backend that is installed (torch is not in `dev`): every
# test that takes the `backend` fixture runs once per backend.
BACKENDS = [pytest.param("jax", marks=needs_jax), pytest.param("torch", marks=needs_torch)]
# tiny.yaml runs 2 steps per execution; Keras' torch trainer runs one step per call.
BACKEND_SETTINGS = {"jax": [], "torch": ["--set", "compile.steps_per_execution=1"]}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def work(tmp_path_factory, backend) -> Path:
    return resume_workdir(tmp_path_factory, backend)


def _tiny(work: Path, backend: str, name: str, *extra: str, env: dict | None = None):
    runs = work / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    r = cli(
        "fit",
        work / "tiny.yaml",
        "--runs-dir",
        runs,
        "--name",
        name,
        "--set",
        f"backend={backend}",
        "--set",
        "fit.epochs=2",
        "--set",
        "data.limit.train=512",
        *BACKEND_SETTINGS[backend],
        *extra,
        env=env,
    )
    (run,) = set(runs.iterdir()) - before
    return r, run


@pytest.fixture(scope="module")
def baseline(work, backend) -> Path:
    r, run = _tiny(work, backend, "baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    return run


@pytest.mark.slow
def test_run_records_its_backend(backend, baseline, jax_cache):
    info = run_info(baseline)
    devices = info["devices"]
    assert info["backend"] == backend and devices["backend"] == backend
    assert devices["used"] == {"jax": ["cpu:0"], "torch": ["cpu"]}[backend]
    assert devices["replicas"] == 1 and devices["gpus"] == []
    assert backend in info["versions"] and "tensorflow" not in info["versions"]
    assert f"backend: {backend}" in (baseline / "config.yaml").read_text()
    assert len(read_history(baseline)) == 2
    if backend == "jax":
        assert devices["compilation_cache"] == str(jax_cache)
        assert any(jax_cache.iterdir())  # compiled programs kept for the next process


@pytest.mark.slow
def test_killed_mid_epoch_resumes_bitwise(backend, work, baseline):
    r, run = _tiny(work, backend, "killed", env={"KILL_AT": "1:5"})
    assert r.returncode == -signal.SIGKILL
    out = cli("resume", run)  # the run's backend, from its config.yaml
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming from epoch" in out.stdout
    # The rest of the epoch is fed with its length: Keras has nothing to warn about.
    assert "ran out of data" not in out.stdout + out.stderr
    assert_same_model(run, baseline)
    assert run_info(run)["status"] == "completed"


@pytest.mark.slow
def test_model_predicts_the_same_on_tensorflow(backend, baseline, tmp_path):
    with np.load(Path(data_dir()) / "mnist.npz") as f:
        np.save(tmp_path / "x.npy", f["x_test"][:64])
    preds = {}
    for on in (backend, "tensorflow"):
        out = tmp_path / f"{on}.npy"
        extra = ["--backend", on] if on == "tensorflow" else []
        r = cli("predict", baseline, tmp_path / "x.npy", "--out", out, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
        preds[on] = np.load(out)
    assert preds[backend].shape == (64, 10)
    np.testing.assert_allclose(preds[backend], preds["tensorflow"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_trains_without_tensorflow(backend, tmp_path):
    env = no_tensorflow(tmp_path)
    checked = cli("validate", MLP, "--set", f"backend={backend}", env=env)  # builds the model
    assert checked.returncode == 0, checked.stdout + checked.stderr
    r = fit(tmp_path / "runs", "--set", f"backend={backend}", *TINY, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    assert not (run / "tensorboard").exists()  # TensorBoard's writer is TensorFlow's
    ev = cli("evaluate", run, env=env)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    if backend != "jax":
        return  # what follows does not depend on the backend
    # A tf.data source says, in one line, that it needs TensorFlow.
    (tmp_path / "ds.py").write_text("def make():\n    raise AssertionError('not called')\n")
    cfg = tmp_path / "tfdata.yaml"
    cfg.write_text(
        "backend: jax\ndata:\n  source: tfdata\n  train: {factory: 'ds:make'}\n"
        "model:\n  layers:\n    - Input: {shape: [4]}\n    - Dense: {units: 1}\n"
        "compile: {optimizer: sgd, loss: mse}\n"
    )
    bad = fit(tmp_path / "runs2", config=cfg, env=env)
    assert_clean_error(bad, "source: tfdata needs TensorFlow", "pip install tensorflow-cpu")
    assert not (tmp_path / "runs2").exists()


# ---------------------------------------------------------------- JAX over several devices

JAX_ONLY = pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)
TWO_CPU_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
TINY_SETS = ["--set", "fit.epochs=2", "--set", "data.limit.train=512"]  # as _tiny


@pytest.fixture(scope="module")
def jax_mirrored(work, backend) -> Path:
    """tiny.yaml on JAX, keras.distribution.DataParallel over two CPU devices of one process."""
    r, run = _tiny(work, backend, "mirrored", "--set", "distribute=mirrored", env=TWO_CPU_DEVICES)
    assert r.returncode == 0, r.stdout + r.stderr
    return run


@pytest.mark.slow
@JAX_ONLY
def test_jax_data_parallel_over_two_cpu_devices(jax_mirrored):
    devices = run_info(jax_mirrored)["devices"]
    assert devices["strategy"] == "DataParallel" and devices["replicas"] == 2
    assert devices["used"] == ["cpu:0", "cpu:1"]


@pytest.mark.slow
@JAX_ONLY
def test_jax_batches_that_do_not_split_over_the_devices_are_refused(work, backend, tmp_path):
    """A batch whose samples do not divide over the devices failed mid-run with JAX's
    IndivisibleError; it is refused before the run starts, naming what to change."""
    runs = tmp_path / "runs"
    r = cli(
        "fit", work / "tiny.yaml", "--runs-dir", runs, "--set", "backend=jax",
        "--set", "distribute=mirrored", "--set", "data.limit.train=513", "--set", "fit.epochs=1",
        env=TWO_CPU_DEVICES,
    )  # fmt: skip
    assert_clean_error(r, "which do not split evenly over 2 devices", "data.limit")
    assert not runs.exists() or not any(runs.iterdir())


def _cluster(kill_worker_at: str | None = None) -> list[dict]:
    """Two JAX processes on this machine, as Keras' variables describe them."""
    port = free_ports(1)[0]
    common = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
    }
    worker = {"KILL_AT": kill_worker_at} if kill_worker_at else {}
    return [
        {**common, "KERAS_DISTRIBUTION_PROCESS_ID": "0"},
        {**common, "KERAS_DISTRIBUTION_PROCESS_ID": "1", **worker},
    ]


@pytest.mark.slow
@JAX_ONLY
def test_jax_workers_agree_on_the_seed_and_refuse_different_configs(work, backend, tmp_path):
    """Without a seed in the config each process draws its own: the chief's is taken by
    all (were it not, the seed would differ too). A --set on one machine only is refused
    on both, before any run directory is made. Where the config lies (base_dir) may
    differ from machine to machine."""
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(work, elsewhere, ignore=shutil.ignore_patterns("runs", "cluster"))
    runs = tmp_path / "runs"
    args = ["fit", "--runs-dir", runs, "--set", "seed=null"]
    args += ["--set", "backend=jax", "--set", "distribute=multi_worker", *TINY_SETS]
    chief_r, worker_r = cli_processes(
        *args,
        envs=_cluster(),
        extra=[[work / "tiny.yaml"], [elsewhere / "tiny.yaml", "--set", "fit.batch_size=64"]],
    )
    for r in (chief_r, worker_r):
        assert_clean_error(r, "the workers' configs differ in fit:", "same config")
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.slow
@JAX_ONLY
def test_jax_two_processes_resume_after_a_kill_bitwise(work, backend, jax_mirrored):
    """distribute: multi_worker on JAX: two processes (jax.distributed, through Keras'
    initialize) train one model, each feeding its half of every batch. One is killed
    mid-epoch; the other fails in one line (not JAX's abort at exit); both resume from
    the newest state both saved and finish bitwise where one process over two devices does."""
    runs = work / "cluster"
    # tiny.yaml saves state after every execution: the chief saves one more (step 6 of
    # epoch 2) than the worker killed before it, then fails at the next collective.
    sets = ["--set", "backend=jax", "--set", "distribute=multi_worker", *TINY_SETS]
    chief_r, worker_r = cli_processes(
        "fit", work / "tiny.yaml", "--runs-dir", runs, *sets, envs=_cluster("1:5")
    )
    assert worker_r.returncode == -signal.SIGKILL
    out = chief_r.stdout + chief_r.stderr
    assert chief_r.returncode == 1, out
    assert "error:" in out and "Traceback" not in out and "Check failure" not in out, out
    chief = only_run(runs)
    worker = chief / "worker-1"
    assert run_info(chief)["status"] == "failed"

    chief_r, worker_r = cli_processes("resume", chief, envs=_cluster())
    for r in (chief_r, worker_r):  # from the newest state both have
        assert r.returncode == 0, r.stdout + r.stderr
        assert "resuming from epoch 2, step 4" in r.stdout
    assert "this worker saved up to epoch 2, step 6, another only to epoch 2, step 4" in (
        chief_r.stdout
    )
    info, winfo = run_info(chief), run_info(worker)
    assert info["backend"] == winfo["backend"] == "jax"  # the run's, not TensorFlow
    assert info["devices"]["workers"] == 2 and info["devices"]["replicas"] == 2
    assert info["devices"]["task"] == {"type": "worker", "index": 0, "chief": True}
    assert winfo["devices"]["task"] == {"type": "worker", "index": 1, "chief": False}
    assert info["status"] == winfo["status"] == "completed"
    assert_same_model(chief, jax_mirrored)
    assert_same_model(worker, jax_mirrored)

    # A worker without its state refuses, and the chief hears why and refuses too,
    # before restoring anything (restoring unequal values would fail inside JAX).
    shutil.rmtree(worker / "state")
    chief_r, worker_r = cli_processes("resume", chief, "--epochs", "3", envs=_cluster())
    assert_clean_error(worker_r, "state is missing or empty", "refused")
    assert_clean_error(chief_r, "the workers' saved states differ", "no usable state")
    assert run_info(chief)["epochs_done"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS[:1], indirect=True)  # JAX's own
def test_jax_data_on_device_resumes_bitwise_as_the_host_run(work, backend, baseline):
    """data.on_device keeps the arrays on the device and gathers batches there, and
    compile.scan_steps runs each execution as one lax.scan: the same batches and steps,
    so a run killed mid-epoch resumes to the weights of the host-fed, Keras-looped run."""
    sets = ["--set", "data.on_device=true", "--set", "compile.scan_steps=true"]
    r, run = _tiny(work, backend, "on-device", *sets, env={"KILL_AT": "1:5"})
    assert r.returncode == -signal.SIGKILL
    assert run_info(run)["devices"]["data_on_device"] is True
    assert run_info(run)["devices"]["scan_steps"] is True
    base = run_info(baseline)["devices"]
    assert base["data_on_device"] is False and base["scan_steps"] is False  # auto, on a CPU
    out = cli("resume", run)
    assert out.returncode == 0, out.stdout + out.stderr
    assert_same_model(run, baseline)


# ---------------------------------------------------------------- torch


@needs_torch
@pytest.mark.slow
def test_torch_scores_a_run_trained_with_several_steps_per_execution(tmp_path):
    """The saved model keeps its compile's steps_per_execution, which Keras' torch
    trainer refuses above 1: evaluate/predict --backend torch score it one step a call."""
    r = fit(tmp_path / "runs", *TINY, "--set", "compile.steps_per_execution=4")
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    ev = cli("evaluate", run, "--backend", "torch")
    assert ev.returncode == 0, ev.stdout + ev.stderr
    with np.load(Path(data_dir()) / "mnist.npz") as f:
        np.save(tmp_path / "x.npy", f["x_test"][:8])
    pr = cli("predict", run, tmp_path / "x.npy", "--backend", "torch", "--out", tmp_path / "p.npy")
    assert pr.returncode == 0, pr.stdout + pr.stderr
    assert np.load(tmp_path / "p.npy").shape == (8, 10)


@needs_torch
@pytest.mark.slow
def test_torch_gallery_metric_result_is_not_its_variable(tmp_path):
    """On torch, `ops.cast` to the same dtype returns the variable's own tensor, and
    Keras' torch fit keeps result() tensors in the epoch logs while validation resets
    and refills the variables: the training count would show validation's."""
    code = (
        "import numpy as np\n"
        "from guide_objects import CategoricalTruePositives\n"
        "m = CategoricalTruePositives()\n"
        "m.update_state(np.eye(3), np.eye(3))\n"
        "r = m.result()\n"
        "m.reset_state()\n"
        "print(float(r))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=CONFIGS / "keras_io",
        env={**os.environ, "KERAS_BACKEND": "torch"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "3.0"
