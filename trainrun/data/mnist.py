"""MNIST, found locally first and downloaded the way Keras does it otherwise."""

from __future__ import annotations

import os
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


def load_mnist() -> tuple[ArraySplit, ArraySplit]:
    """(train, test) as uint8 images (N, 28, 28) and integer labels."""
    path = mnist_file()
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
            with np.load(path) as f:
                x_train, y_train = f["x_train"], f["y_train"]
                x_test, y_test = f["x_test"], f["y_test"]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path} is not a readable MNIST .npz ({exc})") from None
    return ArraySplit(x_train, y_train), ArraySplit(x_test, y_test)
