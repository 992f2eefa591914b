"""`source: image_folder`: Keras' image_dataset_from_directory, decoded into memory.

Files are listed and split as Keras does (trainrun.data.folders); each image is
decoded and resized as Keras' loader does it (`tf.image.decode_image`, then
`tf.image.resize`, `smart_resize` for crop_to_aspect_ratio, or
`resize_with_pad`), then rounded to uint8: a quarter of the memory of Keras'
float32, the same 0-255 range. The arrays go through trainrun's in-memory
pipeline, so the batch order is derived from (seed, epoch) and resume is exact.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainrun.config import LoadedConfig
from trainrun.config.schema import ImageFolder
from trainrun.data.arrays import ArraySplit
from trainrun.data.folders import Listing, array_splits, check_fits, list_files
from trainrun.errors import DataError

# Keras' image_dataset_utils.ALLOWLIST_FORMATS
FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}
_BATCH = 256  # images decoded per step while reading


def _loader(cfg: ImageFolder):
    """path -> one uint8 image of image_size, as Keras' _load_image_tf makes it (then rounded)."""
    import keras

    channels = CHANNELS[cfg.color_mode]
    height, width = cfg.image_size
    channels_first = (cfg.data_format or keras.config.image_data_format()) == "channels_first"

    def load(path: tf.Tensor) -> tf.Tensor:
        img = tf.image.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        if cfg.crop_to_aspect_ratio:
            img = keras.preprocessing.image.smart_resize(
                img, (height, width), interpolation=cfg.interpolation
            )
        elif cfg.pad_to_aspect_ratio:
            img = tf.image.resize_with_pad(img, height, width, method=cfg.interpolation)
        else:
            img = tf.image.resize(img, (height, width), method=cfg.interpolation)
        img = tf.cast(tf.clip_by_value(tf.round(img), 0.0, 255.0), tf.uint8)
        img.set_shape((height, width, channels))
        return tf.transpose(img, (2, 0, 1)) if channels_first else img

    return load


def _first_bad_file(paths: list[str], load) -> tuple[str, str]:
    """The first file that does not decode, and why: found one by one, after the fast
    path failed without saying which file it was."""
    for path in paths:
        try:
            load(tf.constant(path))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, ValueError) as exc:
            message = getattr(exc, "message", str(exc)).strip().splitlines()[0]
            return path, message
    return "", ""


def _decode(listing: Listing, cfg: ImageFolder, name: str) -> np.ndarray:
    from trainrun.data.pipeline import _parallel_calls

    n = len(listing.paths)
    load = _loader(cfg)
    ds = (
        tf.data.Dataset.from_tensor_slices(tf.constant(listing.paths, tf.string))
        .map(load, num_parallel_calls=_parallel_calls())
        .batch(_BATCH)
    )
    out = np.empty((n, *image_shape(cfg)), np.uint8)
    try:
        at = 0
        for batch in ds.as_numpy_iterator():
            out[at : at + len(batch)] = batch
            at += len(batch)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
        path, why = _first_bad_file(listing.paths, load)
        raise DataError(
            f"cannot read {path or 'an image'} ({name} data) as an image: {why}; "
            f"image_folder reads {', '.join(FORMATS)} files: remove or replace it"
        ) from None
    return out


def image_shape(cfg: ImageFolder) -> tuple[int, int, int]:
    """The per-image shape: (h, w, c), or (c, h, w) under channels_first."""
    import keras

    height, width = cfg.image_size
    channels = CHANNELS[cfg.color_mode]
    if (cfg.data_format or keras.config.image_data_format()) == "channels_first":
        return (channels, height, width)
    return (height, width, channels)


def load(loaded: LoadedConfig) -> tuple[ArraySplit, ArraySplit | None, ArraySplit | None]:
    """(train, validation, test) images as uint8 arrays, labels by label_mode."""
    cfg = loaded.config.data.image_folder
    files = list_files(loaded, FORMATS)
    height, width = cfg.image_size
    per_image = height * width * CHANNELS[cfg.color_mode]
    splits = {"train": files.train, "validation": files.validation, "test": files.test}
    total = sum(len(s.paths) for s in splits.values() if s is not None)
    check_fits(
        total * per_image,
        f"image_folder's {total} images of {height}x{width}x{CHANNELS[cfg.color_mode]}",
        "set a smaller data.image_folder.image_size, or stream the folder with a "
        "tfdata factory that returns keras.utils.image_dataset_from_directory(...) "
        "(its resume restarts the epoch in the factory's order, not bitwise)",
    )
    return array_splits(files, cfg.label_mode, lambda listing, name: _decode(listing, cfg, name))
