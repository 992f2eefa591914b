"""Config composition: `base:` files deep-merged under the file that names them.

A config may start from other configs::

    base: common.yaml            # or a list: [common.yaml, long.yaml]

Each base is read (with its own bases, recursively), the bases are merged left
to right, and the including file is merged over them; `--set` comes last. Paths
in `base:` are relative to the folder of the file that names them.

How values merge:

- mappings merge key by key, recursively; any other value (a number, a string,
  a list, null) from a later file replaces the earlier one whole;
- `callbacks` merge by component name: an entry whose name a base lists changes
  that entry's arguments in place (deep-merged), a new name is appended, and
  `~Name` removes every entry of that name the bases list. `callbacks: []` removes
  them all.

Every value keeps the file and line it came from (`Origin`), so an error in a
value from a base points at the base file's line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainrun.errors import ConfigError

Key = str | int
KeyPath = tuple[Key, ...]

BASE_KEY = "base"
DROP = "~"
_CALLBACKS = "callbacks"


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a file and its line."""

    file: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


Origins = dict[KeyPath, Origin]


def compose(file: str | Path) -> tuple[dict[str, Any], Origins]:
    """A config file with its bases merged in, and the origin of every key path."""
    return _compose(str(file), chain=(), done={}, is_base=False)


def _compose(
    shown: str,
    chain: tuple[Path, ...],
    done: dict[Path, tuple[dict[str, Any], Origins]],
    *,
    is_base: bool,
) -> tuple[dict[str, Any], Origins]:
    """`shown` composed; `chain` the files that named it, `done` the bases composed so far.

    A base named again (base: [a.yaml, b.yaml], both based on common.yaml) is not
    read again: files that each name the next twice would otherwise be read 2**depth
    times. Merging never changes its inputs, so the result can be shared.
    """
    from trainrun.config.loader import format_path, read_yaml

    data, lines = read_yaml(shown, allow_empty=is_base)
    origins = {path: Origin(shown, line) for path, line in lines.items()}
    here = (*chain, _real(Path(shown)))
    merged: dict[str, Any] = {}
    merged_origins: Origins = {}
    for path, name in _base_entries(data, origins, shown):
        where = origins.get(path) or origins.get((BASE_KEY,))
        line = where.line if where else None
        base = Path(os.path.expanduser(name))
        if not base.is_absolute():
            base = _tidy(Path(shown).parent / base)
        real = _real(base)
        if real in here:
            cycle = [*here[here.index(real) :], real]
            raise ConfigError(
                f"base cycle: {' -> '.join(p.name for p in cycle)}; a config cannot be its own "
                "base, directly or through other files: remove one of these base: entries",
                path=format_path(path),
                file=shown,
                line=line,
            )
        if not os.path.lexists(base):  # a broken link or a loop: read_text says which
            raise ConfigError(
                f"base file not found: {base} (a base: path is relative to the folder of the "
                "file that names it): fix the path or create the file",
                path=format_path(path),
                file=shown,
                line=line,
            )
        try:
            if real not in done:
                done[real] = _compose(str(base), here, done, is_base=True)
            base_data, base_origins = done[real]
        except ConfigError as exc:
            if exc.file is None:  # the file could not be read at all: say which base: named it
                raise exc.locate(path=format_path(path), file=shown, line=line) from None
            raise
        merged, merged_origins = _merge(merged, merged_origins, base_data, base_origins, ())
    merged, merged_origins = _merge(merged, merged_origins, data, origins, ())
    merged_origins.setdefault((), Origin(shown, None))
    _refuse_leftover_drops(merged, merged_origins, shown)
    return merged, merged_origins


def _real(path: Path) -> Path:
    """The file `path` names, links followed; a link loop is left for read_text to report
    (Path.resolve raises RuntimeError on one)."""
    return Path(os.path.realpath(path))


def _tidy(path: Path) -> Path:
    """exp/../shared/common.yaml -> shared/common.yaml, unless a symlink makes them differ."""
    tidy = Path(os.path.normpath(path))
    return tidy if _real(tidy) == _real(path) else path


def _base_entries(data: dict[str, Any], origins: Origins, shown: str) -> list[tuple[KeyPath, str]]:
    """Take `base:` out of `data`: its entries as (key path, file name)."""
    from trainrun.config.loader import format_path

    if BASE_KEY not in data:
        return []
    value = data.pop(BASE_KEY)
    entries = (
        [((BASE_KEY, i), item) for i, item in enumerate(value)]
        if isinstance(value, list)
        else [((BASE_KEY,), value)]
    )
    for path, name in entries:
        if not isinstance(name, str) or not name.strip() or "\0" in name:
            where = origins.get(path) or origins.get((BASE_KEY,))
            raise ConfigError(
                "base must be a file name or a list of file names, e.g. base: common.yaml "
                f"or base: [common.yaml, long.yaml] (got {name!r})",
                path=format_path(path),
                file=shown,
                line=where.line if where else None,
            )
    return entries


# ---------------------------------------------------------------- merging


def _split(origins: Origins) -> dict[Key, Origins]:
    """The origins under each key, with paths relative to it (one pass: configs may be big)."""
    out: dict[Key, Origins] = {}
    for path, origin in origins.items():
        if path:
            out.setdefault(path[0], {})[path[1:]] = origin
    return out


def _under(key: Key, origins: Origins) -> Origins:
    return {(key, *path): origin for path, origin in origins.items()}


def _merge(
    base: Any, base_origins: Origins, over: Any, over_origins: Origins, path: KeyPath
) -> tuple[Any, Origins]:
    """`over` merged onto `base`; origin maps are relative to the value merged."""
    if isinstance(base, dict) and isinstance(over, dict):
        value = dict(base)
        origins = {p: o for p, o in base_origins.items() if p and p[0] not in over}
        if () in over_origins or () in base_origins:
            origins[()] = over_origins.get((), base_origins.get(()))
        below, over_below = _split(base_origins), _split(over_origins)
        for key, item in over.items():
            if key in base:
                value[key], sub = _merge(
                    base[key], below.get(key, {}), item, over_below.get(key, {}), (*path, key)
                )
            else:
                value[key], sub = item, over_below.get(key, {})
            origins.update(_under(key, sub))
        return value, origins
    if path == (_CALLBACKS,) and isinstance(base, list) and isinstance(over, list) and over:
        return _merge_callbacks(base, base_origins, over, over_origins)
    return over, dict(over_origins)


def _name_of(item: Any) -> str | None:
    """A component's name: 'Name' or {'Name': args}; None for anything else."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and len(item) == 1:
        (name,) = item
        return name if isinstance(name, str) else None
    return None


def _dropped(item: Any) -> str | None:
    """'~Name' -> 'Name'."""
    if isinstance(item, str) and item.startswith(DROP) and len(item) > 1:
        return item[len(DROP) :].strip()
    return None


def _merge_callbacks(
    base: list[Any], base_origins: Origins, over: list[Any], over_origins: Origins
) -> tuple[list[Any], Origins]:
    names = [_name_of(item) for item in base]
    drops = {}
    for j, item in enumerate(over):
        name = _dropped(item)
        if name is not None:
            if name not in names:
                raise _no_such_callback(name, names, j, over_origins)
            drops[name] = j
    kept = [i for i, name in enumerate(names) if name not in drops]
    changes: dict[int, int] = {}  # base index -> the over index that changes it
    new: list[int] = []
    for j, item in enumerate(over):
        if _dropped(item) is not None:
            continue
        name = _name_of(item)
        matches = [i for i in kept if names[i] == name] if name is not None else []
        if not matches:
            new.append(j)
            continue
        where = over_origins.get((j,))
        if len(matches) > 1:
            raise _callback_error(
                f"the base files list {name} {len(matches)} times, so this entry cannot say "
                f"which one it changes: drop them all with '- {DROP}{name}' and list here the "
                "ones you want",
                j,
                where,
            )
        if matches[0] in changes:
            raise _callback_error(
                f"{name} is listed twice here and once in the base files, so it is unclear which "
                f"entry changes the base's: put '- {DROP}{name}' first to replace it, then list "
                "both",
                j,
                where,
            )
        changes[matches[0]] = j
    value: list[Any] = []
    origins: Origins = {}
    below, over_below = _split(base_origins), _split(over_origins)
    for i in kept:
        item, sub = base[i], below.get(i, {})
        if i in changes:
            j = changes[i]
            item, sub = _merge_component(item, sub, over[j], over_below.get(j, {}))
        origins.update(_under(len(value), sub))
        value.append(item)
    for j in new:
        origins.update(_under(len(value), over_below.get(j, {})))
        value.append(over[j])
    if () in over_origins:
        origins[()] = over_origins[()]
    return value, origins


def _merge_component(
    base: Any, base_origins: Origins, over: Any, over_origins: Origins
) -> tuple[Any, Origins]:
    """{Name: args} onto {Name: args} (either may be the bare name): the args deep-merged."""
    name = _name_of(base)
    base_args = base[name] if isinstance(base, dict) else None
    over_args = over[name] if isinstance(over, dict) else None
    if over_args is None:  # bare `Name` or `Name: null`: nothing to change
        return base, base_origins
    if base_args is None:
        base_args, base_origins = {}, {p: o for p, o in base_origins.items() if len(p) < 2}
    args, args_origins = _merge(
        base_args,
        _split(base_origins).get(name, {}),
        over_args,
        _split(over_origins).get(name, {}),
        (),
    )
    origins = {(): over_origins.get((), base_origins.get(()))}
    origins.update(_under(name, args_origins))
    return {name: args}, {p: o for p, o in origins.items() if o is not None}


def _callback_error(message: str, index: int, where: Origin | None) -> ConfigError:
    return ConfigError(
        message,
        path=f"{_CALLBACKS}[{index}]",
        file=where.file if where else None,
        line=where.line if where else None,
    )


def _no_such_callback(
    name: str, names: Iterable[str | None], index: int, origins: Origins
) -> ConfigError:
    listed = ", ".join(n for n in names if n) or "none"
    return _callback_error(
        f"'{DROP}{name}' removes a callback the base files list, but they list no {name} "
        f"(they list: {listed}): remove this entry or fix the name",
        index,
        origins.get((index,)),
    )


def _refuse_leftover_drops(data: dict[str, Any], origins: Origins, shown: str) -> None:
    """A `~Name` that no base was there to drop from: `shown` has no base listing callbacks."""
    callbacks = data.get(_CALLBACKS)
    if not isinstance(callbacks, list):
        return
    for index, item in enumerate(callbacks):
        name = _dropped(item)
        if name is not None:
            raise _callback_error(
                f"'{DROP}{name}' removes a callback the base files list, but {shown} has no base "
                f"that lists callbacks: remove this entry, or name the base in base:",
                index,
                origins.get((_CALLBACKS, index)),
            )
