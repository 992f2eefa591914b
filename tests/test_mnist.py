"""MNIST loading: read early in a thread while TensorFlow imports, with the same result."""

from __future__ import annotations

import numpy as np
import pytest

from trainrun.data import mnist
from trainrun.errors import DataError


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    monkeypatch.setattr(mnist, "_reader", None)
    monkeypatch.setattr(mnist, "_early", {})
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-home"))
    return monkeypatch


def _fake_mnist(path, n=50):
    rng = np.random.default_rng(0)
    np.savez_compressed(
        path,
        x_train=rng.integers(0, 255, (n, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, n, dtype=np.uint8),
        x_test=rng.integers(0, 255, (n // 5, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, n // 5, dtype=np.uint8),
    )


def test_preloaded_arrays_are_the_files(fresh, tmp_path):
    _fake_mnist(tmp_path / "mnist.npz")
    fresh.setenv("TRAINRUN_DATA_DIR", str(tmp_path))
    mnist.preload()
    train, test = mnist.load_mnist()
    with np.load(tmp_path / "mnist.npz") as f:
        np.testing.assert_array_equal(train.x, f["x_train"])
        np.testing.assert_array_equal(test.y, f["y_test"])
    assert mnist._early == {}  # handed over once, not kept


def test_unreadable_file_is_reported_after_a_preload(fresh, tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"not a zip file")
    fresh.setenv("TRAINRUN_DATA_DIR", str(tmp_path))
    mnist.preload()
    with pytest.raises(DataError, match="is not a readable MNIST .npz"):
        mnist.load_mnist()
