"""TensorFlow set-up for a run: devices, seeds, determinism, precision, strategy.

`setup` is called once per process, before anything touches TensorFlow's
devices: logical CPU devices and GPU visibility can only be set before the
runtime initialises, and MultiWorkerMirroredStrategy must exist before any op.

Distribution is TensorFlow's own ``tf.distribute``: trainrun picks the strategy,
builds model, optimizer and metrics inside its scope (`Trainer.prepare`) and
lets ``model.fit`` do the rest; `keras_compat` holds the one place where Keras
3 needs help under MultiWorkerMirroredStrategy.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any

import keras

import trainrun
from trainrun import keras_compat
from trainrun.cluster import Task, tf_config_task
from trainrun.config import LoadedConfig
from trainrun.errors import TrainrunError
from trainrun.lazy import lazy_module

# Imported on first use: setup() hands the JAX and torch backends to
# engine/backend_runtime.py, which runs without TensorFlow.
tf = lazy_module("tensorflow")

# Split the CPU into N logical devices, so that `distribute: mirrored` (and
# tests) can run data-parallel on a machine without GPUs. A property of the
# machine, not of the run, hence an environment variable and not a config key.
LOGICAL_CPUS_ENV = "TRAINRUN_LOGICAL_CPUS"


@dataclass
class Runtime:
    strategy: Any
    devices: dict[str, Any] = field(default_factory=dict)
    jit_compile: bool | str = "auto"
    notes: list[str] = field(default_factory=list)
    task: Task | None = None  # set under distribute: multi_worker in a cluster of processes
    backend: str = "tensorflow"  # the Keras backend (engine/backend_runtime.py for the others)

    @property
    def is_chief(self) -> bool:
        """The process that owns the run directory; every process when not multi-worker."""
        return self.task is None or self.task.is_chief

    @property
    def multi_worker(self) -> bool:
        return self.task is not None and self.task.num_workers > 1

    def state_every(self, requested: str | int) -> str | int:
        """How often resume state is saved. Every worker must take the same
        decision at the same step (saving reads synchronised variables, which is
        a collective), so the time-based 'auto' becomes 'epoch' across workers."""
        if self.multi_worker and requested == "auto":
            return "epoch"
        return requested

    def agree(self, text: str) -> str:
        """The chief's `text`, on every worker (a collective: all workers must call it)."""
        if not self.multi_worker:
            return text
        return next(t for chief, t in self._gather(text) if chief)

    def worker_values(self, text: str) -> set[str]:
        """Every worker's `text` (a collective): one value when the workers agree."""
        if not self.multi_worker:
            return {text}
        return {t for _, t in self._gather(text)}

    def _gather(self, text: str) -> list[tuple[bool, str]]:
        if self.backend == "jax":
            from trainrun.engine import jax_cluster

            return jax_cluster.gather_text(text, is_chief=self.is_chief)
        return keras_compat.gather_text(self.strategy, text, is_chief=self.is_chief)


def versions() -> dict[str, str]:
    backend = keras.backend.backend()
    if backend != "tensorflow":
        from trainrun.engine.backend_runtime import versions as other_versions

        return other_versions()
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "trainrun": trainrun.__version__,
    }


# ---------------------------------------------------------------- devices


def logical_cpus() -> int:
    raw = os.environ.get(LOGICAL_CPUS_ENV, "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise TrainrunError(f"{LOGICAL_CPUS_ENV}={raw!r}: expected a whole number of devices >= 1")
    return n


def _configure_devices(device: str | None) -> None:
    """Device settings that must precede TensorFlow's runtime initialisation."""
    try:
        if device == "cpu":
            tf.config.set_visible_devices([], "GPU")
        n = logical_cpus()
        if n > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
            )
    except RuntimeError as exc:  # TF already initialised in this process
        raise TrainrunError(f"cannot configure devices: {exc}") from None


def _gpu_details(gpu: Any) -> dict[str, Any]:
    details = tf.config.experimental.get_device_details(gpu) or {}
    cc = details.get("compute_capability")
    return {
        "name": gpu.name,
        "model": details.get("device_name"),
        "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
    }


def nvidia_gpu_present() -> str | None:
    """Evidence of an NVIDIA GPU on this machine, independent of TensorFlow."""
    nodes = sorted(glob.glob("/dev/nvidia[0-9]*"))
    if nodes:
        return nodes[0]
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        if listed.startswith("GPU"):
            return "nvidia-smi -L: " + listed.splitlines()[0]
    return None


def unusable_gpu_note(physical_gpus: list) -> str | None:
    """A GPU is on the machine but this TensorFlow cannot see it: say why, and the fix."""
    if physical_gpus:
        return None
    evidence = nvidia_gpu_present()
    if evidence is None:
        return None
    if not tf.test.is_built_with_cuda():
        if _installed("tensorflow") and _installed("tensorflow-cpu"):
            # Both distributions write the `tensorflow` package; the CPU one's files won.
            fix = f"pip install --force-reinstall --no-deps tensorflow=={tf.__version__}"
        else:
            fix = "pip install -e '.[gpu]' (tensorflow[and-cuda])"
        return (
            f"an NVIDIA GPU is present ({evidence}) but the installed TensorFlow "
            f"{tf.__version__} is a CPU-only build, so training runs on the CPU; "
            f"for the GPU: {fix}"
        )
    return (
        f"an NVIDIA GPU is present ({evidence}) but TensorFlow finds none (driver or CUDA "
        "libraries not loadable), so training runs on the CPU; see why with: python -c "
        "\"import tensorflow as tf; print(tf.config.list_physical_devices('GPU'))\""
    )


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _cpu_has_amx() -> bool:
    """AMX tiles (Intel Sapphire Rapids on): the CPUs where bfloat16 matmuls pay.

    AVX512-BF16 alone does not: measured on such a CPU (Zen 4), the MNIST MLP
    trained about 3x slower in mixed_bfloat16 than in float32.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags


def precision_note(precision: str, gpus: list[dict[str, Any]]) -> str | None:
    """Mixed precision runs anywhere; say so when this hardware gains nothing from it."""
    if precision == "float32":
        return None
    need = (7, 0) if precision == "mixed_float16" else (8, 0)
    if gpus:
        slow = [
            g
            for g in gpus
            if g["compute_capability"]
            and tuple(map(int, g["compute_capability"].split("."))) < need
        ]
        if not slow:
            return None
        g = slow[0]
        return (
            f"{precision} needs a GPU of compute capability {need[0]}.{need[1]} or newer to gain "
            f"speed; {g['model'] or g['name']} is {g['compute_capability']}: it runs, without the speed-up"
        )
    if precision == "mixed_bfloat16" and _cpu_has_amx():
        return None
    extra = " (this CPU has no AMX)" if precision == "mixed_bfloat16" else ""
    return (
        f"{precision} brings no speed-up without a GPU{extra}; it runs, usually slower than "
        "float32: set precision: float32 on this machine"
    )


# ---------------------------------------------------------------- strategy


def _multi_worker_strategy(task: Task | None, notes: list[str]) -> Any:
    """MultiWorkerMirroredStrategy from TF_CONFIG; made before any op runs, as TF requires."""
    if task is None:
        notes.append(
            "distribute: multi_worker without TF_CONFIG trains as a single worker; set "
            "TF_CONFIG on every worker (see README, Scaling out)"
        )
    keras_compat.enable_multi_worker()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _local_strategy(kind: str, gpus: list, cpus: list, notes: list[str]) -> Any:
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        # MirroredStrategy() alone takes every GPU, or only CPU:0 when there is none.
        devices = [d.name for d in gpus] if gpus else [d.name for d in cpus]
        if len(devices) == 1:
            notes.append(
                f"distribute: mirrored over a single device ({devices[0]}); "
                f"with no GPUs, {LOGICAL_CPUS_ENV}=N splits the CPU into N devices"
            )
        return tf.distribute.MirroredStrategy(devices=devices)
    if len(cpus) > 1 and not gpus:
        notes.append(
            f"{LOGICAL_CPUS_ENV}={len(cpus)} splits the CPU, but distribute: {kind} trains on "
            "one device; set distribute: mirrored to use them all"
        )
    return tf.distribute.get_strategy()  # the default, single-device strategy


def _strategy_name(strategy: Any) -> str:
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"  # its class is CollectiveAllReduceStrategy
    if strategy is tf.distribute.get_strategy():
        return "default"  # no tf.distribute strategy: one device
    return type(strategy).__name__


def _used_devices(strategy: Any, gpus: list) -> list[str]:
    if strategy is tf.distribute.get_strategy():
        return [gpus[0].name if gpus else "/device:CPU:0"]
    return [str(d) for d in strategy.extended.worker_devices]


def setup(loaded: LoadedConfig, *, device: str | None = None) -> Runtime:
    """Configure TensorFlow for this run. Call once per process, before building anything.
    Another Keras backend is set up by engine/backend_runtime.py."""
    if keras.backend.backend() != "tensorflow":
        from trainrun.engine import backend_runtime

        return backend_runtime.setup(loaded, device=device)
    from trainrun.data import pipeline

    cfg = loaded.config
    notes: list[str] = []
    task = tf_config_task() if cfg.distribute == "multi_worker" else None
    physical_gpus = tf.config.list_physical_devices("GPU")
    _configure_devices(device)
    multi = _multi_worker_strategy(task, notes) if cfg.distribute == "multi_worker" else None
    gpus = tf.config.list_logical_devices("GPU")  # the visible ones, after --device
    cpus = tf.config.list_logical_devices("CPU")
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    pipeline.map_sequentially(cfg.deterministic)
    if cfg.seed is not None:
        keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_dtype_policy(cfg.precision)
    gpu_info = [_gpu_details(g) for g in physical_gpus]
    for note in (
        unusable_gpu_note(physical_gpus),
        precision_note(cfg.precision, gpu_info if gpus else []),
    ):
        if note:
            notes.append(note)
    strategy = multi or _local_strategy(cfg.distribute, gpus, cpus, notes)
    jit: bool | str = cfg.compile.jit_compile
    if jit == "auto" and cfg.deterministic:
        # Op determinism silently turns XLA off; say so instead of pretending.
        jit = False
    # Otherwise 'auto' is Keras' own choice: XLA on GPUs, none on CPUs (where it was
    # measured here to compile for seconds and run a small convnet 10x slower),
    # none under tf.distribute.
    devices: dict[str, Any] = {
        "visible": [d.name for d in tf.config.list_logical_devices()],
        "gpus": gpu_info,
        "used": _used_devices(strategy, gpus),
        "strategy": _strategy_name(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "precision": cfg.precision,
        # Keras' compile wraps the optimizer in a LossScaleOptimizer for float16.
        "loss_scaling": cfg.precision == "mixed_float16",
    }
    if device == "cpu":
        devices["forced"] = "cpu"
    if task is not None:
        devices["workers"] = task.num_workers
        devices["task"] = {"type": task.type, "index": task.index, "chief": task.is_chief}
    devices["notes"] = notes  # the same list: notes added later (steps_per_execution) show too
    return Runtime(strategy=strategy, devices=devices, jit_compile=jit, notes=notes, task=task)


def steps_per_execution(
    loaded: LoadedConfig, steps_per_epoch: int | None, rt: Runtime | None = None
) -> int:
    """'auto': up to 128 steps per call into TensorFlow, and at least 8 calls an epoch
    (JAX takes the same rule; Keras' torch backend runs one step per call).

    Larger values amortise Python and dispatch overhead (the big win on small
    models); callbacks' batch hooks, the progress display and mid-epoch state
    saves then happen once per execution, so an epoch keeps a few of them.
    """
    spe = loaded.config.compile.steps_per_execution
    backend = rt.backend if rt is not None else "tensorflow"
    if backend == "torch":
        from trainrun.engine import backend_runtime

        return backend_runtime.torch_steps_per_execution(loaded)
    if backend == "tensorflow" and rt is not None and rt.strategy.num_replicas_in_sync > 1:
        limit = keras_compat.DISTRIBUTED_MAX_STEPS_PER_EXECUTION
        if spe != "auto" and int(spe) > limit:
            rt.notes.append(
                f"compile.steps_per_execution: {spe} fails with more than one replica in "
                f"Keras {keras.__version__}; using {limit}"
            )
        return limit
    if spe != "auto":
        return int(spe)
    if not steps_per_epoch:
        return 32
    wanted = max(1, min(128, steps_per_epoch // 8))
    if loaded.config.fit.steps_per_epoch:
        # An iterator that runs across epochs needs executions that end on epoch ends.
        return max(d for d in range(1, wanted + 1) if steps_per_epoch % d == 0)
    return wanted
