"""A tf.data factory for tfdata.yaml: MNIST as a shuffled, batched, prefetched dataset."""

import tensorflow as tf

from trainrun.data.mnist import load_mnist


def make(split="train", batch_size=64, seed=0):
    train, test = load_mnist()  # $TRAINRUN_DATA_DIR/mnist.npz, Keras' cache, or a download
    part = train if split == "train" else test
    ds = tf.data.Dataset.from_tensor_slices((part.x, part.y))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y))
    if split == "train":
        ds = ds.shuffle(10_000, seed=seed)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
