"""`source: numpy`: .npz files with named keys, or .npy files for x and y."""

from __future__ import annotations

import zipfile
from typing import Any

import numpy as np

from trainrun.config import LoadedConfig
from trainrun.config.schema import Split
from trainrun.data.arrays import ArrayFileError, ArraySplit, check_array_file


def _load_npy(loaded: LoadedConfig, value: str, where: tuple) -> np.ndarray:
    path = loaded.resolve_path(value)
    if not path.is_file():
        raise loaded.error(f"file not found: {path}", where)
    try:
        check_array_file(path)
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise loaded.error(f"cannot read {path} as a .npy array: {exc}", where) from None


def _from_npz(loaded: LoadedConfig, npz: Any, ref: Any, where: tuple, default: str | None) -> Any:
    if ref is None:
        ref = default
    if ref is None:
        return None
    if isinstance(ref, dict):
        return {
            name: _from_npz(loaded, npz, key, (*where, name), None) for name, key in ref.items()
        }
    if ref.endswith(".npy"):
        return _load_npy(loaded, ref, where)
    if npz is None:
        raise loaded.error(
            f"'{ref}' names an array key but this split has no 'path' to an .npz file; "
            "give path: file.npz, or a .npy file path",
            where,
        )
    if ref not in npz.files:
        raise loaded.error(
            f"key '{ref}' is not in {npz.fid.name if hasattr(npz, 'fid') and npz.fid else 'the .npz'}; "
            f"it has: {', '.join(npz.files)}",
            where,
        )
    try:
        return npz[ref]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # checked, yet damaged
        raise loaded.error(f"cannot read key '{ref}' of {npz_path(npz)}: {exc}", where) from None


def npz_path(npz: Any) -> str:
    fid = getattr(npz, "fid", None)
    return str(getattr(fid, "name", "the .npz file"))


def load_split(loaded: LoadedConfig, split: Split, name: str) -> ArraySplit:
    """One split from its config: arrays are read into memory once."""
    where = ("data", name)
    npz = None
    if split.path:
        path = loaded.resolve_path(split.path)
        if not path.is_file():
            raise loaded.error(f"file not found: {path}", (*where, "path"))
        if path.suffix != ".npz":
            raise loaded.error(
                f"{path.name} is not an .npz file; for .npy files give x: and y: paths",
                (*where, "path"),
            )
        try:
            check_array_file(path)
            npz = np.load(path, allow_pickle=False)
        except ArrayFileError as exc:
            raise loaded.error(f"{path}: {exc}", (*where, "path")) from None
        except (OSError, ValueError) as exc:
            raise loaded.error(f"cannot read {path}: {exc}", (*where, "path")) from None
    x = _from_npz(loaded, npz, split.x, (*where, "x"), "x")
    y = _from_npz(
        loaded, npz, split.y, (*where, "y"), "y" if npz is not None and "y" in npz.files else None
    )
    sw = _from_npz(loaded, npz, split.sample_weight, (*where, "sample_weight"), None)
    lengths = {len(a) for a in (list(x.values()) if isinstance(x, dict) else [x])}
    for part in (y, sw):
        if part is not None:
            lengths |= {len(a) for a in (list(part.values()) if isinstance(part, dict) else [part])}
    if len(lengths) > 1:
        raise loaded.error(
            f"x, y and sample_weight have different numbers of samples: {sorted(lengths)}", where
        )
    return ArraySplit(x, y, sw)


def raw_x_dtypes(loaded: LoadedConfig) -> Any:
    """The dtype of the training x as stored (a dict for a dict of inputs), read from
    the file headers only; None where it cannot be told (a file that has moved)."""
    split = loaded.config.data.train
    if split is None:
        return None
    dtypes: dict[str | None, np.dtype] = {}
    if split.path:
        try:
            dtypes = check_array_file(loaded.resolve_path(split.path))
        except (ArrayFileError, OSError):
            return None

    def one(ref: str | None) -> np.dtype | None:
        if ref is None:
            return None
        if ref.endswith(".npy"):
            try:
                return check_array_file(loaded.resolve_path(ref)).get(None)
            except (ArrayFileError, OSError):
                return None
        return dtypes.get(ref)

    x = split.x if split.x is not None else "x"
    if isinstance(x, dict):
        return {name: one(ref) for name, ref in x.items()}
    return one(x)
