"""In-memory arrays -> tf.data pipelines that can start at any batch.

Modelled on Keras' own ArrayDataAdapter (vectorised gather of index batches
from arrays held once), with one change that makes resume exact: the shuffle
order of pass ``p`` over the data is derived from ``(seed, p)`` with a stateless
shuffle, so a resumed run sees exactly the batches the uninterrupted run would
have seen, from any batch on, and every epoch still gets a fresh order.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from trainrun.data.arrays import ArraySplit, Preprocessing

_FOREVER = 2**62

# The functions handed to tf.data here have no tensor-dependent Python control
# flow, so AutoGraph has nothing to convert; skipping it saves ~0.2 s of start-up.
_plain = tf.autograph.experimental.do_not_convert


def steps_per_pass(split: ArraySplit, batch_size: int) -> int:
    return math.ceil(len(split) / batch_size)


def _structure(split: ArraySplit) -> tuple:
    parts: tuple = (split.x,)
    if split.y is not None:
        parts += (split.y,)
        if split.sample_weight is not None:
            parts += (split.sample_weight,)
    return parts


def _permutation(n: int, shuffle: bool, seed: int, pass_index: tf.Tensor) -> tf.Tensor:
    """The sample order of one pass: a stateless shuffle keyed by (seed, pass)."""
    indices = tf.range(n, dtype=tf.int64)
    if shuffle:
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(pass_index, tf.int64)])
        indices = tf.random.experimental.stateless_shuffle(indices, seed=key)
    return indices


def _index_batches(indices: tf.Tensor, n: int, batch_size: int) -> tf.data.Dataset:
    """One pass's order cut into batches of indices, the last one possibly short.

    Reshaping the full batches at once (as Keras' ArrayDataAdapter does) gives a
    better memory access pattern than slicing batch by batch.
    """
    full = n // batch_size
    head = tf.reshape(indices[: full * batch_size], [full, batch_size])
    ds = tf.data.Dataset.from_tensor_slices(head)
    if n - full * batch_size:
        ds = ds.concatenate(tf.data.Dataset.from_tensors(indices[full * batch_size :]))
    return ds


def batches(
    split: ArraySplit,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    start_batch: int = 0,
    repeat: bool = False,
    scale: float | np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of `split`, starting at global batch `start_batch`.

    Global batch g is batch ``g % S`` of pass ``g // S`` (S batches a pass); with
    ``repeat`` the passes go on for ever, each in its own order.
    """
    n = len(split)
    per_pass = steps_per_pass(split, batch_size)
    first_pass, skip = divmod(start_batch, per_pass)
    last = _FOREVER if repeat else first_pass + 1
    index_ds = (
        tf.data.Dataset.range(first_pass, last)
        .map(_plain(lambda p: _permutation(n, shuffle, seed, p)))
        .prefetch(1)
        .flat_map(_plain(lambda indices: _index_batches(indices, n, batch_size)))
    )
    if skip:
        index_ds = index_ds.skip(skip)
    ds = _gather(split, index_ds, scale)
    if not repeat:
        ds = ds.apply(tf.data.experimental.assert_cardinality(per_pass - skip))
    return ds


def _gather(
    split: ArraySplit, index_ds: tf.data.Dataset, scale: float | np.ndarray | None
) -> tf.data.Dataset:
    """Index batches -> data batches, gathered from arrays held once (as Keras does)."""
    data = tf.data.Dataset.from_tensors(_structure(split)).repeat()

    @_plain
    def grab(i: tf.Tensor, parts: tuple) -> tuple:
        taken = tf.nest.map_structure(lambda a: tf.gather(a, i, axis=0), parts)
        if scale is not None:
            x = tf.nest.map_structure(lambda a: tf.cast(a, tf.float32) / scale, taken[0])
            taken = (x, *taken[1:])
        return taken

    ds = tf.data.Dataset.zip((index_ds, data)).map(grab, num_parallel_calls=_parallel_calls())
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.experimental_deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


_sequential_maps = False


def map_sequentially(on: bool) -> None:
    """Called with True once op determinism is on (`deterministic: true`): tf.data then
    rewrites every parallel map into a sequential one anyway, and logs an E0000 line
    about an attribute the rewritten op lacks (use_unbounded_threadpool)."""
    global _sequential_maps
    _sequential_maps = on


def _parallel_calls() -> int | None:
    return None if _sequential_maps else tf.data.AUTOTUNE


def scaled(ds: tf.data.Dataset, prep: Preprocessing) -> tf.data.Dataset:
    """A user's (x, y, ...) dataset of batches with data.flatten / reshape / scale: the
    tensor form of `Preprocessing`, which does the same to NumPy arrays."""
    if prep.scale is None and not prep.reshape and not prep.flatten:
        return ds
    scale = prep.scale

    def fix(x: tf.Tensor) -> tf.Tensor:
        if prep.flatten:
            x = tf.reshape(x, [tf.shape(x)[0], -1])
        elif prep.reshape:
            x = tf.reshape(x, [tf.shape(x)[0], *prep.reshape])
        if scale is not None:
            x = tf.cast(x, tf.float32) / scale
        return x

    @_plain
    def apply(*parts):
        return (tf.nest.map_structure(fix, parts[0]), *parts[1:])

    return ds.map(apply, num_parallel_calls=_parallel_calls())


def epoch_batches(
    split: ArraySplit,
    *,
    batch_size: int,
    epoch_var: tf.Variable,
    shuffle: bool = False,
    seed: int = 0,
    scale: float | np.ndarray | None = None,
) -> tf.data.Dataset:
    """One epoch of batches whose order is read from `epoch_var` when iterated.

    Keras makes a new iterator each epoch, after the callbacks' on_epoch_begin;
    trainrun's StateKeeper sets `epoch_var` there, so epoch e is pass e of
    `batches` without rebuilding the pipeline.
    """
    n = len(split)
    index_ds = (
        tf.data.Dataset.range(1)
        .map(_plain(lambda _: _permutation(n, shuffle, seed, epoch_var.read_value())))
        .flat_map(_plain(lambda indices: _index_batches(indices, n, batch_size)))
    )
    per_pass = steps_per_pass(split, batch_size)
    return _gather(split, index_ds, scale).apply(tf.data.experimental.assert_cardinality(per_pass))
