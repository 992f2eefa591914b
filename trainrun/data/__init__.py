"""Config -> the train / validation / test data of a run.

In-memory sources (mnist, numpy, csv, image_folder, text_folder) become
`ArraySplit`s that the pipeline feeds without per-epoch copies and with a
resumable shuffle order; a tfdata factory's dataset is used as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainrun.config import LoadedConfig
from trainrun.data.arrays import ArraySplit


@dataclass
class Data:
    train: Any  # ArraySplit | tf.data.Dataset
    validation: Any | None
    test: Any | None
    scale: float | None

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, ArraySplit)


def preload(loaded: LoadedConfig) -> None:
    """Start reading what can be read before TensorFlow is imported (MNIST's file)."""
    if loaded.config.data.source == "mnist":
        from trainrun.data.mnist import preload as preload_mnist

        preload_mnist()


def build_data(loaded: LoadedConfig) -> Data:
    cfg = loaded.config.data
    limit = cfg.limit
    if cfg.source == "mnist":
        from trainrun.data.mnist import load_mnist

        train, test = load_mnist()
        validation = None
    elif cfg.source in ("image_folder", "text_folder"):
        if cfg.source == "image_folder":
            from trainrun.data.image_folder import load
        else:
            from trainrun.data.text_folder import load
        train, validation, test = load(loaded)  # validation split as Keras makes it
    else:
        if cfg.source == "numpy":
            from trainrun.data.numpy import load_split
        elif cfg.source == "csv":
            from trainrun.data.csv_table import load_split
        else:
            from trainrun.data.tfdata import load_split
        train = load_split(loaded, cfg.train, "train")
        validation = load_split(loaded, cfg.validation, "validation") if cfg.validation else None
        test = load_split(loaded, cfg.test, "test") if cfg.test else None

    def prepare(split: Any, n: int | None, name: str) -> Any:
        if not isinstance(split, ArraySplit):
            from trainrun.data.pipeline import scaled

            ds = scaled(split, cfg.scale, cfg.reshape, cfg.flatten)
            ds = ds.take(n) if n else ds
            return ds.prefetch(-1)  # tf.data.AUTOTUNE: overlap input with training
        try:
            return split.take(n).reshaped(cfg.flatten, cfg.reshape)
        except ValueError as exc:
            raise loaded.error(f"{exc} ({name} data)", ("data", "reshape")) from None

    train = prepare(train, limit.train if limit else None, "train")
    if cfg.validation_split:
        if validation is not None:
            raise loaded.error(
                "give either validation_split or a validation split, not both",
                ("data", "validation_split"),
            )
        train, validation = train.split_off(cfg.validation_split)
    validation = (
        prepare(validation, limit.validation if limit else None, "validation")
        if validation is not None
        else None
    )
    test = prepare(test, limit.test if limit else None, "test") if test is not None else None
    return Data(train=train, validation=validation, test=test, scale=cfg.scale)
