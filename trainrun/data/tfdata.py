"""`source: tfdata`: a factory returning a tf.data.Dataset, or a CSV file."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainrun.config import LoadedConfig
from trainrun.config.schema import Split
from trainrun.data.arrays import ArraySplit
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
        raise loaded.error(
            "tfrecord input is not supported yet; give a factory that returns a tf.data.Dataset "
            "(tf.data.TFRecordDataset(...).map(parse)) instead",
            (*where, "tfrecord"),
        )
    raise loaded.error(
        "a tfdata split needs 'factory: module:function' (or 'csv' with 'label')", where
    )
