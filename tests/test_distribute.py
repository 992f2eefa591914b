"""Devices and scale: the device report, mixed precision, tf.distribute strategies.

Runs on a CPU-only machine: MirroredStrategy over two logical CPU devices
(TRAINRUN_LOGICAL_CPUS=2) and a real two-process MultiWorkerMirroredStrategy
cluster on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CONFIGS,
    SMALL,
    assert_clean_error,
    cli,
    cli_processes,
    free_ports,
    only_run,
    read_history,
    run_info,
)

pytestmark = pytest.mark.slow

MLP = CONFIGS / "mnist_mlp.yaml"
TWO_CPUS = {"TRAINRUN_LOGICAL_CPUS": "2"}


def fit(tmp_path: Path, *extra: str, env: dict | None = None, name: str = "runs") -> Path:
    runs = tmp_path / name
    r = cli("fit", MLP, "--runs-dir", runs, *SMALL, *extra, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run(runs)


def weights(model_file: Path) -> list[np.ndarray]:
    import keras

    return keras.saving.load_model(model_file, compile=False).get_weights()


def history_values(run: Path) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in read_history(run)]


def assert_same_history(a: Path, b: Path) -> None:
    ha, hb = history_values(a), history_values(b)
    assert len(ha) == len(hb)
    for ra, rb in zip(ha, hb, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), (key, ra, rb)


# ---------------------------------------------------------------- unit: runtime


def test_precision_notes(monkeypatch):
    from trainrun.engine import runtime

    def gpu(cc: str) -> dict:
        return {"name": "/physical_device:GPU:0", "model": "Some GPU", "compute_capability": cc}

    assert runtime.precision_note("float32", []) is None
    assert "no speed-up without a GPU" in runtime.precision_note("mixed_float16", [])
    assert runtime.precision_note("mixed_float16", [gpu("7.0")]) is None
    assert "compute capability 7.0" in runtime.precision_note("mixed_float16", [gpu("6.1")])
    assert runtime.precision_note("mixed_bfloat16", [gpu("8.0")]) is None
    assert "8.0 or newer" in runtime.precision_note("mixed_bfloat16", [gpu("7.5")])
    monkeypatch.setattr(runtime, "_cpu_has_amx", lambda: True)
    assert runtime.precision_note("mixed_bfloat16", []) is None
    monkeypatch.setattr(runtime, "_cpu_has_amx", lambda: False)
    assert "this CPU has no AMX" in runtime.precision_note("mixed_bfloat16", [])


def test_gpu_present_but_unusable(monkeypatch):
    import tensorflow as tf

    from trainrun.engine import runtime

    monkeypatch.setattr(runtime, "nvidia_gpu_present", lambda: None)
    assert runtime.unusable_gpu_note([]) is None  # no GPU on the machine: nothing to say
    monkeypatch.setattr(runtime, "nvidia_gpu_present", lambda: "/dev/nvidia0")
    assert runtime.unusable_gpu_note(["GPU:0"]) is None  # TensorFlow uses it
    monkeypatch.setattr(tf.test, "is_built_with_cuda", lambda: False)
    monkeypatch.setattr(runtime, "_installed", lambda dist: dist == "tensorflow-cpu")
    note = runtime.unusable_gpu_note([])
    assert "/dev/nvidia0" in note and "CPU-only build" in note and ".[gpu]" in note
    # The gpu extra installed, but tensorflow-cpu's files were written over the CUDA build.
    monkeypatch.setattr(runtime, "_installed", lambda dist: True)
    note = runtime.unusable_gpu_note([])
    assert f"pip install --force-reinstall --no-deps tensorflow=={tf.__version__}" in note
    monkeypatch.setattr(tf.test, "is_built_with_cuda", lambda: True)
    assert "finds none" in runtime.unusable_gpu_note([])


def test_mixed_float16_compiles_a_loss_scaled_optimizer(tmp_path):
    import keras

    from trainrun.config import load_config
    from trainrun.engine.events import Quiet
    from trainrun.engine.trainer import Trainer
    from trainrun.runs.rundir import RunDir

    try:
        for precision, scaled in (("mixed_float16", True), ("mixed_bfloat16", False)):
            loaded = load_config(MLP, [f"precision={precision}", "data.limit.train=256"])
            trainer = Trainer(loaded, RunDir(tmp_path), Quiet())
            trainer.prepare()
            assert trainer.model.layers[0].dtype_policy.name == precision
            assert (
                isinstance(trainer.model.optimizer, keras.optimizers.LossScaleOptimizer) is scaled
            )
            assert trainer.rt.devices["loss_scaling"] is scaled
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


def _fake_multi_worker_strategy(calls: list):
    """Enough of a MultiWorkerMirroredStrategy for Keras' reduce_per_replica."""
    from types import SimpleNamespace

    import tensorflow as tf

    probe = object.__new__(tf.distribute.MultiWorkerMirroredStrategy)
    probe._extended = SimpleNamespace(_in_multi_worker_mode=lambda: True)

    def reduce(op, value, axis=None):
        calls.append((op, axis))
        return value

    probe.reduce = reduce
    return probe


def test_keras_still_needs_the_compat_shim():
    """Fails once Keras fixes what trainrun/keras_compat.py works around: then drop it."""
    import inspect

    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    from trainrun import keras_compat

    keras_compat.enable_multi_worker()
    keras_compat.enable_multi_worker()  # idempotent
    step_outputs = {"loss": tf.constant(1.0), "accuracy": tf.constant(0.5)}

    calls: list = []
    keras_compat.original_reduce_per_replica()(
        step_outputs, _fake_multi_worker_strategy(calls), "auto"
    )
    assert calls == [("MEAN", 0), ("MEAN", 0)], (
        "Keras no longer reduces scalar step outputs over axis 0 under "
        f"MultiWorkerMirroredStrategy ({calls}): remove keras_compat.enable_multi_worker"
    )
    calls.clear()
    trainer.reduce_per_replica(step_outputs, _fake_multi_worker_strategy(calls), "auto")
    assert calls == [("MEAN", None), ("MEAN", None)]

    source = inspect.getsource(trainer.TensorFlowTrainer._maybe_symbolic_build)
    assert "distribute_strategy.reduce(" in source, (
        "Keras' _maybe_symbolic_build no longer reduces the data batch across replicas: "
        "check whether keras_compat.skip_symbolic_build is still needed"
    )

    # steps_per_execution > 1 with two replicas (MirroredStrategy over 2 logical CPUs).
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        x, y = np.ones((64, 4), "float32"), np.zeros((64,), "int32")
        with strategy.scope():
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
            model.compile("sgd", "sparse_categorical_crossentropy", steps_per_execution=2)
        try:
            model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(16), verbose=0)
        except tf.errors.InvalidArgumentError as exc:
            print("FAILS:", str(exc).splitlines()[0])
        else:
            print("WORKS")
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert "FAILS:" in r.stdout, (
        "steps_per_execution > 1 now works with two replicas: raise "
        "keras_compat.DISTRIBUTED_MAX_STEPS_PER_EXECUTION\n" + r.stdout + r.stderr
    )


# ---------------------------------------------------------------- CLI: one process


def test_device_report_and_forced_cpu(tmp_path):
    run = fit(tmp_path, "--device", "cpu")
    devices = run_info(run)["devices"]
    assert devices["forced"] == "cpu"
    assert devices["strategy"] == "default" and devices["replicas"] == 1
    assert devices["used"] == ["/device:CPU:0"]
    assert devices["precision"] == "float32" and devices["loss_scaling"] is False
    assert "/device:CPU:0" in devices["visible"]
    assert (
        "device /device:CPU:0 (default, 1 replica(s), float32)" in (run / "train.log").read_text()
    )


def test_mixed_float16_on_cpu_warns_and_trains(tmp_path):
    runs = tmp_path / "runs"
    r = cli("fit", MLP, "--runs-dir", runs, *SMALL, "--set", "precision=mixed_float16")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning:" in r.stdout and "mixed_float16 brings no speed-up" in " ".join(
        r.stdout.split()
    )
    run = only_run(runs)
    info = run_info(run)
    assert info["status"] == "completed"
    assert info["devices"]["precision"] == "mixed_float16" and info["devices"]["loss_scaling"]
    assert any("mixed_float16" in n for n in info["devices"]["notes"])
    assert float(read_history(run)[-1]["val_sparse_categorical_accuracy"]) > 0.8


def test_bad_environment_is_a_clean_error(tmp_path):
    r = cli(
        "fit", MLP, "--runs-dir", tmp_path / "runs", *SMALL, env={"TRAINRUN_LOGICAL_CPUS": "two"}
    )
    assert_clean_error(r, "TRAINRUN_LOGICAL_CPUS='two'", "whole number")
    r = cli(
        "fit",
        MLP,
        "--runs-dir",
        tmp_path / "runs",
        *SMALL,
        "--set",
        "distribute=multi_worker",
        env={
            "TF_CONFIG": '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 4}}'
        },
    )
    assert_clean_error(r, "TF_CONFIG task index 4 is out of range")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory) -> Path:
    """2 epochs under MirroredStrategy over two logical CPUs: the reference for the others."""
    return fit(tmp_path_factory.mktemp("mirrored"), "--set", "distribute=mirrored", env=TWO_CPUS)


def test_mirrored_over_two_logical_cpus(mirrored_run):
    info = run_info(mirrored_run)
    devices = info["devices"]
    assert info["status"] == "completed"
    assert devices["strategy"] == "MirroredStrategy" and devices["replicas"] == 2
    assert [d.rsplit("/", 1)[-1] for d in devices["used"]] == ["device:CPU:0", "device:CPU:1"]
    rows = read_history(mirrored_run)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert float(rows[-1]["val_sparse_categorical_accuracy"]) > 0.8
    # steps_per_execution 'auto' drops to 1 with two replicas (see keras_compat).
    assert "25 steps/epoch, 1 per execution" in (mirrored_run / "train.log").read_text()


def test_resume_under_mirrored_continues_exactly(tmp_path, mirrored_run):
    r = cli(
        "fit",
        MLP,
        "--runs-dir",
        tmp_path / "runs",
        *SMALL,
        "--set",
        "fit.epochs=1",
        "--set",
        "distribute=mirrored",
        env=TWO_CPUS,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    r = cli("resume", run, "--epochs", "2", env=TWO_CPUS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run_info(run)["devices"]["replicas"] == 2
    assert_same_history(run, mirrored_run)
    for a, b in zip(
        weights(run / "model.keras"), weights(mirrored_run / "model.keras"), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- CLI: two workers


def run_workers(*args: str, timeout: int = 240) -> list[subprocess.CompletedProcess]:
    """`trainrun ARGS` as worker 0 (chief) and worker 1 of one cluster; killed on timeout."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    envs = [
        {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        for i in range(2)
    ]
    return cli_processes(*args, envs=envs, timeout=timeout)


def test_two_workers_train_resume_and_agree(tmp_path, mirrored_run):
    runs = tmp_path / "runs"
    base = ["--runs-dir", runs, "--set", "distribute=multi_worker"]
    for r in run_workers("fit", MLP, *base, *SMALL, "--set", "fit.epochs=1"):
        assert r.returncode == 0, r.stdout + r.stderr
    chief = only_run(runs)  # one run: the non-chief writes inside it
    worker = chief / "worker-1"
    for r in run_workers("resume", chief.name, "--epochs", "2", "--runs-dir", runs):
        assert r.returncode == 0, r.stdout + r.stderr

    info, winfo = run_info(chief), run_info(worker)
    assert info["status"] == winfo["status"] == "completed"
    assert info["devices"]["strategy"] == "MultiWorkerMirroredStrategy"
    assert info["devices"]["replicas"] == 2 and info["devices"]["workers"] == 2
    assert info["devices"]["task"] == {"type": "worker", "index": 0, "chief": True}
    assert winfo["devices"]["task"] == {"type": "worker", "index": 1, "chief": False}
    assert info["id"] == chief.name and winfo["id"] == f"{chief.name}/worker-1"
    assert "worker 1 of 2 workers" in (worker / "train.log").read_text()
    assert len(info["resumes"]) == 1 and info["epochs_done"] == 2
    # The chief's run directory holds only the chief's files and the worker's folder.
    assert sorted(p.name for p in chief.iterdir() if p.name.startswith("worker-")) == ["worker-1"]

    chief_w, worker_w = weights(chief / "model.keras"), weights(worker / "model.keras")
    for a, b in zip(chief_w, worker_w, strict=True):
        np.testing.assert_array_equal(a, b)
    # Same global batch, same data: the two workers train what two local replicas do.
    assert_same_history(chief, mirrored_run)
    assert float(read_history(chief)[-1]["val_sparse_categorical_accuracy"]) > 0.8

    # A worker without its state refuses (never restarts silently), and the others
    # hear why and refuse too, instead of waiting for it.
    shutil.rmtree(worker / "state")
    chief_r, worker_r = run_workers("resume", chief.name, "--epochs", "3", "--runs-dir", runs)
    assert_clean_error(worker_r, "state is missing or empty", "refused")
    assert_clean_error(chief_r, "the workers' saved states differ", "no usable state")
    assert run_info(chief)["epochs_done"] == 2


def test_validate_a_multi_worker_config_needs_no_cluster(tmp_path):
    """validate builds without joining the cluster (which would wait for the other worker)."""
    port_a, port_b = free_ports(2)
    tf_config = {
        "cluster": {"worker": [f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"]},
        "task": {"type": "worker", "index": 0},
    }
    r = cli(
        "validate",
        MLP,
        "--set",
        "distribute=multi_worker",
        env={"TF_CONFIG": json.dumps(tf_config)},
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Total params" in r.stdout and "distribute: multi_worker" in r.stdout
