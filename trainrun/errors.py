"""trainrun's exceptions.

Core code raises these and never prints or exits; `trainrun.cli` catches them
once and maps them to exit codes::

    TrainrunError                 exit 2 unless said otherwise
    ├── ConfigError               a bad value in a config: file, key path, line
    │   └── UnknownNameError      a name no registry knows, with suggestions
    ├── DataError                 missing files, keys, shapes that do not fit
    ├── RunDirError               a path that is not a run directory, a locked run
    └── RunError                  training failed at run time (exit 1)

Anything else that escapes is a bug in trainrun and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TrainrunError(Exception):
    """Base of every error trainrun reports to a user as one message."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(TrainrunError):
    """A config value is wrong. Knows where: the file, the key path and the line."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.detail = message
        self.path = path
        self.file = file
        self.line = line
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(f"{self.path}")
        if self.file:
            loc = f"in {self.file}"
            if self.line:
                loc += f" line {self.line}"
            where.append(loc)
        prefix = " ".join(where)
        return f"{prefix}: {self.detail}" if prefix else self.detail

    def locate(
        self, *, path: str | None = None, file: str | None = None, line: int | None = None
    ) -> ConfigError:
        """Fill in location fields that are still unknown, and re-render.

        Called by `LoadedConfig.locate` only: code that finds a mistake raises with
        the key path, and the entry point that ran it (`precheck`, `Trainer.prepare`)
        has the config to look up the file and line in.
        """
        self.path = self.path or path
        self.file = self.file or file
        self.line = self.line or line
        self.message = self._render()
        self.args = (self.message,)
        return self


class UnknownNameError(ConfigError):
    """A layer, optimizer, loss, metric, schedule or callback name nobody registered."""

    def __init__(
        self,
        kind: str,
        name: str,
        known: Iterable[str],
        *,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        message = f"unknown {kind} '{name}'"
        message += did_you_mean(name, known, hint=hint)
        super().__init__(message, path=path)


class DataError(TrainrunError):
    """Data cannot be loaded or does not fit the model."""


class RunDirError(TrainrunError):
    """A run directory is missing, foreign, broken or in use."""


class RunError(TrainrunError):
    """Training failed at run time: NaN, out of memory, a user callback raising."""

    exit_code = 1


def did_you_mean(name: str, known: Iterable[str], *, hint: str | None = None) -> str:
    """'; did you mean 'x'?' from close matches (case-insensitive), or a hint."""

    # Names that differ only in case and underscores ('accuracy' the alias and
    # 'Accuracy' the class mean different things) are offered once, written like `name`.
    def norm(text: str) -> str:
        return text.lower().replace("_", "")

    lowered: dict[str, str] = {}
    for k in known:
        if norm(k) not in lowered or k.islower() == name.islower():
            lowered[norm(k)] = k
    matches = difflib.get_close_matches(norm(name), list(lowered), n=3, cutoff=0.6)
    if matches:
        names = " or ".join(f"'{lowered[m]}'" for m in matches)
        return f"; did you mean {names}?"
    if hint:
        return f"; {hint}"
    return ""
