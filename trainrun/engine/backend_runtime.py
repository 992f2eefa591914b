"""Run set-up on the JAX and torch backends: devices, seeds, determinism,
precision, distribution, without TensorFlow.

The TensorFlow backend's set-up is `runtime.setup`, which hands the others to
`setup` here and gets the same `Runtime` back: the device report that run.json
keeps (``devices``), the jit choice and the notes. In place of a tf.distribute
strategy the Runtime holds a `LocalStrategy`: the scope the model is built in
and its number of replicas. On JAX, ``distribute: mirrored`` (and ``auto``
with two or more accelerators) is Keras' ``keras.distribution.DataParallel``
over the devices, set globally before the model is built.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import keras

import trainrun
from trainrun.config import LoadedConfig
from trainrun.engine.runtime import Runtime, Task, precision_note
from trainrun.errors import ConfigError, TrainrunError


@dataclass
class LocalStrategy:
    """What the trainer asks of a strategy: a scope to build in, and the replicas."""

    num_replicas_in_sync: int = 1
    distribution: Any = None  # keras.distribution.DataParallel, or None: one device
    processes: int = 1  # JAX processes that share each batch (distribute: multi_worker)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        if self.distribution is None:
            yield
            return
        with self.distribution.scope():
            yield


def versions() -> dict[str, str]:
    backend = keras.backend.backend()
    out = {"python": platform.python_version(), "keras": keras.__version__}
    if backend == "jax":
        import jax

        out["jax"] = jax.__version__
    elif backend == "torch":
        import torch

        out["torch"] = torch.__version__
    out["trainrun"] = trainrun.__version__
    return out


# ---------------------------------------------------------------- JAX

# Where compiled XLA programs are kept between processes (JAX's persistent cache):
# a directory, or 'off'. Default: $XDG_CACHE_HOME/trainrun/jax (~/.cache/...).
JAX_CACHE_ENV = "TRAINRUN_JAX_CACHE"


def _jax_compilation_cache(notes: list[str]) -> str | None:
    """Turn on JAX's persistent compilation cache, unless the user set up their own.

    Measured on the 2-core CI machine (MNIST MLP): building the model compiles an
    XLA program per variable initializer, 3.0 s of start-up; from the cache, 0.6 s.
    The train and test steps are cached too. Programs are keyed by their HLO, so a
    cached one computes what a fresh compile would.
    """
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]  # the user's, with their settings
    chosen = os.environ.get(JAX_CACHE_ENV, "").strip()
    if chosen.lower() == "off":
        return None
    if not chosen:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        chosen = os.path.join(base, "trainrun", "jax")
    try:
        os.makedirs(chosen, exist_ok=True)
    except OSError as exc:
        notes.append(
            f"JAX compilation cache {chosen} cannot be made ({exc.strerror or exc}); compiling "
            f"afresh (set {JAX_CACHE_ENV}=DIR or {JAX_CACHE_ENV}=off)"
        )
        return None
    jax.config.update("jax_compilation_cache_dir", chosen)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return chosen


def _jax_configure(device: str | None, deterministic: bool) -> None:
    """What JAX reads as its backend starts (at the first device query, or in joining
    a cluster): deterministic GPU kernels, and --device cpu."""
    import jax

    if deterministic and "--xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()
    if device == "cpu":
        try:
            jax.config.update("jax_platforms", "cpu")
        except RuntimeError as exc:  # the backend already started in this process
            raise TrainrunError(f"--device cpu: cannot configure JAX's devices: {exc}") from None


def _jax_cluster(kind: str, notes: list[str]) -> Task | None:
    """distribute: multi_worker: join the processes the environment describes
    (engine/jax_cluster.py); this starts JAX's backend."""
    if kind != "multi_worker":
        return None
    from trainrun.cluster import cluster
    from trainrun.engine import jax_cluster

    place = cluster()
    if place is None:
        notes.append(
            "distribute: multi_worker without KERAS_DISTRIBUTION_* (or TF_CONFIG) trains as a "
            "single process; set them on every process (see README, Several machines)"
        )
        return None
    jax_cluster.join(place)
    return place.task


def _jax_gpu(d: Any) -> dict[str, Any]:
    return {
        "name": f"{d.platform}:{d.id}",
        "model": getattr(d, "device_kind", None),
        "compute_capability": getattr(d, "compute_capability", None),
    }


def _jax_strategy(kind: str, devices: list[Any], processes: int, notes: list[str]) -> LocalStrategy:
    """DataParallel over `devices` (those of all `processes`, under multi_worker), or one
    device."""
    accelerators = [d for d in devices if d.platform != "cpu"]
    spread = kind in ("mirrored", "multi_worker") or (kind == "auto" and len(accelerators) > 1)
    if spread and len(devices) > 1:
        # Across processes each feeds its own share of a batch (NumpyFeed.share); Keras'
        # auto-sharding is for tf.data only.
        distribution = keras.distribution.DataParallel(
            devices=devices, auto_shard_dataset=processes == 1
        )
        keras.distribution.set_distribution(distribution)
        return LocalStrategy(len(devices), distribution, processes)
    if kind == "mirrored":
        notes.append(
            f"distribute: mirrored over a single device ({devices[0]}); with no GPUs, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N splits the CPU into N "
            "devices"
        )
    elif kind != "none" and len(devices) > 1 and not accelerators:
        notes.append(
            f"JAX sees {len(devices)} CPU devices, but distribute: {kind} trains on one; "
            "set distribute: mirrored to use them all"
        )
    return LocalStrategy()


# ---------------------------------------------------------------- torch


def _torch_devices(device: str | None, deterministic: bool) -> list[str]:
    import torch

    if deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if device != "cpu" and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


def _torch_gpu(name: str) -> dict[str, Any]:
    import torch

    index = int(name.split(":")[1])
    major, minor = torch.cuda.get_device_capability(index)
    return {
        "name": name,
        "model": torch.cuda.get_device_name(index),
        "compute_capability": f"{major}.{minor}",
    }


# ---------------------------------------------------------------- both


def setup(loaded: LoadedConfig, *, device: str | None = None) -> Runtime:
    """Configure the JAX or torch backend for this run (once per process, before
    building anything)."""
    cfg = loaded.config
    backend = keras.backend.backend()
    notes: list[str] = []
    cache = None
    if backend == "jax":
        cache = _jax_compilation_cache(notes)
        _jax_configure(device, cfg.deterministic)
        task = _jax_cluster(cfg.distribute, notes)
        import jax

        found, local = jax.devices(), jax.local_devices()  # every process's; this one's
        gpus = [_jax_gpu(d) for d in local if d.platform != "cpu"]
        names = [f"{d.platform}:{d.id}" for d in found]
        visible = [f"{d.platform}:{d.id}" for d in local]
        strategy = _jax_strategy(cfg.distribute, found, jax.process_count(), notes)
        used = (
            names if strategy.distribution is not None else [visible[0]]
        )  # jax.devices()[0] is where a single-device run computes
    elif backend == "torch":
        task = None
        visible = _torch_devices(device, cfg.deterministic)
        gpus = [_torch_gpu(name) for name in visible if name.startswith("cuda")]
        if cfg.distribute == "auto" and len(gpus) > 1:
            notes.append(
                f"{len(gpus)} GPUs, but Keras' torch backend trains on one (no data-parallel "
                "distribution); backend: jax or tensorflow uses them all"
            )
        strategy = LocalStrategy()
        used = [visible[0]]
    else:
        raise TrainrunError(f"backend {backend!r} is set up by runtime.setup")
    if cfg.seed is not None:
        keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_dtype_policy(cfg.precision)
    note = precision_note(cfg.precision, gpus)
    if note:
        notes.append(note)
    devices: dict[str, Any] = {
        "backend": backend,
        "visible": visible,
        "gpus": gpus,
        "used": used,
        "strategy": "DataParallel" if strategy.distribution is not None else "default",
        "replicas": strategy.num_replicas_in_sync,
        "precision": cfg.precision,
        "loss_scaling": cfg.precision == "mixed_float16",
    }
    if device == "cpu":
        devices["forced"] = "cpu"
    if task is not None:
        devices["workers"] = task.num_workers
        devices["task"] = {"type": task.type, "index": task.index, "chief": task.is_chief}
    if cache:
        devices["compilation_cache"] = cache
    devices["notes"] = notes
    # 'auto' is Keras' own choice: XLA always on JAX (its only way to run fast), none on torch.
    return Runtime(
        strategy=strategy,
        devices=devices,
        jit_compile=cfg.compile.jit_compile,
        notes=notes,
        task=task,
        backend=backend,
    )


def torch_steps_per_execution(loaded: LoadedConfig) -> int:
    """Keras' torch trainer runs one step per call: 'auto' is 1, more is refused. (JAX
    takes TensorFlow's rule, `runtime.steps_per_execution`: it amortises the per-step
    dispatch that dominates small models.)"""
    from trainrun.backend_check import check_one_step_per_call

    try:  # fit checked it before Keras loaded; a resumed run's config.yaml may say more
        check_one_step_per_call(loaded)
    except ConfigError as exc:
        raise loaded.locate(exc) from None
    return 1
