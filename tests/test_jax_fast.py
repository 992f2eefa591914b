"""JAX's fast path: data kept on the device (data.on_device) and the steps of one
execution run as one jax.lax.scan (trainrun/engine/jax_steps.py). Both must leave
the numbers exactly as Keras' own path makes them: tested bitwise on the CPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import CONFIGS, ROOT, assert_clean_error, cli

HAS_JAX = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="jax is not installed: pip install -e '.[jax]'")
MLP = CONFIGS / "mnist_mlp.yaml"


def test_data_on_device_and_scan_steps_need_jax():
    r = cli("validate", MLP, "--set", "data.on_device=true")
    assert_clean_error(r, "data.on_device: true", "backend: jax")
    r = cli("validate", MLP, "--set", "compile.scan_steps=true")
    assert_clean_error(r, "compile.scan_steps: true", "backend: jax")


@needs_jax
@pytest.mark.slow
def test_device_gather_gives_the_numpy_batches():
    import jax

    from trainrun.data.arrays import ArraySplit
    from trainrun.data.device_feed import DeviceGather, nbytes
    from trainrun.data.numpy_feed import _Gather

    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (40, 6), dtype=np.uint8)
    f32 = rng.normal(size=(40, 3)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    w = rng.random(40).astype(np.float32)
    index = rng.permutation(40)[:16]
    cases = [
        (ArraySplit(u8, y), 255.0, 40 * 6 + y.nbytes),  # uint8 stays uint8: a lookup table
        (ArraySplit(u8, y, w), None, 40 * 6 + y.nbytes + w.nbytes),
        (ArraySplit(f32, y), [2.0, 3.0, 7.0], f32.nbytes + y.nbytes),  # scaled once in NumPy
        (ArraySplit({"a": u8, "b": f32}, y), 3.0, 40 * 6 * 4 + f32.nbytes + y.nbytes),
    ]
    for split, scale, size in cases:
        want = _Gather(split, scale)(index)
        got = DeviceGather(split, scale)(index)
        assert nbytes([split], scale) == size
        for g, h in zip(got, want, strict=True):
            if isinstance(h, dict):
                assert g.keys() == h.keys()
                g, h = list(g.values()), list(h.values())
            else:
                g, h = [g], [h]
            for a, b in zip(g, h, strict=True):
                # As JAX takes NumPy arrays: int64 is int32 without jax_enable_x64.
                assert a.dtype == jax.numpy.asarray(b).dtype
                assert np.array_equal(np.asarray(a), b)


SCAN_SCRIPT = textwrap.dedent(
    """
    import os
    os.environ["KERAS_BACKEND"] = "jax"
    import keras, numpy as np
    from trainrun.engine import jax_steps

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype("float32")  # 5 batches of 64, the last of 44
    y = rng.integers(0, 3, 300)

    def fit(scan):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dropout(0.2), keras.layers.Dense(3)])
        model.compile(optimizer="adam", metrics=["accuracy"], steps_per_execution=4,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        calls = []
        if scan:
            assert jax_steps.install(model, 4)
            fn = model.train_function.scanned
            model.train_function.scanned = lambda s, b: calls.append(len(b[0])) or fn(s, b)
        h = model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0,
                      validation_data=(x[:130], y[:130]))
        return model, h.history, calls

    (a, ha, _), (b, hb, calls) = fit(False), fit(True)
    assert calls == [4, 4], calls  # per epoch: steps 0-3 as one scan, then the short batch
    assert ha == hb, (ha, hb)
    for u, v in zip(a.get_weights() + [a.optimizer.iterations.numpy()],
                    b.get_weights() + [b.optimizer.iterations.numpy()]):
        assert np.array_equal(u, v)
    assert a.evaluate(x, y, verbose=0) == b.evaluate(x, y, verbose=0)
    # Not where Keras' own steps must run: one step per call, or eagerly.
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    model.compile(loss="mse", steps_per_execution=1)
    assert not jax_steps.install(model, 1)
    assert not jax_steps.install(model, 4, "auto")  # auto: accelerators only; this is a CPU
    print("ok")
    """
)


@needs_jax
@pytest.mark.slow
def test_scan_steps_are_keras_steps_bitwise():
    """ScanSteps is used by fit (one scan per execution, the short last batch on
    its own) and gives Keras' own loop's history and weights, bit for bit."""
    r = subprocess.run(
        [sys.executable, "-c", SCAN_SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
