"""The data feed (trainrun/data/feed.py): what the engine asks of a run's data.

The fast tests build a Feed of in-memory NumPy data, which needs no TensorFlow;
the slow ones make its batches (tf.data).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from trainrun.config import load_config
from trainrun.data.feed import Batching, Feed, preprocess
from trainrun.errors import ConfigError, DataError

N_TRAIN, N_TEST = 22, 7


def _config(tmp_path: Path, extra: str = "", n_train: int = N_TRAIN) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train, 2, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(n_train) % 3)
    np.savez(
        tmp_path / "test.npz",
        x=rng.integers(0, 256, (N_TEST, 2, 3), dtype=np.uint8),
        y=np.arange(N_TEST) % 3,
    )
    path = tmp_path / "c.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            seed: 5
            data:
              source: numpy
              flatten: true
              scale: [255, 255, 255, 1, 1, 2]
              train: {path: train.npz}
              test: {path: test.npz}
            model:
              layers:
                - Input: {shape: [6]}
                - Dense: {units: 3, activation: softmax}
            compile: {loss: sparse_categorical_crossentropy}
            fit: {batch_size: 4, epochs: 3}
            """
        )
        + extra
    )
    return path


def _feed(tmp_path: Path, *overrides: str, extra: str = "", n_train: int = N_TRAIN) -> Feed:
    return Feed.build(load_config(_config(tmp_path, extra, n_train), list(overrides)))


def _raw_train(tmp_path: Path) -> np.ndarray:
    with np.load(tmp_path / "train.npz") as npz:
        return npz["x"]


# ---------------------------------------------------------------- fast: no batches made


def test_batching_is_read_from_the_config(tmp_path):
    loaded = load_config(_config(tmp_path), ["fit.validation_batch_size=9"])
    assert Batching.of(loaded) == Batching(
        train=4, evaluate=9, shuffle=True, seed=5, steps_per_epoch=None, validation_steps=None
    )


def test_in_memory_feed_shapes_steps_and_splits(tmp_path):
    feed = _feed(tmp_path, "data.validation_split=0.5")
    assert feed.in_memory
    assert feed.input_shapes() == (6,)  # after flatten
    assert len(feed.split("train")) == len(feed.split("validation")) == 11
    assert feed.steps_per_epoch() == 3  # ceil(11 / 4)
    assert feed.describe("validation") == "validation (the last 0.5 of train)"
    assert feed.describe("test") == "test"
    assert np.array_equal(feed.train_labels(), np.arange(11) % 3)
    assert _feed(tmp_path, "fit.steps_per_epoch=3").steps_per_epoch() == 3


def test_empty_training_data_is_refused_when_steps_are_asked(tmp_path):
    feed = _feed(tmp_path, n_train=0)  # evaluate builds a feed too; only training refuses
    with pytest.raises(ConfigError, match="the training data is empty"):
        feed.steps_per_epoch()


def test_predict_preprocessing_is_trainings(tmp_path):
    loaded = load_config(_config(tmp_path))
    raw = _raw_train(tmp_path)
    out, note = preprocess(loaded, {"x": raw})
    assert note == "flatten, divide by [255, 255, 255, 1, 1, 2]"
    expected = raw.reshape(N_TRAIN, 6).astype(np.float32) / np.float32([255, 255, 255, 1, 1, 2])
    assert out["x"].dtype == np.float32
    assert np.array_equal(out["x"], expected)
    with pytest.raises(DataError, match="input 'x': data.scale has 6 divisors"):
        preprocess(loaded, {"x": np.zeros((2, 5), np.uint8)})
    reshaping = load_config(
        _config(tmp_path), ["data.flatten=false", "data.scale=null", "data.reshape=[3, 2]"]
    )
    with pytest.raises(DataError, match=r"cannot be reshaped to \(N, 3, 2\)"):
        preprocess(reshaping, {"x": np.zeros((2, 5), np.uint8)})


# ---------------------------------------------------------------- slow: tf.data batches


def _labels(ds, n: int | None = None) -> list[list[int]]:
    ds = ds.take(n) if n else ds
    return [b[1].numpy().tolist() for b in ds]


def _epochs(feed: Feed, epochs: int) -> list[list[list[int]]]:
    """Each epoch's batches of labels, as fit iterates them (a fresh iterator per epoch,
    after the StateKeeper set the epoch variable)."""
    import tensorflow as tf

    var = tf.Variable(0, dtype=tf.int64)
    ds, steps = feed.train_batches(0, 0, partial=False, epoch_var=var)
    assert steps is None
    out = []
    for epoch in range(epochs):
        var.assign(epoch)
        out.append(_labels(ds))
    return out


@pytest.mark.slow
def test_order_comes_from_seed_and_epoch(tmp_path):
    a = _epochs(_feed(tmp_path), 3)
    assert a == _epochs(_feed(tmp_path), 3)  # the same (seed, epoch): the same batches
    for epoch in a:
        assert sorted(sum(epoch, [])) == sorted((np.arange(N_TRAIN) % 3).tolist())
    firsts = [sum(epoch, []) for epoch in a]
    assert firsts[0] != firsts[1] != firsts[2]  # a fresh order every epoch
    other = _epochs(_feed(tmp_path, "seed=6"), 1)
    assert other[0] != a[0]
    unshuffled = _epochs(_feed(tmp_path, "fit.shuffle=false"), 2)
    assert sum(unshuffled[0], []) == sum(unshuffled[1], []) == (np.arange(N_TRAIN) % 3).tolist()


@pytest.mark.slow
@pytest.mark.parametrize("epoch_step", [(0, 1), (1, 3), (2, 5)])
def test_resume_at_epoch_and_step_sees_the_uninterrupted_batches(tmp_path, epoch_step):
    """No fit.steps_per_epoch: epochs are passes; a resumed session's first fit call
    gets the rest of its epoch, then whole epochs from the next."""
    import tensorflow as tf

    epoch, step = epoch_step
    feed = _feed(tmp_path)
    whole = _epochs(feed, 3)
    assert [len(e) for e in whole] == [6] * 3  # ceil(22 / 4), the last batch short
    rest, steps = feed.train_batches(epoch, step, partial=True, epoch_var=None)
    assert steps is None
    assert _labels(rest) == whole[epoch][step:]
    var = tf.Variable(epoch + 1, dtype=tf.int64)
    ds, _ = feed.train_batches(epoch + 1, 0, partial=False, epoch_var=var)
    for later in range(epoch + 1, 3):
        var.assign(later)
        assert _labels(ds) == whole[later]


@pytest.mark.slow
def test_resume_with_steps_per_epoch_runs_one_iterator_across_epochs(tmp_path):
    """fit.steps_per_epoch: as in Keras, one iterator runs on across epochs (epoch
    boundaries fall inside passes), and a resume continues that one sequence."""
    feed = _feed(tmp_path, "fit.steps_per_epoch=4")
    ds, steps = feed.train_batches(0, 0, partial=False, epoch_var=None)
    assert steps == 4
    whole = _labels(ds, 12)  # three epochs of 4 steps: two passes of 6 batches
    assert sorted(sum(whole[:6], [])) == sorted(sum(whole[6:], []))
    assert whole[:6] != whole[6:]
    rest, steps = feed.train_batches(1, 3, partial=True, epoch_var=None)
    assert steps == 1
    assert _labels(rest, steps) == whole[7:8]
    after, steps = feed.train_batches(2, 0, partial=False, epoch_var=None)
    assert steps == 4
    assert _labels(after, 4) == whole[8:12]


@pytest.mark.slow
def test_first_batch_and_split_batches_carry_the_preprocessing(tmp_path):
    """What training, its checks and evaluate see is what predict makes of the raw
    arrays."""
    feed = _feed(tmp_path, "fit.shuffle=false")
    raw = _raw_train(tmp_path)
    expected = preprocess(feed.loaded, {"x": raw})[0]["x"]
    x, y = feed.first_batch()
    assert np.array_equal(np.asarray(x), expected[:4])
    assert np.array_equal(y, np.arange(4) % 3)
    ds, _ = feed.train_batches(0, 0, partial=True, epoch_var=None)
    seen = np.concatenate([b[0].numpy() for b in ds])
    assert np.array_equal(seen, expected)  # bitwise: the pipeline divides as NumPy does
    test = feed.eval_batches("test")
    assert (test.samples, test.batch_size, test.steps) == (N_TEST, 16, None)  # eval: 4x
    with np.load(tmp_path / "test.npz") as npz:
        want = preprocess(feed.loaded, {"x": npz["x"]})[0]["x"]
    assert np.array_equal(np.concatenate([b[0].numpy() for b in test.dataset]), want)
    assert feed.validation_batches() is None
    x, n = feed.training_x(None)  # what a preprocessing layer adapts on
    assert n == N_TRAIN and np.array_equal(x, expected)


@pytest.mark.slow
def test_a_tf_data_source_is_used_as_given(tmp_path):
    (tmp_path / "make.py").write_text(
        textwrap.dedent(
            """\
            import numpy as np
            import tensorflow as tf

            def make(n):
                x = np.arange(n * 6, dtype="float32").reshape(n, 2, 3)
                return tf.data.Dataset.from_tensor_slices((x, np.arange(n) % 3)).batch(4)
            """
        )
    )
    extra = textwrap.dedent(
        """\
        seed: 1
        data:
          source: tfdata
          train: {factory: "make:make", args: {n: 10}}
          test: {factory: "make:make", args: {n: 5}}
        model: {layers: [{Input: {shape: [2, 3]}}, {Flatten: {}}, {Dense: {units: 3}}]}
        compile: {loss: sparse_categorical_crossentropy}
        fit: {batch_size: 4}
        """
    )
    (tmp_path / "t.yaml").write_text(extra)
    feed = Feed.build(load_config(tmp_path / "t.yaml"))
    assert not feed.in_memory
    assert feed.steps_per_epoch() == 3  # the dataset's own batches
    assert feed.input_shapes() == (2, 3)  # from the element spec
    assert feed.train_labels() is None
    x, y = feed.first_batch()
    assert x.shape == (4, 2, 3) and y.numpy().tolist() == [0, 1, 2, 0]
    rest, steps = feed.train_batches(0, 2, partial=True, epoch_var=None)
    assert steps is None and _labels(rest) == [[2, 0]]  # samples 8 and 9
    test = feed.eval_batches("test")
    assert (test.samples, test.batch_size, test.steps) == (5, None, None)
