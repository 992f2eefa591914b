"""history.csv, as Keras' CSVLogger writes it: read, checked against a saved state, rebuilt.

`read_history` is the one reader of its rows (`show`, `evaluate --checkpoint best`);
`restore_csv` checks the file byte for byte against a saved state (resume).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from trainrun.errors import RunDirError
from trainrun.runs.files import write_atomic


def read_history(path: Path) -> tuple[list[str], list[dict[str, float]], list[str]]:
    """(columns, rows, problems) of history.csv; values as floats, epoch as an int (0-based).

    A cell that is not a number is left out of its row (shown as '-') and a row
    without a whole epoch number is left out; each is named in `problems` by its
    line, so a damaged file shows what it can and says what it could not.
    """
    if not path.is_file():
        return [], [], []
    problems: list[str] = []
    rows: list[dict[str, float]] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            for raw in reader:
                line = reader.line_num
                row: dict[str, float] = {}
                bad: list[str] = []
                for key, value in raw.items():
                    if key is None or value in (None, ""):
                        continue  # extra cells past the header, or an empty cell
                    try:
                        row[key] = float(value)
                    except ValueError:
                        bad.append(f"{key}={value!r}")
                epoch = row.get("epoch")
                if epoch is None or not math.isfinite(epoch) or epoch != int(epoch) or epoch < 0:
                    problems.append(
                        f"history.csv line {line}: epoch {raw.get('epoch')!r} is not an epoch "
                        "number; row left out"
                    )
                    continue
                if bad:
                    problems.append(
                        f"history.csv line {line}: {', '.join(bad)} not a number; shown as -"
                    )
                rows.append(row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunDirError(f"{path} is unreadable: {exc}") from None
    return columns, rows, problems


def restore_csv(path: Path, sep: str, history: list[dict[str, Any]]) -> str | None:
    """Make a CSVLogger file hold exactly the saved epochs' rows, as CSVLogger wrote them.

    Rows of epochs after the saved state (written, then lost to a kill) are
    dropped, keeping the file's own bytes. A file that is missing, truncated
    or lacks rows the state has is rebuilt from the state's history in
    CSVLogger's format (excel dialect: CRLF line ends); returns a note
    saying so.
    """
    raw = path.read_bytes() if path.is_file() else b""
    lines = raw.splitlines(keepends=True)
    epochs = _csv_epochs(lines, sep)
    n = len(history)
    if epochs is not None and epochs[:n] == list(range(n)):
        if len(epochs) > n:
            write_atomic(path, b"".join(lines[: n + 1]))
        return None
    if not history:
        if raw:
            write_atomic(path, b"")  # CSVLogger writes the header into an empty file
        return None
    write_atomic(path, _csv_text(history, sep))
    what = "missing or empty" if not raw else "damaged or short"
    return f"{path.name} was {what}; rebuilt its {n} row(s) from the saved state"


def _csv_epochs(lines: list[bytes], sep: str) -> list[int] | None:
    """The epoch of each row, or None when the file is not whole (no header, a cut line)."""
    if not lines or not all(line.endswith(b"\n") for line in lines):
        return None
    try:
        rows = list(csv.reader([line.decode("utf-8") for line in lines], delimiter=sep))
    except (UnicodeDecodeError, csv.Error):
        return None
    header = rows[0]
    if "epoch" not in header or any(len(r) != len(header) for r in rows[1:]):
        return None
    i = header.index("epoch")
    if not all(r[i].isdigit() for r in rows[1:]):
        return None
    return [int(r[i]) for r in rows[1:]]


def _csv_text(history: list[dict[str, Any]], sep: str) -> str:
    """`history` as Keras' CSVLogger writes it (the same keys, order, values and line ends)."""
    keys = sorted(k for k in history[0] if k != "epoch")
    if not any(k.startswith("val_") for k in keys):
        keys.extend(f"val_{k}" for k in list(keys))

    class Dialect(csv.excel):
        delimiter = sep

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["epoch", *keys], dialect=Dialect)
    writer.writeheader()
    for row in history:
        writer.writerow({"epoch": row["epoch"], **{k: row.get(k, "NA") for k in keys}})
    return buf.getvalue()
