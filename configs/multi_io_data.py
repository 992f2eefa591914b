"""Synthetic data for multi_io.yaml: (image, time series) -> (score, class)."""

import numpy as np
import tensorflow as tf


def make(samples=1280, batch_size=32, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random((samples, 32, 32, 3), dtype=np.float32)
    ts = rng.random((samples, 20, 10), dtype=np.float32)
    # Targets the inputs actually determine, so the model has something to learn.
    score = (img.mean(axis=(1, 2, 3)) + ts.mean(axis=(1, 2)))[:, None].astype(np.float32)
    cls = (ts[:, :, 0].mean(axis=1) * 5).astype(np.int64).clip(0, 4)
    x = {"img_input": img, "ts_input": ts}
    y = {"score_output": score, "class_output": cls}
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
