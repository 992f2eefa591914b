"""`source: tfdata`: a factory returning a tf.data.Dataset, or a CSV file."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainrun.config import LoadedConfig
from trainrun.config.schema import Split
from trainrun.data.arrays import ArraySplit
from trainrun.data.feed import Batching
from trainrun.registry import import_object


def load_split(loaded: LoadedConfig, split: Split, name: str) -> tf.data.Dataset | ArraySplit:
    where = ("data", name)
    if split.factory:
        fn = import_object(
            split.factory,
            base_dir=loaded.base_dir,
            what="dataset factory",
            path=f"data.{name}.factory",
        )
        try:
            ds = fn(**split.args)
        except Exception as exc:
            raise loaded.error(
                f"dataset factory '{split.factory}' raised {type(exc).__name__}: {exc}",
                (*where, "factory"),
            ) from exc
        if not isinstance(ds, tf.data.Dataset):
            raise loaded.error(
                f"dataset factory '{split.factory}' must return a tf.data.Dataset, got {type(ds).__name__}",
                (*where, "factory"),
            )
        return ds
    if split.csv:
        path = loaded.resolve_path(split.csv)
        if not path.is_file():
            raise loaded.error(f"file not found: {path}", (*where, "csv"))
        with path.open(encoding="utf-8") as f:
            header = f.readline().strip().split(",")
        label = split.label
        if label not in header:
            raise loaded.error(
                f"label column '{label}' is not in {path.name}; it has: {', '.join(header)}",
                (*where, "label"),
            )
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float32, ndmin=2)
        col = header.index(label)
        x = np.delete(table, col, axis=1)
        return ArraySplit(x, table[:, col])
    if split.tfrecord:
        return _tfrecord(loaded, split, where)
    raise loaded.error(
        "a tfdata split needs 'factory: module:function' (or 'csv' with 'label')", where
    )


def _tfrecord(loaded: LoadedConfig, split: Split, where: tuple) -> tf.data.Dataset:
    """TFRecord files of tf.train.Example records, parsed with the declared features.

    ``features: {name: {shape: [..], dtype: float32}}``; ``label`` names the feature
    that is y; the others are x (one array, or a mapping by model input name).
    Batched by fit.batch_size.
    """
    files = [split.tfrecord] if isinstance(split.tfrecord, str) else list(split.tfrecord)
    paths = [loaded.resolve_path(f) for f in files]
    for i, path in enumerate(paths):
        if not path.is_file():
            raise loaded.error(
                f"file not found: {path}",
                (*where, "tfrecord", i) if len(paths) > 1 else (*where, "tfrecord"),
            )
    if not split.features:
        raise loaded.error(
            "tfrecord input needs 'features', e.g. features: {image: {shape: [784]}, label: {dtype: int64}}",
            where,
        )
    spec = {}
    for name, feature in split.features.items():
        feature = feature or {}
        if not isinstance(feature, dict) or set(feature) - {"shape", "dtype"}:
            raise loaded.error(
                "a feature is {shape: [...], dtype: float32|int64|string}",
                (*where, "features", name),
            )
        try:
            dtype = tf.as_dtype(feature.get("dtype", "float32"))
        except TypeError:
            raise loaded.error(
                f"unknown dtype {feature.get('dtype')!r}; use float32, int64 or string",
                (*where, "features", name, "dtype"),
            ) from None
        spec[name] = tf.io.FixedLenFeature(list(feature.get("shape", [])), dtype)
    label = split.label
    if label not in spec:
        raise loaded.error(
            f"label '{label}' is not one of the features ({', '.join(spec)})", (*where, "label")
        )

    def parse(record: tf.Tensor) -> tuple:
        example = tf.io.parse_single_example(record, spec)
        y = example.pop(label)
        x = next(iter(example.values())) if len(example) == 1 else example
        return x, y

    ds = tf.data.TFRecordDataset([str(p) for p in paths])
    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE).batch(Batching.of(loaded).train)
