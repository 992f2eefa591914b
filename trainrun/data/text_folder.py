"""`source: text_folder`: Keras' text_dataset_from_directory, read into memory.

Files are listed and split as Keras does (trainrun.data.folders) and read as
Keras reads them: the raw bytes of each .txt file (a `tf.string` to the model),
cut to the first `max_length` bytes when it is set. They are held as a NumPy
array of bytes objects and fed by trainrun's in-memory pipeline, so the batch
order is derived from (seed, epoch) and resume is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainrun.config import LoadedConfig
from trainrun.data.arrays import ArraySplit
from trainrun.data.folders import Listing, array_splits, check_fits, list_files
from trainrun.errors import DataError

FORMATS = (".txt",)
_PER_TEXT = 64  # bytes a Python bytes object costs beyond its text, roughly


def _read(listing: Listing, max_length: int | None, name: str) -> np.ndarray:
    texts = np.empty(len(listing.paths), dtype=object)
    for i, path in enumerate(listing.paths):
        try:
            with open(path, "rb") as f:
                texts[i] = f.read() if max_length is None else f.read(max_length)
        except OSError as exc:
            raise DataError(f"cannot read {path} ({name} data): {exc.strerror or exc}") from None
    return texts


def load(loaded: LoadedConfig) -> tuple[ArraySplit, ArraySplit | None, ArraySplit | None]:
    """(train, validation, test) texts as arrays of bytes, labels by label_mode."""
    cfg = loaded.config.data.text_folder
    files = list_files(loaded, FORMATS)
    splits = {"train": files.train, "validation": files.validation, "test": files.test}
    total, count = 0, 0
    for listing in splits.values():
        for path in listing.paths if listing is not None else ():
            size = Path(path).stat().st_size
            total += (size if cfg.max_length is None else min(size, cfg.max_length)) + _PER_TEXT
            count += 1
    check_fits(
        total,
        f"text_folder's {count} files",
        "set data.text_folder.max_length, or stream the folder with a tfdata factory "
        "that returns keras.utils.text_dataset_from_directory(...) (its resume restarts "
        "the epoch in the factory's order, not bitwise)",
    )
    return array_splits(
        files, cfg.label_mode, lambda listing, name: _read(listing, cfg.max_length, name)
    )
