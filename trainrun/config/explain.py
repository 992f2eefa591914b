"""`trainrun validate --explain`: each resolved value and where it came from.

A value comes from a file and line (the config, or one of its `base:` files),
from a command-line option (`--set fit.epochs=5`, `--name x`), or is trainrun's
default. Reads the config only: no TensorFlow.
"""

from __future__ import annotations

from typing import Any

import yaml

from trainrun.config.loader import KeyPath, LoadedConfig, _ConfigDumper, format_path

DEFAULT = "default"


def _leaves(data: Any, path: KeyPath = ()) -> dict[KeyPath, Any]:
    """Leaves of a nested value; a list of plain values (a shape) is one leaf."""
    if isinstance(data, dict) and data:
        items = data.items()
    elif isinstance(data, list) and any(isinstance(item, dict | list) for item in data):
        items = enumerate(data)
    else:
        return {path: data}
    out: dict[KeyPath, Any] = {}
    for key, value in items:
        out.update(_leaves(value, (*path, key)))
    return out


def origin_of(loaded: LoadedConfig, path: KeyPath, given: set[KeyPath]) -> str:
    """'file:line', the option, or 'default' for the value at `path`."""
    option = loaded.option_of(path)
    if option is not None:
        return option
    if not any(path[:i] in given for i in range(1, len(path) + 1)):
        return DEFAULT if path != ("base_dir",) else "default: the config file's folder"
    # the deepest key a file wrote (a normalised value, `Dense: 1`, has no deeper key)
    where = loaded.where(path)
    return f"{where['file']}:{where['line']}" if where["line"] else where["file"]


def explain(loaded: LoadedConfig) -> list[tuple[str, Any, str]]:
    """(dotted key, value, origin) for every value set, and every default that is not null."""
    given = set(_leaves(loaded.config.model_dump(mode="json", exclude_unset=True)))
    if ("base_dir",) not in loaded.origins and loaded.option_of(("base_dir",)) is None:
        given.discard(("base_dir",))  # filled in by load_config
    rows = []
    for path, value in _leaves(loaded.config.model_dump(mode="json")).items():
        origin = origin_of(loaded, path, given)
        if origin == DEFAULT and (value is None or value == {}):
            continue
        rows.append((format_path(path), value, origin))
    return rows


def _flow(value: Any) -> str:
    text = yaml.dump(value, Dumper=_ConfigDumper, default_flow_style=True, width=10**6)
    return text.strip().removesuffix("...").strip()


def render(loaded: LoadedConfig) -> str:
    """One `key: value   # origin` line per value, origins aligned."""
    rows = [(f"{key}: {_flow(value)}", origin) for key, value, origin in explain(loaded)]
    width = min(max((len(text) for text, _ in rows), default=0), 60)
    return "".join(f"{text.ljust(width)}  # {origin}\n" for text, origin in rows)
