"""The data feed of the JAX and torch backends: batches of in-memory arrays made
in NumPy, without TensorFlow.

The order rule is the TensorFlow feed's (`pipeline.py`): the sample order of
pass ``p`` over the data is decided by ``(seed, p)`` alone, so a resumed run
sees exactly the batches the uninterrupted run saw, from any batch on. The
permutation itself is NumPy's (``default_rng([seed, p]).permutation``), not
TensorFlow's stateless shuffle, so the same seed gives a different (equally
random) order on TensorFlow than on JAX or torch: TensorFlow's op cannot be
run without TensorFlow, and reproducing its Philox-based kernel in NumPy would
tie trainrun to an implementation detail.

Batches reach ``model.fit`` as a `keras.utils.PyDataset` (one epoch, its order
read from an `EpochCounter` that the StateKeeper sets as each epoch begins, as
the TensorFlow feed reads its ``tf.Variable``), or as a generator (the rest of
an interrupted epoch; or, with fit.steps_per_epoch, one iterator that runs on
across epochs, as Keras does).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from trainrun.data.arrays import ArraySplit
from trainrun.data.feed import EvalBatches, Feed, in_memory
from trainrun.errors import DataError

_FOREVER = 2**62


def needs_tensorflow(what: str) -> DataError:
    return DataError(
        f"{what} needs TensorFlow (tf.data), which backend: {keras.backend.backend()} runs "
        "without: pip install tensorflow-cpu, or set backend: tensorflow"
    )


class EpochCounter:
    """The epoch whose order `EpochBatches` serves: what the TensorFlow feed keeps in a
    tf.Variable (the StateKeeper calls ``assign`` as each epoch begins)."""

    def __init__(self, epoch: int) -> None:
        self.value = int(epoch)

    def assign(self, epoch: int) -> None:
        self.value = int(epoch)

    def read_value(self) -> int:
        return self.value


def permutation(n: int, shuffle: bool, seed: int, pass_index: int) -> np.ndarray:
    """The sample order of one pass: keyed by (seed, pass) alone."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed), int(pass_index)]).permutation(n)


def _parts(split: ArraySplit) -> tuple:
    parts: tuple = (split.x,)
    if split.y is not None:
        parts += (split.y,)
        if split.sample_weight is not None:
            parts += (split.sample_weight,)
    return parts


def _map(fn: Any, nest: Any) -> Any:
    if isinstance(nest, dict):
        return {k: fn(v) for k, v in nest.items()}
    return fn(nest)


Gather = Callable[[np.ndarray], tuple]  # sample indices -> a batch


class _Gather:
    """Batches of a split by index, scaled as the TensorFlow feed scales them
    (float32, then one divisor, or one per feature of the last axis)."""

    def __init__(self, split: ArraySplit, scale: float | np.ndarray | None) -> None:
        self.parts = _parts(split)
        self.scale = None if scale is None else np.asarray(scale, np.float32)

    def __call__(self, index: np.ndarray) -> tuple:
        taken = tuple(_map(lambda a: np.take(a, index, axis=0), p) for p in self.parts)
        if self.scale is not None:
            x = _map(lambda a: a.astype(np.float32) / self.scale, taken[0])
            taken = (x, *taken[1:])
        return taken


class Share:
    """One process's part of every batch (JAX, distribute: multi_worker): slice `index`
    of `count` equal, contiguous slices, so that the processes' parts, in process order,
    make the batch the one process would have fed."""

    def __init__(self, gather: Gather, index: int, count: int) -> None:
        self.gather, self.index, self.count = gather, index, count

    def __call__(self, index: np.ndarray) -> tuple:
        part = len(index) // self.count
        return self.gather(index[self.index * part : (self.index + 1) * part])


def _cut(order: np.ndarray, batch_size: int, i: int) -> np.ndarray:
    return order[i * batch_size : (i + 1) * batch_size]


def batches(
    split: ArraySplit,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    start_batch: int = 0,
    repeat: bool = False,
    scale: float | np.ndarray | None = None,
    gather: Gather | None = None,
) -> Iterator[tuple]:
    """Batches of `split` from global batch `start_batch` (pipeline.batches' rule):
    global batch g is batch ``g % S`` of pass ``g // S``; with `repeat`, for ever.
    `gather` makes a batch from sample indices (default: `_Gather(split, scale)`)."""
    n = len(split)
    per_pass = math.ceil(n / batch_size)
    gather = gather or _Gather(split, scale)
    first_pass, skip = divmod(start_batch, per_pass)
    last = _FOREVER if repeat else first_pass + 1
    for p in range(first_pass, last):
        order = permutation(n, shuffle, seed, p)
        for i in range(skip if p == first_pass else 0, per_pass):
            yield gather(_cut(order, batch_size, i))


class EpochBatches(keras.utils.PyDataset):
    """One epoch of batches in the order of the epoch `counter` holds when read.

    Keras makes a new iterator each epoch, after the callbacks' on_epoch_begin; the
    StateKeeper sets `counter` there, so epoch e is pass e of `batches`.
    """

    def __init__(
        self,
        split: ArraySplit,
        *,
        batch_size: int,
        counter: EpochCounter | None = None,
        shuffle: bool = False,
        seed: int = 0,
        scale: float | np.ndarray | None = None,
        gather: Gather | None = None,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.n = len(split)
        self.batch_size = batch_size
        self.counter = counter or EpochCounter(0)
        self.shuffle, self.seed = shuffle, seed
        self.gather = gather or _Gather(split, scale)
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __getitem__(self, i: int) -> tuple:
        if i >= len(self):
            raise IndexError(i)
        epoch = self.counter.read_value()
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, permutation(self.n, self.shuffle, self.seed, epoch))
        return self.gather(_cut(self._order[1], self.batch_size, i))


class NumpyFeed(Feed):
    """`Feed` whose batches are NumPy arrays: the feed of the JAX and torch backends.

    On JAX with ``data.on_device`` the arrays are kept on the device and each batch
    is gathered there (`device_feed.DeviceGather`), bitwise the same batches.
    A split that is a tf.data dataset (source: tfdata) is passed to Keras as it is
    (Keras iterates it as NumPy on any backend); that needs TensorFlow installed.
    """

    on_device: bool = False  # set by place()
    share: tuple[int, int] | None = None  # (this process, processes): set by split_over()

    def split_over(self, replicas: int, processes: int, index: int) -> None:
        """Each batch is split evenly over `replicas` devices (keras.distribution), and
        across `processes` processes each feeds its own part (`Share`, process `index`).
        Refuses, before training, a batch that would not split."""
        b = self.batching
        sizes = {
            "training": (self.data.train, b.train, "fit.batch_size"),
            "validation": (self.data.validation, b.evaluate, "fit.validation_batch_size"),
        }
        for name, (split, size, key) in sizes.items():
            if split is None:
                continue
            if not in_memory(split):
                if processes > 1:
                    raise self.loaded.error(
                        f"distribute: multi_worker on backend: jax feeds in-memory data, and "
                        f"the {name} data is a tf.data dataset (source: "
                        f"{self.loaded.config.data.source}); use an in-memory source, or "
                        "backend: tensorflow",
                        ("distribute",),
                    )
                continue
            last = len(split) % size
            if size % replicas:
                raise self.loaded.error(
                    f"{name} batches of {size} do not split evenly over {replicas} devices: "
                    f"set {key} to a multiple of {replicas}",
                    tuple(key.split(".")),
                )
            if last % replicas:
                raise self.loaded.error(
                    f"the last {name} batch has {last} samples ({len(split)} in batches of "
                    f"{size}), which do not split evenly over {replicas} devices: choose "
                    f"{key} or the number of samples (data.limit) so that it divides by "
                    f"{replicas}",
                    tuple(key.split(".")),
                )
        if processes > 1:
            self.share = (index, processes)

    def place(self) -> str | None:
        """Decide where the in-memory splits live for training (data.on_device), once
        they are final (after one_hot); returns a note for the run, or None."""
        setting = self.loaded.config.data.on_device
        if keras.backend.backend() != "jax" or setting is False or not self.in_memory:
            return None
        if setting == "auto" and keras.distribution.distribution() is not None:
            return None  # each batch is split over the devices: it starts on the host
        from trainrun.data import device_feed

        splits = [s for s in (self.data.train, self.data.validation) if in_memory(s)]
        size = device_feed.nbytes(splits, self.preprocessing.scale)
        self.on_device, note = device_feed.placement(setting, size)
        return note

    @functools.cached_property
    def _gathers(self) -> dict[int, Gather]:
        return {}

    def _gather(self, split: ArraySplit) -> Gather | None:
        """The gather of `split`: on the device (made once a split), or None (NumPy's);
        this process's part of each batch under multi_worker."""
        gather = self._device_gather(split)
        if self.share is None:
            return gather
        return Share(gather or _Gather(split, self.preprocessing.scale), *self.share)

    def _device_gather(self, split: ArraySplit) -> Gather | None:
        if not self.on_device:
            return None
        key = id(split)
        if key not in self._gathers:
            from trainrun.data.device_feed import DeviceGather

            self._gathers[key] = DeviceGather(split, self.preprocessing.scale)
        return self._gathers[key]

    def epoch_counter(self, epoch: int) -> EpochCounter:
        return EpochCounter(epoch)

    def train_batches(
        self, epoch: int, step: int, *, partial: bool, epoch_var: Any
    ) -> tuple[Any, int | None]:
        ds, steps = super().train_batches(epoch, step, partial=partial, epoch_var=epoch_var)
        if partial and steps is None and self.in_memory:
            # A generator has no length: Keras would run it dry and warn that the
            # input "ran out of data". The rest of the epoch has a known length.
            steps = self.steps_per_epoch() - step
        return ds, steps

    def _batches(self, split: ArraySplit, **kw: Any) -> Any:
        return batches(split, gather=self._gather(split), **kw)

    def _epoch_batches(self, split: ArraySplit, epoch_var: Any, **kw: Any) -> Any:
        return EpochBatches(split, counter=epoch_var, gather=self._gather(split), **kw)

    def validation_batches(self) -> Any:
        val = self.data.validation
        if val is None or not in_memory(val):
            return val
        return EpochBatches(
            val,
            batch_size=self.batching.evaluate,
            scale=self.preprocessing.scale,
            gather=self._gather(val),
        )

    def eval_batches(self, name: str) -> EvalBatches:
        value = self.split(name)
        if not in_memory(value):
            return super().eval_batches(name)
        if len(value) == 0:
            raise DataError(f"the {name} data of this run is empty")
        size = self.batching.evaluate
        ds = EpochBatches(value, batch_size=size, scale=self.preprocessing.scale)
        return EvalBatches(ds, None, len(value), size)

    def first_batch(self) -> tuple:
        train = self.data.train
        if not in_memory(train):
            return super().first_batch()
        part = train.take(min(self.batching.train, len(train)))
        x = _map(self.preprocessing.scaled, part.x)
        if any(a.dtype.kind in "OSU" for a in (x.values() if isinstance(x, dict) else [x])):
            raise DataError(
                f"text inputs need backend: tensorflow; backend {keras.backend.backend()} "
                "has no string tensors"
            )
        batch: tuple = (x,)
        if part.y is not None:
            batch += (part.y,)
            if part.sample_weight is not None:
                batch += (part.sample_weight,)
        return batch
