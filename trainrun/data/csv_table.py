"""`source: csv`: a CSV file with a header line, read into memory arrays.

`label` names the column that is y; `columns` the columns that are x (default:
every other column), in that order, as one float32 array. A label column of
whole numbers is int64 (class indices), otherwise float32. The arrays are
in-memory data: validation_split, shuffling and exact resume work as for
`source: numpy`. A validation or test split without `label` / `columns` takes
the training split's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from trainrun.config import LoadedConfig
from trainrun.config.schema import Split
from trainrun.data.arrays import ArraySplit
from trainrun.errors import ConfigError, did_you_mean


def _rows(loaded: LoadedConfig, path: Path, where: tuple) -> tuple[list[str], list, list[int]]:
    """Header, data rows and the file line of each row; blank lines skipped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise loaded.error(f"{path} is not UTF-8 text ({exc.reason})", where) from None
    except csv.Error as exc:
        raise loaded.error(f"{path} is not readable CSV: {exc}", where) from None
    except OSError as exc:
        raise loaded.error(f"cannot read {path}: {exc.strerror or exc}", where) from None
    if not header:
        raise loaded.error(f"{path} is empty; it needs a header line of column names", where)
    header = [h.strip() for h in header]
    if not rows:
        raise loaded.error(f"{path} has a header but no data rows", where)
    return header, rows, lines


def _column(loaded: LoadedConfig, name: str, header: list[str], path: Path, where: tuple) -> int:
    if name not in header:
        raise loaded.error(
            f"column '{name}' is not in {path.name}"
            + did_you_mean(name, header)
            + f"; it has: {', '.join(header)}",
            where,
        )
    return header.index(name)


def _numbers(
    cells: np.ndarray, names: list[str], lines: list[int], path: Path, dtype: type
) -> np.ndarray:
    try:
        return cells.astype(dtype)
    except ValueError:
        for r, c in np.ndindex(cells.shape):
            try:
                dtype(cells[r, c])
            except ValueError:
                shown = repr(str(cells[r, c])) if cells[r, c].strip() else "an empty cell"
                raise ConfigError(
                    f"{path.name} line {lines[r]}, column '{names[c]}': {shown} is not a number; "
                    "every x and label cell must be numeric (encode categories as numbers)"
                ) from None
        raise


def load_split(loaded: LoadedConfig, split: Split, name: str) -> ArraySplit:
    """One split's CSV file as (x, y) arrays."""
    where = ("data", name)
    train = loaded.config.data.train
    label = split.label or train.label
    columns = split.columns if split.columns is not None else train.columns
    path = loaded.resolve_path(split.path)
    if not path.is_file():
        raise loaded.error(f"file not found: {path}", (*where, "path"))
    header, rows, lines = _rows(loaded, path, (*where, "path"))
    label_at = _column(loaded, label, header, path, (*where, "label"))
    if columns is None:
        x_at = [i for i in range(len(header)) if i != label_at]
    else:
        at = (*where, "columns") if split.columns is not None else ("data", "train", "columns")
        if label in columns:
            raise loaded.error(f"'{label}' is the label; it cannot be an x column too", at)
        x_at = [_column(loaded, c, header, path, at) for c in columns]
    if not x_at:
        raise loaded.error(f"{path.name} has no column besides the label '{label}'", where)
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise loaded.error(
                f"{path.name} line {line} has {len(row)} fields, the header has {len(header)}",
                (*where, "path"),
            )
    table = np.array(rows, dtype=str)
    names = [header[i] for i in x_at]
    try:
        x = _numbers(table[:, x_at], names, lines, path, np.float32)
        y_cells = table[:, [label_at]]
        try:
            y = y_cells.astype(np.int64)[:, 0]
        except ValueError:
            y = _numbers(y_cells, [label], lines, path, np.float32)[:, 0]
    except ConfigError as exc:
        raise loaded.error(exc.detail, (*where, "path")) from None
    return ArraySplit(x, y)
