"""TensorFlow set-up for a run: devices, seeds, determinism, precision, strategy."""

from __future__ import annotations

import os
import platform
import warnings
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

import trainrun
from trainrun.config import LoadedConfig


@dataclass
class Runtime:
    strategy: Any
    devices: dict[str, Any] = field(default_factory=dict)
    jit_compile: bool | str = "auto"
    notes: list[str] = field(default_factory=list)

    @property
    def is_chief(self) -> bool:
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or not getattr(resolver, "task_type", None):
            return True
        return resolver.task_type == "chief" or (
            resolver.task_type == "worker" and resolver.task_id == 0
        )


def versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "trainrun": trainrun.__version__,
    }


def _strategy(kind: str, gpus: list) -> Any:
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()  # the default, single-device strategy


def setup(loaded: LoadedConfig, *, device: str | None = None) -> Runtime:
    """Configure TensorFlow for this run. Call once, before building anything."""
    cfg = loaded.config
    notes: list[str] = []
    if device == "cpu":
        tf.config.set_visible_devices([], "GPU")
    gpus = tf.config.list_physical_devices("GPU")
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()
    if cfg.seed is not None:
        keras.utils.set_random_seed(cfg.seed)
    if cfg.precision != "float32":
        if cfg.precision == "mixed_float16" and not gpus:
            notes.append("mixed_float16 brings no speed-up without a GPU; it runs, only slower")
        keras.mixed_precision.set_dtype_policy(cfg.precision)
    else:
        keras.mixed_precision.set_dtype_policy("float32")
    strategy = _strategy(cfg.distribute, gpus)
    jit: bool | str = cfg.compile.jit_compile
    if jit == "auto" and cfg.deterministic:
        # Op determinism silently turns XLA off; say so instead of pretending.
        jit = False
    # Otherwise 'auto' is Keras' own choice: XLA on GPUs, none on CPUs, where it
    # was measured here to compile for seconds and run a small convnet 10x slower.
    if tf.test.is_built_with_cuda() is False and os.environ.get("NVIDIA_VISIBLE_DEVICES"):
        notes.append(
            "a GPU may be present but this TensorFlow build has no CUDA: pip install -e '.[gpu]'"
        )
    used = (
        [d.name for d in tf.config.list_logical_devices()]
        if strategy.num_replicas_in_sync > 1
        else []
    )
    devices = {
        "visible": [d.name for d in tf.config.list_logical_devices()],
        "gpus": [g.name for g in gpus],
        "used": used or [("/GPU:0" if gpus else "/CPU:0")],
        "strategy": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "precision": cfg.precision,
    }
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return Runtime(strategy=strategy, devices=devices, jit_compile=jit, notes=notes)


def steps_per_execution(loaded: LoadedConfig, steps_per_epoch: int | None) -> int:
    """'auto': up to 128 steps per call into TensorFlow, and at least 8 calls an epoch.

    Larger values amortise Python and dispatch overhead (the big win on small
    models); callbacks' batch hooks, the progress display and mid-epoch state
    saves then happen once per execution, so an epoch keeps a few of them.
    """
    spe = loaded.config.compile.steps_per_execution
    if spe != "auto":
        return int(spe)
    if not steps_per_epoch:
        return 32
    wanted = max(1, min(128, steps_per_epoch // 8))
    if loaded.config.fit.steps_per_epoch:
        # An iterator that runs across epochs needs executions that end on epoch ends.
        return max(d for d in range(1, wanted + 1) if steps_per_epoch % d == 0)
    return wanted
