"""run.json as a typed record: what a run is (its status) and what it has done.

`RunRecord` reads any run.json tolerantly: a known key whose value is not of its
type (a hand edit, an older trainrun) reads as unset and keeps its raw value in
`invalid`; an unknown key is kept in `extra`. Writing puts both back as they
were, in the file's own key order, so rewriting a record never loses what it
held. `RunDir.write_record` is the one writer of run.json.

No TensorFlow, no Keras: `trainrun runs` and `show` read records instantly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A run's status. The first five are written to run.json; the others are only
    shown (by `trainrun runs` and `show`), never written."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    # shown only:
    KILLED = "killed"  # run.json says running, but no live process holds the run
    UNKNOWN = "unknown"  # run.json has no status trainrun knows
    BROKEN = "broken"  # run.json cannot be read
    NOT_A_RUN = "not a run"  # a directory without run.json

    @property
    def finished(self) -> bool:
        """Trained to its end (all epochs, or stopped early by a callback)."""
        return self in (Status.COMPLETED, Status.STOPPED_EARLY)


RECORDED = (
    Status.RUNNING,
    Status.COMPLETED,
    Status.STOPPED_EARLY,
    Status.INTERRUPTED,
    Status.FAILED,
)


class _Invalid(Exception):
    """A value that is not of its field's type."""


# ---------------------------------------------------------------- value checks


def real(value: Any) -> float | None:
    """A real number (int or float, not a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def finite(value: Any) -> float | None:
    """A real, finite number, or None (for a missing field, a string, NaN, Infinity)."""
    number = real(value)
    return number if number is not None and math.isfinite(number) else None


def count(value: Any) -> int | None:
    """A whole non-negative count (epochs), or None."""
    number = finite(value)
    if number is None or number < 0 or number != int(number):
        return None
    return int(number)


def _checked(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if value is None:
            return None
        out = check(value)
        if out is None:
            raise _Invalid
        return out

    return parse


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _pid(value: Any) -> int | None:
    pid = _integer(value)
    return pid if pid is not None and pid > 0 else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _mapping(value: Any) -> dict[str, Any]:
    if value is None or not isinstance(value, dict):
        raise _Invalid
    return value


def _records(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _Invalid
    return value


def _status(value: Any) -> Status:
    if isinstance(value, str) and value in RECORDED:
        return Status(value)
    raise _Invalid


# ---------------------------------------------------------------- the record


@dataclass(frozen=True)
class Best:
    """The best epoch training saw: run.json's `best`."""

    monitor: str | None = None
    value: float | None = None  # may be inf or NaN (a diverged loss)
    epoch: int | None = None  # counted from 1
    mode: str | None = None  # min | max (older records have none)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: Any) -> Best:
        if isinstance(value, Best):
            return value
        if not isinstance(value, dict):
            raise _Invalid
        mode = value.get("mode")
        return cls(
            monitor=_text(value.get("monitor")),
            value=real(value.get("value")),
            epoch=count(value.get("epoch")),
            mode=mode if mode in ("min", "max") else None,
            raw=dict(value),
        )

    def to_json(self) -> dict[str, Any]:
        if self.raw:
            return dict(self.raw)
        keys = ("monitor", "value", "epoch", "mode")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


def _best(value: Any) -> Best | None:
    return None if value is None else Best.from_json(value)


@dataclass
class RunRecord:
    """A run's run.json. Fields are None (or empty) when the file does not say."""

    id: str | None = None
    status: Status = Status.UNKNOWN
    error: str | None = None
    created: str | None = None  # ISO times
    finished: str | None = None
    updated: str | None = None  # the last epoch's end
    epochs_done: int | None = None
    epochs: int | None = None  # the target
    best: Best | None = None
    seed: int | None = None
    backend: str | None = None  # the Keras backend it trained on
    devices: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    config_source: str | None = None
    command: str | None = None
    pid: int | None = None  # the process training it, while it trains
    resumes: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float | None = None
    state_saved: bool | None = None  # a state was saved (so a missing state/ loses work)
    final_weights_epoch: int | None = None  # the epoch model.keras' weights are from
    final_weights_source: str | None = None  # why: "last epoch", EarlyStopping restore
    state_saves: int | None = None
    state_seconds: float | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    # What made the run (versions, machine, config hash, data files, user code, git):
    # see trainrun/runs/provenance.py; empty for runs older than it.
    provenance: dict[str, Any] = field(default_factory=dict)
    tracking: dict[str, Any] = field(default_factory=dict)  # {mlflow: {run_id, uri, ...}}

    # Unknown keys, and known keys whose value is not of their type, as read.
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    invalid: dict[str, Any] = field(default_factory=dict, repr=False)
    # The file's keys in its order, then keys set since: written back in this order.
    order: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def new(cls, **fields: Any) -> RunRecord:
        """A record for a new run, its keys in the order given."""
        return cls().update(**fields)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunRecord:
        """A record from run.json's object; never raises for a value inside it."""
        record = cls()
        for key, value in obj.items():
            record.order.append(key)
            parse = _PARSERS.get(key)
            if parse is None:
                record.extra[key] = value
                continue
            try:
                setattr(record, key, parse(value))
            except _Invalid:
                record.invalid[key] = value
        return record

    def update(self, **changes: Any) -> RunRecord:
        """Set fields; a value not of its field's type is a bug (TypeError)."""
        for key, value in changes.items():
            parse = _PARSERS.get(key)
            if parse is None:
                raise TypeError(f"run.json has no field {key!r}")
            try:
                setattr(self, key, parse(value))
            except _Invalid:
                raise TypeError(f"run.json field {key}: {value!r} is not of its type") from None
            self.invalid.pop(key, None)
            if key not in self.order:
                self.order.append(key)
        return self

    def to_json(self) -> dict[str, Any]:
        """The object run.json holds: the keys read, in their order, then those set."""
        out: dict[str, Any] = {}
        for key in self.order:
            if key in self.invalid:
                out[key] = self.invalid[key]
            elif key in self.extra:
                out[key] = self.extra[key]
            else:
                out[key] = _dump(getattr(self, key))
        return out

    def raw(self, key: str) -> Any:
        """The value run.json holds for `key`, as it is written there (None if absent)."""
        if key not in self.order:
            return None
        if key in self.invalid:
            return self.invalid[key]
        if key in self.extra:
            return self.extra[key]
        return _dump(getattr(self, key))

    @property
    def status_text(self) -> str:
        """The status as run.json writes it, for a note about an unknown one."""
        raw = self.invalid.get("status", self.status)
        return raw if isinstance(raw, str) and raw else Status.UNKNOWN


def _dump(value: Any) -> Any:
    if isinstance(value, Status):
        return value.value
    if isinstance(value, Best):
        return value.to_json()
    return value


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "id": _checked(_name),
    "status": _status,
    "error": _checked(_text),
    "created": _checked(_text),
    "finished": _checked(_text),
    "updated": _checked(_text),
    "epochs_done": _checked(count),
    "epochs": _checked(count),
    "best": _best,
    "seed": _checked(_integer),
    "backend": _checked(_text),
    "devices": _mapping,
    "versions": _mapping,
    "config_source": _checked(_text),
    "command": _checked(_text),
    "pid": _checked(_pid),
    "resumes": _records,
    "train_seconds": _checked(finite),
    "state_saved": _checked(_flag),
    "final_weights_epoch": _checked(count),
    "final_weights_source": _checked(_text),
    "state_saves": _checked(count),
    "state_seconds": _checked(finite),
    "timing": _mapping,
    "provenance": _mapping,
    "tracking": _mapping,
}
