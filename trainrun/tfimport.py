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


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
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
