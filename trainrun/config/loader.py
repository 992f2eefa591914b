"""Reading a config: safe YAML with line numbers, ``--set`` overrides, validation.

`load_config` is the one entry point. It returns a `LoadedConfig`: the typed
`RunConfig` plus what error messages need to point at the right line.
"""

from __future__ import annotations

import errno
import glob
import os
import random
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainrun import catalog
from trainrun.config.compose import BASE_KEY, Origin, compose
from trainrun.config.schema import RunConfig, known_keys, takes_only_lists
from trainrun.errors import ConfigError, did_you_mean

Key = str | int
KeyPath = tuple[Key, ...]


def format_path(path: Sequence[Key]) -> str:
    """('callbacks', 1, 'EarlyStopping') -> 'callbacks[1].EarlyStopping'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_path(text: str) -> KeyPath:
    """'callbacks[1].EarlyStopping' -> ('callbacks', 1, 'EarlyStopping'): format_path undone."""
    return tuple(
        int(index) if index else key for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text)
    )


@dataclass
class LoadedConfig:
    """A validated config and where each of its keys came from."""

    config: RunConfig
    file: str
    lines: dict[KeyPath, int] = field(default_factory=dict)
    # key path -> the command-line option that set it ("--set fit.epochs=5", "--name x")
    overrides: dict[KeyPath, str] = field(default_factory=dict)
    # key path -> file and line, where a value came from a base file (see config/compose.py)
    origins: dict[KeyPath, Origin] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return Path(self.config.base_dir or ".")

    def line_of(self, path: Sequence[Key]) -> int | None:
        """Line of the deepest key of `path` that the file has."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def where(self, path: Sequence[Key]) -> dict[str, Any]:
        """`file=` and `line=` of the deepest key of `path` a file gave, for ConfigError.locate.

        With base files that is the base file that gave it, not always `self.file`; a
        value set by an option is placed "in --set KEY=VALUE".
        """
        path = tuple(path)
        option = self.option_of(path)
        if option is not None:
            return {"file": option, "line": None}
        while path:
            if path in self.origins:
                origin = self.origins[path]
                return {"file": origin.file, "line": origin.line}
            path = path[:-1]
        return {"file": self.file, "line": None}

    def option_of(self, path: Sequence[Key]) -> str | None:
        """The command-line option that set `path` or a section above it, if one did."""
        path = tuple(path)
        for opath, option in reversed(self.overrides.items()):
            if path[: len(opath)] == opath:
                return option
        return None

    def error(self, message: str, path: Sequence[Key] = ()) -> ConfigError:
        """A ConfigError pointing at `path` in the file that gave it, or at the option that set it."""
        path = tuple(path)
        option = self.option_of(path)
        if option is not None:
            return ConfigError(f"{message} (from {option})", path=format_path(path) or None)
        return ConfigError(message, path=format_path(path) or None, **self.where(path))

    def locate(self, exc: ConfigError) -> ConfigError:
        """Give an error raised with only a key path its file and line (or its option)."""
        if exc.file or not exc.path or "(from --" in exc.detail:
            return exc  # located already (an error from an option has no file by design)
        located = self.error(exc.detail, parse_path(exc.path))
        exc.detail = located.detail  # names the --set option, when one set the key
        return exc.locate(file=located.file, line=located.line)

    def resolve_path(self, value: str) -> Path:
        """A path from the config, relative to the config's own directory."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base_dir / p


# ---------------------------------------------------------------- YAML


class _SafeLineLoader(yaml.SafeLoader):
    """SafeLoader: no tags that build Python objects, ever.

    Also reads 1e-3 and 1.0e12 as floats (YAML 1.2), where plain PyYAML (YAML
    1.1) would hand a learning rate over as the string '1e-3'.
    """


_SafeLineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# Bounds on what a config may be: real ones are a few KiB, a dozen levels deep and
# a few hundred values. Past these a file is hostile or a mistake (a data file
# given as the config), and reading on would hang, exhaust memory or recurse
# past Python's stack.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 100
MAX_VALUES = 100_000


def _check_shape(text: str, *, file: str | None = None, option: str | None = None) -> None:
    """Refuse YAML nested deeper than MAX_DEPTH, or whose aliases expand past MAX_VALUES.

    Runs over the parser's events, which PyYAML produces without recursion, before
    anything composes the tree (recursively) or walks it with aliases expanded:
    nine levels of nine aliases ("billion laughs") are a few hundred bytes that
    expand to 3.4 billion values. Ordinary anchors (`<<: *defaults`) pass.
    """

    def refuse(message: str, mark: yaml.Mark | None) -> ConfigError:
        if option is not None:
            return ConfigError(f"{option}: {message}")
        return ConfigError(message, file=file, line=mark.line + 1 if mark else None)

    too_deep = (
        f"values nested more than {MAX_DEPTH} levels deep; a config needs a few levels: "
        "flatten the structure"
    )
    expanded: dict[str, tuple[int, int]] = {}  # anchor -> (values, depth) of what it names
    open_: list[tuple[str | None, int, list[int]]] = []  # (anchor, values before, [depth])
    values = 0

    def add(count: int, depth: int) -> None:
        nonlocal values
        values += count
        if open_:
            below = open_[-1][2]
            below[0] = max(below[0], depth + 1)

    for event in yaml.parse(text, Loader=_SafeLineLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise refuse(too_deep, event.start_mark)
            open_.append((event.anchor, values, [1]))
            values += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, before, (depth,) = open_.pop()
            count = values - before
            values = before
            if anchor:
                expanded[anchor] = (count, depth)
            add(count, depth)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                expanded[event.anchor] = (1, 0)
            add(1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in expanded:
                if any(anchor == event.anchor for anchor, _, _ in open_):
                    raise refuse(
                        f"alias *{event.anchor} is inside the value its anchor &{event.anchor} "
                        "names, so the value would contain itself forever: write it out",
                        event.start_mark,
                    )
                continue  # an undefined alias: the composer reports it with its line
            count, depth = expanded[event.anchor]
            if len(open_) + depth > MAX_DEPTH:
                raise refuse(too_deep, event.start_mark)
            add(count, depth)
            if values > MAX_VALUES:
                raise refuse(
                    f"alias *{event.anchor} makes the config expand to more than {MAX_VALUES} "
                    "values (an alias bomb); refer to anchors fewer times or write the values out",
                    event.start_mark,
                )
        if values > MAX_VALUES:
            raise refuse(f"the config has more than {MAX_VALUES} values", event.start_mark)


def _syntax_error(exc: yaml.YAMLError, file: str) -> ConfigError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = f" column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        return ConfigError(f"YAML syntax error{col}: {problem}", file=file, line=line)
    return ConfigError(f"YAML syntax error: {exc}", file=file)


def _record_lines(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], file: str) -> None:
    """Map each key path to its line; a key given twice in one mapping is an error.

    YAML loaders keep the last of two equal keys without a word, so a second
    `fit:` section would silently replace the first.
    """
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Key, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if isinstance(value_node, yaml.Node) and key_node.tag.endswith(":int"):
                key = int(key)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"key '{key}' appears twice (first at line {seen[key]}); YAML would keep "
                    "only the last one: merge the two into one",
                    path=format_path((*path, key)),
                    file=file,
                    line=line,
                )
            seen[key] = line
            lines[(*path, key)] = line
            _record_lines(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*path, i), lines, file)


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int, shown: str) -> ConfigError:
    if stat.S_ISDIR(mode):
        return ConfigError(f"{shown} is a directory; give a YAML config file")
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
    return ConfigError(f"{shown} is not a regular file ({kind}); give a YAML config file")


def _too_big(size: int, shown: str) -> ConfigError:
    return ConfigError(
        f"{shown} is {size / 1024**2:.1f} MiB; a config is a small YAML file "
        f"(at most {MAX_CONFIG_BYTES // 1024**2} MiB): give the config, not a data file"
    )


def read_text(file: str | Path) -> str:
    """A config file's text; anything but a small regular UTF-8 file is a ConfigError.

    The file is checked before it is opened (a FIFO would block the open, /dev/zero
    never ends) and opened without blocking, then read no further than the limit.
    """
    shown = str(file)
    try:
        mode = os.stat(file).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(mode, shown)
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"config file not found: {shown}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"{shown}: too many levels of symbolic links (a symlink loop); "
                "give the config file itself"
            ) from None
        raise ConfigError(f"cannot read {shown}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):  # replaced since the check above
            raise _not_regular(info.st_mode, shown)
        if info.st_size > MAX_CONFIG_BYTES:
            raise _too_big(info.st_size, shown)
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:  # grew since
        raise _too_big(len(raw), shown)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{shown} is not a text file; give a YAML config file") from None


def read_yaml(
    file: str | Path, *, allow_empty: bool = False
) -> tuple[dict[str, Any], dict[KeyPath, int]]:
    """Parse a YAML config safely; return the mapping and a key-path -> line map.

    `allow_empty` (for base files) reads an empty file as an empty mapping.
    """
    shown = str(file)
    text = read_text(file)
    loader = _SafeLineLoader(text)
    try:
        try:
            _check_shape(text, file=shown)
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise _syntax_error(exc, shown) from None
        if node is None and allow_empty:
            return {}, {}
        if node is None:
            raise ConfigError(
                "the config is empty; it needs at least a 'model' section", file=shown
            )
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(
                "the top level of a config must be a mapping of sections (model:, data:, fit:, ...)",
                file=shown,
                line=node.start_mark.line + 1,
            )
        lines: dict[KeyPath, int] = {}
        _record_lines(node, (), lines, shown)
        try:
            data = loader.construct_document(node)
        except yaml.constructor.ConstructorError as exc:
            mark = exc.problem_mark
            raise ConfigError(
                f"{exc.problem}; trainrun reads plain YAML only (no !!python tags)",
                file=shown,
                line=mark.line + 1 if mark else None,
            ) from None
    finally:
        loader.dispose()
    return data, lines


# ---------------------------------------------------------------- --set


def parse_override(text: str) -> tuple[KeyPath, Any]:
    """'callbacks.0.EarlyStopping.patience=5' -> (('callbacks', 0, 'EarlyStopping', 'patience'), 5)."""
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected KEY=VALUE, e.g. --set fit.epochs=5")
    key, _, raw = text.partition("=")
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text}: '{key}' is not a dotted key path like fit.epochs")
    path: KeyPath = tuple(int(p) if p.lstrip("-").isdigit() else p for p in key.split("."))
    try:
        _check_shape(raw, option=f"--set {text}")
        value = yaml.load(raw, Loader=_SafeLineLoader) if raw.strip() else None  # noqa: S506
    except yaml.YAMLError:
        value = raw
    return path, value


_OPTIMIZER = ("compile", "optimizer")


def _optimizer_classes() -> dict[str, str]:
    """Keras' optimizer aliases and class names -> class name ('rmsprop' -> 'RMSprop')."""
    names = [n for n in catalog.names("optimizer") if n[:1].isupper()]
    return {**{n.lower(): n for n in names}, **{n: n for n in names}}


def _optimizer_path(data: dict[str, Any], path: KeyPath, text: str) -> KeyPath:
    """`compile.optimizer.PARAM` -> `compile.optimizer.<Class>.PARAM`, as the YAML has it.

    The optimizer is written bare (`rmsprop`) or as one `{Class: {args}}` entry,
    so a parameter path may skip the class level; a bare name is turned into its
    mapping (`rmsprop` -> `{RMSprop: {}}`). A path that names the class keeps working.
    """
    if path[:2] != _OPTIMIZER or len(path) < 3 or not isinstance(path[2], str):
        return path
    if data.get("compile") is None:
        data["compile"] = {}
    section = data["compile"]
    if not isinstance(section, dict):
        return path  # the walk below reports it
    current = section.get("optimizer") or "rmsprop"
    given = path[2]
    classes = _optimizer_classes()
    if isinstance(current, dict) and len(current) == 1:
        ((name, args),) = current.items()
        if given == name:
            if args is None:
                current[name] = {}
            return path
        if given in classes and isinstance(name, str):
            raise _other_optimizer(text, name, given)
        if args is None:
            current[name] = {}
        return (*_OPTIMIZER, name, *path[2:])
    if not isinstance(current, str):
        return path  # not a component: the schema reports it
    name = classes.get(current, classes.get(current.lower(), current))
    if given in (current, name) or given.lower() == current.lower():
        section["optimizer"] = {given: {}}
        return path
    if given in classes:
        raise _other_optimizer(text, current, given)
    section["optimizer"] = {name: {}}
    return (*_OPTIMIZER, name, *path[2:])


def _other_optimizer(text: str, current: str, given: str) -> ConfigError:
    return ConfigError(
        f"--set {text}: compile.optimizer is '{current}', not {given}; to change the optimizer, "
        f"--set compile.optimizer={given} first, then its parameters as "
        "compile.optimizer.PARAM=VALUE"
    )


def apply_override(data: dict[str, Any], path: KeyPath, value: Any, text: str) -> KeyPath:
    """Set `path` in the raw config to `value`, creating mappings on the way.

    Returns the path that was set (a path into the optimizer gains its class level).
    """
    path = _optimizer_path(data, path, text)
    node: Any = data
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        here = format_path(path[:depth]) or "the top level"
        if isinstance(node, list):
            if not isinstance(key, int):
                raise ConfigError(f"--set {text}: {here} is a list; use an index like {here}.0")
            if not -len(node) <= key < len(node):
                has = (
                    f"{len(node)} item{'s' if len(node) != 1 else ''} (0..{len(node) - 1})"
                    if node
                    else "no items"
                )
                raise ConfigError(
                    f"--set {text}: index {key} is out of range; {here} has {has}; "
                    "--set changes items the YAML has, so add the item in the file"
                )
            if last:
                node[key] = value
                return path
            if (
                isinstance(node[key], str)
                and isinstance(path[depth + 1], str)
                and node[key] == path[depth + 1]
            ):
                node[key] = {node[key]: {}}  # bare 'EarlyStopping' -> {EarlyStopping: {}}
            node = node[key]
        elif isinstance(node, dict):
            if isinstance(key, int) and key not in node:
                key = str(key)
            if last:
                node[key] = value
                return path
            if node.get(key) is None:
                if isinstance(path[depth + 1], int) and takes_only_lists(path[: depth + 1]):
                    raise ConfigError(
                        f"--set {text}: the config has no {format_path(path[: depth + 1])} list "
                        f"to index; --set changes items the YAML has, so add the list in the file"
                    )
                node[key] = {}
            node = node[key]
        else:
            raise ConfigError(f"--set {text}: {here} is a single value ({node!r}), not a section")


# ---------------------------------------------------------------- callback paths

# Callback arguments that name a file, and those that name a directory.
CALLBACK_FILE_ARGS = ("filepath", "filename")
CALLBACK_DIR_ARGS = ("log_dir", "backup_dir", "directory")


def callback_paths(loaded: LoadedConfig) -> list[tuple[KeyPath, str, str]]:
    """(key path, argument, value) of every path argument a listed callback has."""
    out = []
    for i, item in enumerate(loaded.config.callbacks):
        if not isinstance(item, dict):
            continue
        ((name, args),) = item.items()
        for key in (*CALLBACK_FILE_ARGS, *CALLBACK_DIR_ARGS):
            value = (args or {}).get(key)
            if isinstance(value, str) and value:
                out.append((("callbacks", i, name, key), key, value))
    return out


def _outside_run_dir(value: str) -> str | None:
    """The absolute path `value` names, or None for a path inside the run directory."""
    expanded = os.path.expanduser(value)
    return expanded if os.path.isabs(expanded) else None


def _template_matches(path: str) -> list[str]:
    """Existing files a ModelCheckpoint template like ep{epoch:02d}.keras would write over."""
    parts = re.split(r"(\{[^{}]*\})", path)
    pattern = "".join("*" if p.startswith("{") else glob.escape(p) for p in parts)
    return sorted(glob.glob(pattern))


def check_callback_paths(loaded: LoadedConfig, *, existing: bool = False) -> None:
    """Refuse callback paths that would write outside the run or over a user's files.

    A relative path is placed inside the run directory, so one whose '..' leaves
    it is an error. An absolute path is the user's own choice; with `existing`
    (a new run, not a resume, which finds its own files there) it must not name
    a file that exists, a non-empty directory, or a file in a missing directory.
    Nothing is created here: every check runs before the first directory is made.
    """
    for path, key, value in callback_paths(loaded):
        absolute = _outside_run_dir(value)
        if absolute is None:
            norm = os.path.normpath(value)
            if norm == os.pardir or norm.startswith(os.pardir + os.sep):
                raise loaded.error(
                    f"'{value}' leaves the run directory; a relative {key} is placed inside "
                    "runs/<id>/: remove the '..', or give an absolute path",
                    path,
                )
        elif existing:
            problem = _absolute_path_problem(key, absolute)
            if problem:
                raise loaded.error(problem, path)


def _absolute_path_problem(key: str, path: str) -> str | None:
    keep = (
        "; trainrun writes nothing over what is outside the run directory: move it away, "
        "name another, or give a relative path (it goes inside runs/<id>/)"
    )
    if key in CALLBACK_DIR_ARGS:
        if os.path.lexists(path) and not os.path.isdir(path):
            return f"{path} is a file, and {key} names a directory" + keep
        if os.path.isdir(path) and any(os.scandir(path)):
            return f"{path} is not empty; this run's files would mix with what is there" + keep
        return None
    if "{" in path:
        found = _template_matches(path)
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            return f"{found[0]}{more} exists already and matches {path}" + keep
    elif os.path.isdir(path):
        return f"{path} is a directory, and {key} names a file" + keep
    elif os.path.lexists(path):
        return f"{path} exists already" + keep
    parent = os.path.dirname(path)
    if "{" not in parent and not os.path.isdir(parent):
        return (
            f"directory {parent} does not exist; trainrun creates no directories outside the "
            "run directory: create it, or give a relative path (it goes inside runs/<id>/)"
        )
    return None


# ---------------------------------------------------------------- validation


_TYPE_LABELS = {
    "str",
    "int",
    "float",
    "bool",
    "none",
    "list",
    "dict",
    "is-instance",
    "constrained-int",
    "constrained-float",
}


def _clean_loc(loc: tuple[Any, ...]) -> KeyPath:
    """Drop pydantic's union-branch labels ('str', 'dict[str,str]', ...) from a location."""
    return tuple(
        p
        for p in loc
        if not (
            isinstance(p, str)
            and (p in _TYPE_LABELS or "[" in p or p.startswith(("literal", "function-")))
        )
    )


def _pydantic_error(exc: ValidationError, loaded: LoadedConfig) -> ConfigError:
    errors = exc.errors()
    loc = _clean_loc(errors[0]["loc"])
    same = [e for e in errors if _clean_loc(e["loc"]) == loc]
    kind = errors[0]["type"]
    if kind == "extra_forbidden":
        parent, key = loc[:-1], loc[-1]
        known = known_keys(parent)
        where = format_path(parent) or "the top level"
        suggestion = did_you_mean(str(key), known)
        msg = f"unknown key '{key}'" + (
            suggestion or (f"; {where} takes: {', '.join(known)}" if known else "")
        )
        return loaded.error(msg, loc)
    if kind == "missing":
        return loaded.error(f"'{loc[-1]}' is required here", loc)
    messages: list[str] = []
    for e in same:
        m = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if m not in messages:
            messages.append(m)
    msg = "; or ".join(messages)
    received = errors[0].get("input")
    if not any(e["type"] == "value_error" for e in same) and not isinstance(received, dict | list):
        msg += f" (got {received!r})"
    return loaded.error(msg, loc)


def load_config(
    file: str | Path,
    overrides: Sequence[str] = (),
    *,
    name: str | None = None,
) -> LoadedConfig:
    """Read, override and validate a config file. Raises ConfigError."""
    shown = str(file)
    data, origins = compose(file)
    lines = {path: origin.line for path, origin in origins.items() if origin.line}
    loaded_overrides: dict[KeyPath, str] = {}
    for text in overrides:
        path, value = parse_override(text)
        if path[:1] == (BASE_KEY,):
            raise ConfigError(
                f"--set {text}: base files are named in the config file; add 'base: {value}' there"
            )
        path = apply_override(data, path, value, text)
        loaded_overrides[path] = f"--set {text}"
    if name is not None:
        data["name"] = name
        loaded_overrides[("name",)] = f"--name {name}"
    if data.get("base_dir") is None:
        data["base_dir"] = str(Path(file).resolve().parent)
    loaded = LoadedConfig(
        config=None,  # type: ignore[arg-type]
        file=shown,
        lines=lines,
        overrides=loaded_overrides,
        origins=origins,
    )
    try:
        loaded.config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _pydantic_error(exc, loaded) from None
    check_callback_paths(loaded)
    return loaded


def with_seed(loaded: LoadedConfig) -> LoadedConfig:
    """Pick a random seed if the config has none; it is then written to config.yaml."""
    if loaded.config.seed is None:
        loaded.config.seed = random.SystemRandom().randrange(2**31)
    return loaded


class _ConfigDumper(yaml.SafeDumper):
    """Block style, except short lists of plain values: shape: [28, 28, 1]."""


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    flow = all(not isinstance(i, dict | list) for i in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)


_ConfigDumper.add_representer(list, _represent_list)


def dump_config(loaded: LoadedConfig) -> str:
    """The resolved config as YAML: defaults filled, overrides applied."""
    data = loaded.config.model_dump(mode="json")
    return yaml.dump(
        data, Dumper=_ConfigDumper, sort_keys=False, default_flow_style=False, width=100
    )
