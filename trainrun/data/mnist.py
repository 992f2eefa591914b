"""MNIST, found locally first and downloaded the way Keras does it otherwise."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import numpy as np

from trainrun.data.arrays import ArraySplit
from trainrun.errors import DataError


def mnist_file() -> Path | None:
    """$TRAINRUN_DATA_DIR/mnist.npz, then Keras' cache ~/.keras/datasets/mnist.npz."""
    candidates = []
    if os.environ.get("TRAINRUN_DATA_DIR"):
        candidates.append(Path(os.environ["TRAINRUN_DATA_DIR"]) / "mnist.npz")
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    candidates.append(keras_home / "datasets" / "mnist.npz")
    return next((p for p in candidates if p.is_file()), None)


_early: dict[Path, dict[str, np.ndarray]] = {}
_reader: threading.Thread | None = None


def _read(path: Path) -> dict[str, np.ndarray]:
    # Opened here: np.load leaks the file it opened when the zip is damaged.
    with path.open("rb") as fh, np.load(fh) as f:
        return {key: f[key] for key in ("x_train", "y_train", "x_test", "y_test")}


def preload() -> None:
    """Start reading the local MNIST file in a thread, so that its decompression
    (about 0.3 s) overlaps TensorFlow's import on another core."""
    global _reader
    path = mnist_file()
    if path is None or _reader is not None:
        return

    def read() -> None:
        # On failure load_mnist reads the file again and reports the problem.
        with contextlib.suppress(Exception):
            _early[path] = _read(path)

    _reader = threading.Thread(target=read, name="trainrun-mnist-preload", daemon=True)
    _reader.start()


def load_mnist() -> tuple[ArraySplit, ArraySplit]:
    """(train, test) as uint8 images (N, 28, 28) and integer labels."""
    path = mnist_file()
    if _reader is not None:
        _reader.join()
    if path is None:
        import keras

        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as exc:
            raise DataError(
                "MNIST is not on this machine and downloading it failed "
                f"({type(exc).__name__}: {exc}); put mnist.npz in $TRAINRUN_DATA_DIR "
                "or ~/.keras/datasets/"
            ) from None
    else:
        try:
            arrays = _early.pop(path, None) or _read(path)
            x_train, y_train = arrays["x_train"], arrays["y_train"]
            x_test, y_test = arrays["x_test"], arrays["y_test"]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path} is not a readable MNIST .npz ({exc})") from None
    return ArraySplit(x_train, y_train), ArraySplit(x_test, y_test)
