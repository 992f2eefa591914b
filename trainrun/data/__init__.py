"""Config -> the train / validation / test data of a run.

In-memory sources (mnist, numpy, csv, image_folder, text_folder) become
`ArraySplit`s that the pipeline feeds without per-epoch copies and with a
resumable shuffle order; a tfdata factory's dataset is used as given. The engine
reads them through `trainrun.data.feed.Feed`, never directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from trainrun.config import LoadedConfig
from trainrun.data.arrays import ArraySplit, Preprocessing, check_scale, one_hot


@dataclass
class Data:
    """A run's splits, flattened / reshaped and limited. A dataset is scaled too; an
    in-memory split is not: the pipeline divides each batch (no float32 copy of it all)."""

    train: Any  # ArraySplit | tf.data.Dataset
    validation: Any | None
    test: Any | None


def preload(loaded: LoadedConfig) -> None:
    """Start reading what can be read before TensorFlow is imported (MNIST's file)."""
    if loaded.config.data.source == "mnist":
        from trainrun.data.mnist import preload as preload_mnist

        preload_mnist()


def build_data(loaded: LoadedConfig) -> Data:
    cfg = loaded.config.data
    limit = cfg.limit
    prep = Preprocessing.of(cfg)
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
            from trainrun.data.tf_sources import load_split
        train = load_split(loaded, cfg.train, "train")
        validation = load_split(loaded, cfg.validation, "validation") if cfg.validation else None
        test = load_split(loaded, cfg.test, "test") if cfg.test else None

    def prepare(split: Any, n: int | None, name: str) -> Any:
        if not isinstance(split, ArraySplit):
            from trainrun.data.pipeline import scaled

            spec = split.element_spec
            x = spec[0] if isinstance(spec, tuple) else spec
            _check_scale(loaded, [tuple(t.shape[1:]) for t in _leaves(x)], name)
            ds = scaled(split, prep)
            ds = ds.take(n) if n else ds
            return ds.prefetch(-1)  # tf.data.AUTOTUNE: overlap input with training
        try:
            split = split.take(n).map_x(prep.shaped)
        except ValueError as exc:
            raise loaded.error(f"{exc} ({name} data)", ("data", "reshape")) from None
        _check_scale(loaded, _leaves(split.input_shapes()), name)
        return split

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
    return Data(train=train, validation=validation, test=test)


def _leaves(nest: Any) -> list:
    return list(nest.values()) if isinstance(nest, dict) else [nest]


def _check_scale(loaded: LoadedConfig, shapes: list, name: str) -> None:
    """A list of divisors, one per feature: checked against every input (after reshape)."""
    if not isinstance(loaded.config.data.scale, list):
        return
    for shape in shapes:
        try:
            check_scale(loaded.config.data.scale, tuple(shape))
        except ValueError as exc:
            raise loaded.error(f"{exc} ({name} data)", ("data", "scale")) from None


def encode_labels(loaded: LoadedConfig, data: Data, model: Any) -> Data:
    """`data.one_hot`: integer labels -> one-hot rows, as wide as the model's output
    (or `data.num_classes`). Needs the built model, so it runs after building it."""
    cfg = loaded.config.data
    if not cfg.one_hot:
        return data
    # Here, not at the top: `preload` runs before Keras is imported on the run's backend.
    from trainrun.keras_compat import producing_layer

    where = ("data", "num_classes") if cfg.num_classes else ("data", "one_hot")
    outputs = list(getattr(model, "outputs", None) or [])
    names = list(getattr(model, "output_names", None) or []) or [
        producing_layer(t).name
        for t in outputs  # a Sequential's: its last layer's
    ]
    units = {n: t.shape[-1] for n, t in zip(names, outputs, strict=False)}

    def classes(output: str | None) -> int:
        have = units.get(output) if output else (next(iter(units.values())) if units else None)
        if cfg.num_classes:
            if have is not None and have != cfg.num_classes:
                raise loaded.error(
                    f"one-hot labels of {cfg.num_classes} classes do not fit the model's output "
                    f"of {have} units; set num_classes to {have}, or the output's units",
                    where,
                )
            return cfg.num_classes
        if have is None:
            raise loaded.error(
                "the number of classes cannot be read from the model's output; "
                "give it as data.num_classes",
                where,
            )
        return int(have)

    def encode(split: Any, name: str) -> Any:
        if split is None or split.y is None:
            return split
        if not isinstance(split, ArraySplit):
            raise loaded.error(
                "one_hot converts in-memory labels; a tf.data dataset must give its labels "
                "one-hot itself (tf.one_hot in the factory)",
                where,
            )
        try:
            if isinstance(split.y, dict):
                y = {k: one_hot(v, classes(k)) for k, v in split.y.items()}
            else:
                if len(outputs) > 1:
                    raise ValueError(
                        f"the model has {len(outputs)} outputs; give y as a mapping of output "
                        "names to labels"
                    )
                y = one_hot(split.y, classes(None))
        except ValueError as exc:
            n = cfg.num_classes or (next(iter(units.values())) if len(units) == 1 else None)
            fix = (
                f" (the model's output has {n} units, so {n} classes); set the output's "
                "units, or num_classes, to the number of classes"
                if n and "beyond" in str(exc)
                else ""
            )
            raise loaded.error(f"{name} {exc}{fix}", where) from None
        return split.with_labels(y)

    return replace(
        data,
        train=encode(data.train, "training"),
        validation=encode(data.validation, "validation"),
        test=encode(data.test, "test"),
    )
