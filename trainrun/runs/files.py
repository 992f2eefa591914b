"""Writing a run's files: atomic writes (a kill at any instant leaves the old file or
the new one), and naming the file a failed write was writing (a full disk included)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write to a temp file beside `path`, fsync, rename over it, fsync the dir."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")


# ---------------------------------------------------------------- failed writes

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# TensorFlow's own file writes (TensorBoard events) report a full disk in their text.
NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded")


def no_space(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from, is a full disk (or quota)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return True
        if any(text in str(exc) for text in NO_SPACE_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def written_file(exc: BaseException) -> str | None:
    """The file a failed write was writing, as `writing` recorded it (or the OS named it)."""
    return getattr(exc, "trainrun_file", None) or getattr(exc, "filename", None)


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Name `path` on an error raised while writing it: a failed write() names no file,
    and a failed temp file would be named by its temp name. The innermost name wins."""
    try:
        yield
    except Exception as exc:
        if getattr(exc, "trainrun_file", None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                exc.trainrun_file = str(path)  # type: ignore[attr-defined]
        raise
