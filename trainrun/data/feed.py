"""The data feed of a run: the one object the engine asks for batches.

`Feed.build(loaded)` reads the run's splits once (`build_data`) and then gives
what training, its checks, `evaluate` and `predict` need: train batches from any
(epoch, step), validation batches, a split's batches by name, the first batch,
the per-sample input shapes, the steps of an epoch, one-hot labels, and the
inputs' preprocessing. It is the only place that knows whether a split is held
in memory (an `ArraySplit`) or is a user's tf.data dataset, and the only reader
of the batch sizes (`Batching`).

In memory, the order of the samples is decided by (seed, epoch) alone (a
stateless shuffle, `pipeline._permutation`), so a run resumed at (epoch, step)
sees exactly the batches the uninterrupted run saw. The methods that make
batches (`train_batches`, `validation_batches`, `eval_batches`, `first_batch`,
`training_x`) are the Keras/TensorFlow backend's; a feed for another backend
(JAX, PyTorch) overrides those and keeps the rest: the sources, their
preprocessing, the shapes, the steps and the order rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainrun.config import LoadedConfig
from trainrun.data import Data, build_data, encode_labels
from trainrun.data.arrays import ArraySplit, Nest, Preprocessing, check_scale
from trainrun.errors import DataError

EVAL_SPLITS = ("test", "validation")  # in the order evaluate picks its default


@dataclass(frozen=True)
class Batching:
    """How a run cuts its samples into batches: the one reader of `fit.batch_size`."""

    train: int  # fit.batch_size: training, and predict
    evaluate: int  # validation and evaluate of in-memory data
    shuffle: bool
    seed: int
    steps_per_epoch: int | None  # fit.steps_per_epoch, as the user gave it
    validation_steps: int | None

    @classmethod
    def of(cls, loaded: LoadedConfig) -> Batching:
        cfg = loaded.config
        return cls(
            train=cfg.fit.batch_size,
            evaluate=cfg.fit.eval_batch_size(),
            shuffle=cfg.fit.shuffle,
            seed=cfg.seed or 0,
            steps_per_epoch=cfg.fit.steps_per_epoch,
            validation_steps=cfg.fit.validation_steps,
        )


@dataclass
class EvalBatches:
    """A split as `model.evaluate` takes it."""

    dataset: Any
    steps: int | None  # None: the whole split
    samples: int | None  # None where it cannot be counted (a dataset that repeats)
    batch_size: int | None  # None: the dataset's own batches


def in_memory(split: Any) -> bool:
    return isinstance(split, ArraySplit)


@dataclass
class Feed:
    loaded: LoadedConfig
    data: Data
    batching: Batching
    preprocessing: Preprocessing
    _steps: int | None = field(default=None, init=False)

    @classmethod
    def build(cls, loaded: LoadedConfig) -> Feed:
        """Read the run's train / validation / test splits, preprocessed as configured;
        the feed of the Keras backend this process runs (TensorFlow's, or NumPy's)."""
        import keras

        if cls is Feed and keras.backend.backend() != "tensorflow":
            from trainrun.data.numpy_feed import NumpyFeed

            return NumpyFeed.build(loaded)
        return cls(
            loaded, build_data(loaded), Batching.of(loaded), Preprocessing.of(loaded.config.data)
        )

    # ------------------------------------------------------------ what there is
    @property
    def in_memory(self) -> bool:
        """Whether the training split is held in memory (else a tf.data dataset)."""
        return in_memory(self.data.train)

    def split(self, name: str) -> Any:
        """The split `name` (train, validation, test) as loaded, or None."""
        return getattr(self.data, name)

    def describe(self, name: str) -> str:
        """A split's name for a reader, with where it comes from when not obvious."""
        cfg = self.loaded.config.data
        if name == "validation" and cfg.validation_split:
            return f"validation (the last {cfg.validation_split:g} of train)"
        if cfg.source == "mnist" and name == "test":
            return "test (MNIST's 10000 test images)"
        return name

    def steps_per_epoch(self) -> int | None:
        """fit.steps_per_epoch if set, else one pass over the training split (None: a
        dataset of unknown length). Refuses empty in-memory training data."""
        if self._steps is None:
            train = self.data.train
            if in_memory(train):
                if len(train) == 0:
                    raise self.loaded.error("the training data is empty", ("data",))
                per_pass = math.ceil(len(train) / self.batching.train)
                self._steps = self.batching.steps_per_epoch or per_pass
            else:
                self._steps = self.batching.steps_per_epoch or _cardinality(train)
        return self._steps

    def input_shapes(self) -> Nest:
        """Per-sample input shapes of the training data: a tuple, or a dict of them."""
        train = self.data.train
        if in_memory(train):
            return train.input_shapes()
        import tensorflow as tf

        spec = train.element_spec
        x = spec[0] if isinstance(spec, tuple) else spec
        return tf.nest.map_structure(lambda t: tuple(t.shape[1:]), x)

    def train_labels(self) -> Nest | None:
        """The training labels where they are held in memory (None for a dataset,
        whose labels are only seen by iterating it)."""
        train = self.data.train
        return train.y if in_memory(train) else None

    def encode_labels(self, model: Any) -> None:
        """`data.one_hot`: integer labels -> one-hot rows as wide as `model`'s output."""
        self.data = encode_labels(self.loaded, self.data, model)

    # ------------------------------------------------------------ batches (TensorFlow)
    def epoch_counter(self, epoch: int) -> Any:
        """What `train_batches(partial=False)` reads each epoch's order from."""
        import tensorflow as tf

        return tf.Variable(epoch, dtype=tf.int64, trainable=False)

    def train_batches(
        self, epoch: int, step: int, *, partial: bool, epoch_var: Any
    ) -> tuple[Any, int | None]:
        """(dataset, steps_per_epoch for fit) starting at (epoch, step).

        `partial`: only the rest of epoch `epoch` (a resumed session's first fit
        call); else epochs from `epoch` on, each in its own order, read from
        `epoch_var` (set by the StateKeeper as each epoch begins). With
        fit.steps_per_epoch set one iterator runs on across epochs, as in Keras.
        """
        b = self.batching
        train = self.data.train
        if not in_memory(train):
            return (train.skip(step) if partial else train), b.steps_per_epoch
        kw = {
            "batch_size": b.train,
            "shuffle": b.shuffle,
            "seed": b.seed,
            "scale": self.preprocessing.scale,
        }
        if b.steps_per_epoch:
            # Keras semantics: one iterator runs on across epochs.
            spe = b.steps_per_epoch
            ds = self._batches(train, start_batch=epoch * spe + step, repeat=True, **kw)
            return ds, (spe - step) if partial else spe
        if partial:
            start = epoch * self.steps_per_epoch() + step
            return self._batches(train, start_batch=start, **kw), None
        return self._epoch_batches(train, epoch_var, **kw), None

    def _batches(self, split: ArraySplit, **kw: Any) -> Any:
        """In-memory batches from a global batch on (pipeline.batches' rule), as tf.data."""
        from trainrun.data import pipeline as pl

        return pl.batches(split, **kw)

    def _epoch_batches(self, split: ArraySplit, epoch_var: Any, **kw: Any) -> Any:
        """One epoch of in-memory batches, in the order of the epoch `epoch_var` holds."""
        from trainrun.data import pipeline as pl

        return pl.epoch_batches(split, epoch_var=epoch_var, **kw)

    def validation_batches(self) -> Any:
        """The validation split as fit's validation_data, or None."""
        val = self.data.validation
        if val is None or not in_memory(val):
            return val
        from trainrun.data import pipeline as pl

        return pl.batches(val, batch_size=self.batching.evaluate, scale=self.preprocessing.scale)

    def eval_batches(self, name: str) -> EvalBatches:
        """The split `name` (test or validation) as `evaluate` feeds it."""
        from trainrun.data import pipeline as pl

        value = self.split(name)
        if in_memory(value):
            if len(value) == 0:
                raise DataError(f"the {name} data of this run is empty")
            size = self.batching.evaluate
            ds = pl.batches(value, batch_size=size, scale=self.preprocessing.scale)
            return EvalBatches(ds, None, len(value), size)
        import tensorflow as tf

        steps = self.batching.validation_steps if name == "validation" else None
        if int(value.cardinality().numpy()) == tf.data.INFINITE_CARDINALITY:
            if steps is None:
                raise DataError(
                    f"the {name} dataset repeats for ever; evaluate needs a finite dataset"
                    + (" (or fit.validation_steps)" if name == "validation" else "")
                )
            return EvalBatches(value, steps, None, None)
        return EvalBatches(value, steps, _count_samples(value) if steps is None else None, None)

    def first_batch(self) -> tuple:
        """The first training batch (unshuffled), as fit would feed it: to build the model,
        its loss and metrics before training."""
        train = self.data.train
        if not in_memory(train):
            return next(iter(train.take(1)))
        import tensorflow as tf

        part = train.take(min(self.batching.train, len(train)))
        x = tf.nest.map_structure(self.preprocessing.scaled, part.x)
        # Text (text_folder) is held as NumPy bytes objects, which Keras' dtypes lack.
        x = tf.nest.map_structure(lambda a: tf.constant(a) if a.dtype.kind in "OSU" else a, x)
        batch: tuple = (x,)
        if part.y is not None:
            batch += (part.y,)
            if part.sample_weight is not None:
                batch += (part.sample_weight,)
        return batch

    def training_x(self, input_name: str | None) -> tuple[Any, int]:
        """What a model input sees in training (all of the training split, preprocessed),
        and its number of samples: what a preprocessing layer adapts on."""
        train = self.data.train
        if in_memory(train):
            return self.preprocessing.scaled(_x_of(train.x, input_name)), len(train)
        import tensorflow as tf

        def pick(*parts: Any) -> Any:
            return _x_of(parts[0], input_name)

        ds = train.map(pick)
        count = ds.reduce(tf.constant(0, tf.int64), lambda n, b: n + tf.shape(b, tf.int64)[0])
        return ds, int(count.numpy())


# ---------------------------------------------------------------- predict
def preprocess(
    loaded: LoadedConfig, arrays: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], str]:
    """Training's x preprocessing on `trainrun predict`'s inputs (by model input name),
    and what it did for a reader ('' when nothing)."""
    cfg = loaded.config.data
    prep = Preprocessing.of(cfg)
    out = {}
    for name, a in arrays.items():
        try:
            a = prep.shaped(a)
        except ValueError:
            raise DataError(
                f"input '{name}' of shape {a.shape} cannot be reshaped to "
                f"(N, {', '.join(map(str, prep.reshape or ()))}) as the run's data.reshape says"
            ) from None
        if prep.scale is not None:
            try:
                check_scale(cfg.scale, a.shape[1:])
            except ValueError as exc:
                raise DataError(f"input '{name}': {exc}") from None
        out[name] = prep.scaled(a)
    return out, prep.steps()


def raw_x_dtypes(loaded: LoadedConfig) -> Any:
    """The dtype of x as training read it, before scaling: a dict for several
    inputs, None where it cannot be told without running a tfdata factory."""
    source = loaded.config.data.source
    if source == "mnist":
        return np.dtype(np.uint8)
    if source == "numpy":
        from trainrun.data.numpy import raw_x_dtypes as numpy_dtypes

        return numpy_dtypes(loaded)
    return None


def _x_of(x: Any, name: str | None) -> Any:
    if isinstance(x, dict):
        return x[name] if name in x else next(iter(x.values()))
    return x


def _cardinality(ds: Any) -> int | None:
    n = int(ds.cardinality().numpy())
    return n if n > 0 else None


def _count_samples(ds: Any) -> int:
    import tensorflow as tf

    def add(n: tf.Tensor, *batch: Any) -> tf.Tensor:
        first = tf.nest.flatten(batch)[0]
        return n + tf.cast(tf.shape(first)[0], tf.int64)

    return int(ds.reduce(tf.constant(0, tf.int64), add).numpy())
