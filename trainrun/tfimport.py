"""TensorFlow's share of a trainrun process: imported once, quietly.

TensorFlow's native logging prints oneDNN and absl notices before any Python
setting can silence them; they would bury trainrun's own one-line messages.
The notices are captured while importing and shown only if the import fails.

One cost a training run pays for nothing is cut here (measured on a 2-core
machine, where the whole MNIST MLP run takes about 8 s):

- Keras imports ``matplotlib.pyplot`` at start-up for ``keras.visualization``
  (about 0.5 s); trainrun depends on matplotlib for ``trainrun show``, so every
  run would pay it. Those modules are imported on their first use instead.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import tempfile
import types
from collections.abc import Iterator

# Modules Keras imports at start-up (keras.src.visualization) that training never uses.
DEFERRED = ("matplotlib", "matplotlib.pyplot", "matplotlib.patches")


class _Deferred(types.ModuleType):
    """Stands in for a module until something uses it; then imports and forwards to it."""

    def __getattr__(self, attr: str) -> object:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # no __path__: the import system takes it as loaded
        return getattr(importlib.import_module(self.__name__), attr)


@contextlib.contextmanager
def _deferred_imports(names: tuple[str, ...]) -> Iterator[None]:
    """While the block runs, `import name` binds a `_Deferred` stand-in.

    The stand-ins leave ``sys.modules`` afterwards, so any later import, the
    stand-ins' own included, gets the real module.
    """
    if names[0] in sys.modules or importlib.util.find_spec(names[0]) is None:
        yield  # already imported, or not installed: Keras handles that itself
        return
    stubs = {name: _Deferred(name) for name in names}
    for name, stub in stubs.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(stubs[parent], child, stub)
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


BACKENDS = ("tensorflow", "jax", "torch")
# What each backend needs installed (import name, pip extra of trainrun).
_NEEDS = {"jax": ("jax", "jax"), "torch": ("torch", "torch")}


def import_keras(backend: str = "tensorflow") -> None:
    """Import Keras on `backend` (set as KERAS_BACKEND first); TensorFlow only for its own.

    A backend whose package is missing, or a Keras already imported on another
    backend in this process, is a one-line `TrainrunError`.
    """
    from trainrun.errors import TrainrunError

    if backend not in BACKENDS:
        raise TrainrunError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != backend:
            raise TrainrunError(
                f"Keras is already imported on the {current} backend in this process; "
                f"backend: {backend} needs a new process"
            )
        return
    if backend in _NEEDS:
        module, extra = _NEEDS[backend]
        if importlib.util.find_spec(module) is None:
            raise TrainrunError(
                f"backend: {backend} needs {module}, which is not installed: "
                f"pip install -e '.[{extra}]' (or set backend: tensorflow)"
            )
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        import_tensorflow()
        return
    with _deferred_imports(DEFERRED):
        import keras  # noqa: F401


def backend_of(config_file: str | os.PathLike) -> str:
    """The `backend:` a run's config.yaml names (tensorflow when absent or unreadable:
    the config loader then says what is wrong with the file)."""
    import yaml

    try:
        with open(config_file, encoding="utf-8") as f:
            value = (yaml.safe_load(f) or {}).get("backend", "tensorflow")
    except (OSError, yaml.YAMLError, AttributeError):
        return "tensorflow"
    return value if value in BACKENDS else "tensorflow"


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            with _deferred_imports(DEFERRED):
                import keras  # noqa: F401
                import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
