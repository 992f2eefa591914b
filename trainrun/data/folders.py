"""What image_folder and text_folder share: a folder of class subfolders -> file lists.

The files are listed, labelled and split exactly as Keras'
`image_dataset_from_directory` / `text_dataset_from_directory` do (Keras' own
`index_directory`: classes are the sorted subfolders, or `class_names`; with
`shuffle` the list is shuffled by `seed`; `validation_split` takes the last
`int(fraction * n)` files), so a Keras user gets the same training and
validation files. The files are then read into memory arrays by the source's
own module, and trainrun's in-memory pipeline orders the batches from
(seed, epoch): a killed run resumes bitwise.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainrun.config import LoadedConfig
from trainrun.data.arrays import ArraySplit
from trainrun.errors import DataError

# A source's files are refused when they would take more than this share of the
# memory that is free now: training needs the rest.
MEMORY_SHARE = 0.5


@dataclass
class Listing:
    """The files of one split and their integer labels (Keras' int32)."""

    paths: list[str]
    labels: np.ndarray


@dataclass
class Listings:
    train: Listing
    validation: Listing | None
    test: Listing | None
    class_names: list[str]


def _index(
    loaded: LoadedConfig,
    key: str,
    directory: Path,
    formats: tuple[str, ...],
    class_names: list[str] | None,
    shuffle: bool,
    seed: int,
) -> tuple[list[str], np.ndarray, list[str]]:
    from keras.src.utils import dataset_utils  # the function both Keras loaders call

    cfg = getattr(loaded.config.data, loaded.config.data.source)
    where = ("data", loaded.config.data.source, key)
    if not directory.is_dir():
        what = "not a directory" if directory.exists() else "directory not found"
        raise loaded.error(f"{what}: {directory}", where)
    kwargs = {
        "class_names": class_names,
        "shuffle": shuffle,
        "seed": seed,
        "follow_links": cfg.follow_links,
    }
    if "verbose" in inspect.signature(dataset_utils.index_directory).parameters:
        kwargs["verbose"] = False  # trainrun says what it found itself
    try:
        paths, labels, names = dataset_utils.index_directory(
            str(directory), "inferred", formats=formats, **kwargs
        )
    except ValueError as exc:  # class_names that are not its subfolders
        raise loaded.error(f"{directory}: {exc}", where) from None
    if not names:
        raise loaded.error(
            f"{directory} has no subfolders; it needs one subfolder per class "
            f"(e.g. {directory}/cat/, {directory}/dog/) holding the {'/'.join(formats)} files",
            where,
        )
    if not paths:
        raise loaded.error(
            f"{directory} has no {'/'.join(formats)} files in its class subfolders "
            f"({', '.join(names)})",
            where,
        )
    return list(paths), np.asarray(labels, dtype=np.int32), list(names)


def list_files(loaded: LoadedConfig, formats: tuple[str, ...]) -> Listings:
    """Train, validation and test files of the run's folder source, as Keras lists them."""
    data = loaded.config.data
    cfg = getattr(data, data.source)
    # Keras needs a seed to split shuffled files; the run's seed (always set by
    # fit, written into config.yaml) keeps the split the same on resume and evaluate.
    seed = cfg.seed if cfg.seed is not None else (loaded.config.seed or 0)
    paths, labels, names = _index(
        loaded,
        "directory",
        loaded.resolve_path(cfg.directory),
        formats,
        cfg.class_names,
        cfg.shuffle,
        seed,
    )
    train, validation = Listing(paths, labels), None

    def other_split(key: str) -> Listing:
        """A split from its own folder, with the training split's class names, unshuffled."""
        found, found_labels, _ = _index(
            loaded, key, loaded.resolve_path(getattr(cfg, key)), formats, names, False, seed
        )
        return Listing(found, found_labels)

    if cfg.validation_split:
        n_val = int(cfg.validation_split * len(paths))  # Keras' count
        if n_val == 0 or n_val == len(paths):
            raise loaded.error(
                f"validation_split {cfg.validation_split:g} of {len(paths)} files leaves "
                f"{'no file for validation' if n_val == 0 else 'no file for training'}; "
                "give more files or another validation_split",
                ("data", data.source, "validation_split"),
            )
        train = Listing(paths[:-n_val], labels[:-n_val])
        validation = Listing(paths[-n_val:], labels[-n_val:])
    elif cfg.validation_directory:
        validation = other_split("validation_directory")
    test = other_split("test_directory") if cfg.test_directory else None
    if cfg.label_mode == "binary" and len(names) != 2:
        raise loaded.error(
            f"label_mode 'binary' needs exactly 2 classes, but {cfg.directory} has "
            f"{len(names)}: {', '.join(names)}; use label_mode: int or categorical",
            ("data", data.source, "label_mode"),
        )
    return Listings(train, validation, test, names)


def array_splits(
    files: Listings, label_mode: str, read: Callable[[Listing, str], np.ndarray]
) -> tuple[ArraySplit, ArraySplit | None, ArraySplit | None]:
    """(train, validation, test) in memory: x from `read(listing, split name)`, y encoded."""
    out = []
    for name in ("train", "validation", "test"):
        listing = getattr(files, name)
        if listing is None:
            out.append(None)
            continue
        y = encode_labels(listing.labels, label_mode, len(files.class_names))
        out.append(ArraySplit(read(listing, name), y))
    return out[0], out[1], out[2]


def encode_labels(labels: np.ndarray, label_mode: str, num_classes: int) -> np.ndarray:
    """Keras' label modes: int32 indices, float32 one-hot, or float32 (N, 1) for binary."""
    if label_mode == "categorical":
        return np.eye(num_classes, dtype=np.float32)[labels]
    if label_mode == "binary":
        return labels.astype(np.float32)[:, None]
    return labels


def available_memory() -> int | None:
    """Bytes of memory free for new allocations (MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(nbytes: int, what: str, fix: str) -> None:
    """Refuse to read `nbytes` into memory when that would take most of what is free."""
    free = available_memory()
    if free is not None and nbytes > MEMORY_SHARE * free:
        raise DataError(
            f"{what} would take {nbytes / 2**30:.1f} GiB in memory, more than half of the "
            f"{free / 2**30:.1f} GiB free; {fix}"
        )
