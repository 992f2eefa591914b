"""What a config asks of its Keras backend, checked before Keras is imported.

A backend other than TensorFlow runs without TensorFlow installed; what still
needs it (tf.data sources, image decoding) and what a backend cannot do (torch
has no data-parallel distribution in Keras and runs one step per execution;
multi-worker training is TensorFlow's) is refused here in one line, before any training starts.
"""

from __future__ import annotations

import importlib.util

from trainrun.config import LoadedConfig
from trainrun.errors import ConfigError

# Sources read with TensorFlow ops (tf.data, tf.image), on any backend.
TF_SOURCES = {
    "tfdata": "a tf.data dataset (or TFRecord files)",
    "image_folder": "image decoding (tf.image)",
    "text_folder": "string tensors",
}


def tensorflow_installed() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def check_backend(loaded: LoadedConfig) -> None:
    cfg = loaded.config
    backend = cfg.backend
    if cfg.data.on_device is True:
        if backend != "jax":
            raise ConfigError(
                f"data.on_device: true keeps the data on a JAX device; backend is {backend}: "
                "set backend: jax, or data.on_device: auto",
                path="data.on_device",
            )
        if cfg.data.source in TF_SOURCES:
            raise ConfigError(
                f"data.on_device: true needs in-memory data (mnist, numpy, csv); source: "
                f"{cfg.data.source} is read with TensorFlow: set data.on_device: auto",
                path="data.on_device",
            )
    if cfg.compile.scan_steps is True and backend != "jax":
        raise ConfigError(
            f"compile.scan_steps: true runs Keras' JAX step in a jax.lax.scan; backend is "
            f"{backend}: set backend: jax, or compile.scan_steps: auto",
            path="compile.scan_steps",
        )
    if backend == "tensorflow":
        return
    source = cfg.data.source
    if source == "text_folder":
        raise ConfigError(
            f"source: text_folder feeds strings to the model, which only backend: tensorflow "
            f"has; set backend: tensorflow (backend is {backend})",
            path="data.source",
        )
    if source in TF_SOURCES and not tensorflow_installed():
        raise ConfigError(
            f"source: {source} needs TensorFlow for {TF_SOURCES[source]}, which is not "
            f"installed: pip install tensorflow-cpu, or use an in-memory source on backend: "
            f"{backend}",
            path="data.source",
        )
    if not tensorflow_installed():
        from trainrun.registry import split_component

        for i, item in enumerate(cfg.callbacks):
            if split_component(item)[0].rsplit(".", 1)[-1] == "TensorBoard":
                raise ConfigError(
                    "TensorBoard writes its events with TensorFlow (tf.summary), which is not "
                    f"installed: pip install tensorflow-cpu, or remove it on backend: {backend}",
                    path=f"callbacks.{i}",
                )
    if backend == "torch" and cfg.distribute == "multi_worker":
        raise ConfigError(
            "distribute: multi_worker has no torch implementation in Keras "
            "(keras.distribution is JAX's); use backend: jax or tensorflow",
            path="distribute",
        )
    if backend == "torch" and cfg.distribute == "mirrored":
        raise ConfigError(
            "distribute: mirrored has no torch implementation in Keras (keras.distribution "
            "is JAX's); use backend: jax or tensorflow, or distribute: none",
            path="distribute",
        )
    if backend == "torch":
        check_one_step_per_call(loaded)


def check_one_step_per_call(loaded: LoadedConfig) -> None:
    """Keras' torch trainer runs one step per call (it raises for more)."""
    spe = loaded.config.compile.steps_per_execution
    if spe != "auto" and int(spe) > 1:
        raise ConfigError(
            f"{spe} steps per execution, but Keras' torch trainer runs one step per call (it "
            "raises for more): set 1 or auto",
            path="compile.steps_per_execution",
        )
