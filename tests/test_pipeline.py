"""The in-memory pipeline: resumable order, fresh order per epoch, no sample lost."""

from __future__ import annotations

import numpy as np
import pytest

from trainrun.data.arrays import ArraySplit

pytestmark = pytest.mark.slow  # imports TensorFlow: when a test runs, not at collection


def batches(*args, **kwargs):
    from trainrun.data.pipeline import batches

    return batches(*args, **kwargs)


def epoch_batches(*args, **kwargs):
    from trainrun.data.pipeline import epoch_batches

    return epoch_batches(*args, **kwargs)


def labels(ds, n=None):
    ds = ds.take(n) if n else ds
    return [b[1].numpy().tolist() for b in ds]


@pytest.fixture
def split():
    return ArraySplit(np.arange(10, dtype="uint8")[:, None], np.arange(10))


def test_each_pass_is_a_permutation_and_passes_differ(split):
    got = labels(batches(split, batch_size=4, shuffle=True, seed=3, repeat=True), 6)
    first, second = sum(got[:3], []), sum(got[3:], [])
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second
    assert [len(b) for b in got] == [4, 4, 2, 4, 4, 2]


def test_start_batch_continues_the_same_sequence(split):
    whole = labels(batches(split, batch_size=4, shuffle=True, seed=3, repeat=True), 8)
    assert (
        labels(batches(split, batch_size=4, shuffle=True, seed=3, repeat=True, start_batch=4), 4)
        == whole[4:]
    )
    tail = batches(split, batch_size=4, shuffle=True, seed=3, start_batch=4)
    assert int(tail.cardinality()) == 2
    assert labels(tail) == whole[4:6]


def test_epoch_batches_follow_the_epoch_variable(split):
    import tensorflow as tf

    whole = labels(batches(split, batch_size=4, shuffle=True, seed=3, repeat=True), 9)
    epoch = tf.Variable(0, dtype=tf.int64)
    ds = epoch_batches(split, batch_size=4, shuffle=True, seed=3, epoch_var=epoch)
    assert int(ds.cardinality()) == 3
    for e in range(3):
        epoch.assign(e)
        assert labels(ds) == whole[3 * e : 3 * e + 3]


def test_scale_casts_inputs_only(split):
    import tensorflow as tf

    (x, y), *_ = list(batches(split, batch_size=4, scale=2.0))
    assert x.dtype == tf.float32 and x.numpy()[:, 0].tolist() == [0.0, 0.5, 1.0, 1.5]
    assert y.numpy().tolist() == [0, 1, 2, 3]


def test_unshuffled_order_is_the_data_order(split):
    assert sum(labels(batches(split, batch_size=3)), []) == list(range(10))
