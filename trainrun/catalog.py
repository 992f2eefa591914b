"""What Keras offers, read from its installed source without importing it.

Importing Keras imports TensorFlow (seconds). Config errors, `trainrun
callbacks` and `--help` must stay fast, so this module reads Keras' public API
files (``keras/callbacks/__init__.py`` ...) and the class definitions they point
at with `ast`: names, ``__init__`` parameters, defaults and docstrings, exactly
as installed. If Keras' layout ever changes so that this finds nothing, callers
fall back to the live registries in `trainrun.registry`.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

# Public API package (relative to keras/) for each kind of component.
API_PACKAGES = {
    "layer": "layers",
    "optimizer": "optimizers",
    "schedule": "optimizers/schedules",
    "loss": "losses",
    "metric": "metrics",
    "callback": "callbacks",
    "activation": "activations",
    "initializer": "initializers",
    "regularizer": "regularizers",
    "constraint": "constraints",
    "application": "applications",
}

# Names an API package exports that are not things a config names: its functions
# and the abstract base classes.
_NOT_CONFIG_NAMES = {
    "get", "serialize", "deserialize", "Initializer", "Regularizer", "Constraint",
}  # fmt: skip

# Callbacks that the Keras API exports but that are not things a config lists.
_NOT_CONFIG_CALLBACKS = {"Callback", "CallbackList", "History", "ProgbarLogger"}


@dataclass(frozen=True)
class Param:
    name: str
    default: str | None  # source text of the default; None when required
    required: bool


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[Param, ...] = ()
    var_kwargs: bool = False
    doc: str = ""
    module: str = ""
    extra: tuple[str, ...] = field(default=())

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    def render(self) -> str:
        parts = [p.name if p.required else f"{p.name}={p.default}" for p in self.params]
        if self.var_kwargs:
            parts.append("**kwargs")
        return f"{self.name}({', '.join(parts)})"


@functools.cache
def keras_root() -> Path | None:
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent


@functools.cache
def _origins(package: str) -> dict[str, tuple[str, str]]:
    """Public name -> (source module, name there) of an API package.

    Aliases keep the name they alias: ``MaxPool2D`` -> ('keras.src.layers...', 'MaxPooling2D').
    """
    root = keras_root()
    if root is None:
        return {}
    init = root / package / "__init__.py"
    try:
        tree = ast.parse(init.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    out: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras.src"):
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def _exports(package: str) -> dict[str, str]:
    """Public name -> source module ('keras.src.callbacks.csv_logger') of an API package."""
    return {name: module for name, (module, _) in _origins(package).items()}


def names(kind: str) -> list[str]:
    """Every public Keras name of a kind ('callback', 'layer', ...)."""
    found = _exports(API_PACKAGES[kind])
    if kind == "callback":
        return sorted(n for n in found if n not in _NOT_CONFIG_CALLBACKS)
    if kind == "activation":
        return sorted(n for n in found if n not in _NOT_CONFIG_NAMES)
    if kind in ("initializer", "regularizer", "constraint"):
        # What keras.<kind>s.get resolves: the exports, snake_case class names, aliases.
        public = [n for n in found if n not in _NOT_CONFIG_NAMES]
        origins = _origins(API_PACKAGES[kind])
        snake = [_snake_case(n) for n in public if n[:1].isupper() and origins[n][1] == n]
        aliases = [a for a in _registry_aliases(kind) if a in found or a.islower()]
        return sorted({*public, *snake, *aliases})
    return sorted(found)


def _module_file(module: str) -> Path | None:
    root = keras_root()
    if root is None:
        return None
    rel = Path(*module.split(".")[1:])  # drop leading 'keras'
    for candidate in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@functools.cache
def _parse(module: str) -> ast.Module | None:
    path = _module_file(module)
    if path is None:
        return None
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None


def _params_of(fn: ast.FunctionDef) -> tuple[list[Param], bool]:
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(
        args.defaults
    )
    params = [
        Param(a.arg, None if d is None else ast.unparse(d), d is None)
        for a, d in zip(positional, defaults, strict=True)
        if a.arg not in ("self", "cls")
    ]
    for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        params.append(Param(a.arg, None if d is None else ast.unparse(d), d is None))
    return params, args.kwarg is not None


_Def = ast.ClassDef | ast.FunctionDef


def _find_def(module: str, name: str, depth: int = 0) -> tuple[_Def, str] | None:
    """The class or function `name` of `module`, following `from keras.src... import`."""
    tree = _parse(module)
    if tree is None or depth > 5:
        return None
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name == name:
            return node, module
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras"):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _find_def(node.module, alias.name, depth + 1)
    return None


def _init_of(node: ast.ClassDef, module: str, depth: int = 0) -> ast.FunctionDef | None:
    """A class's ``__init__``, or the one it inherits from a base Keras' source defines."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return item
    for base in node.bases:
        name = ast.unparse(base).rsplit(".", 1)[-1]
        found = _find_def(module, name) if depth < 10 else None
        if found and isinstance(found[0], ast.ClassDef):
            return _init_of(found[0], found[1], depth + 1)
    return None


@functools.cache
def signature(kind: str, name: str) -> Signature | None:
    """The ``__init__`` signature (a function's own, for applications and ``Input``) and
    first docstring line of a public Keras name; an alias has its class's signature."""
    origin = _origins(API_PACKAGES[kind]).get(name)
    found = _find_def(*origin) if origin else None
    if found is None:
        return None
    node, module = found
    doc = (ast.get_docstring(node) or "").strip().split("\n")[0]
    if isinstance(node, ast.FunctionDef):
        params, var_kwargs = _params_of(node)
        return Signature(name, tuple(params), var_kwargs, doc, module)
    init = _init_of(node, module)
    if init is not None:
        params, var_kwargs = _params_of(init)
        return Signature(name, tuple(params), var_kwargs, doc, module)
    # No __init__ here or in a base we can read: inherits Callback's (no parameters)
    # or one we cannot see; report unknown parameters as accepted.
    bases = [ast.unparse(b) for b in node.bases]
    return Signature(name, (), bases != ["Callback"], doc, module)


def required_params(kind: str, name: str) -> list[str] | None:
    """The parameters a Keras name cannot be built without; None when it is unknown."""
    sig = signature(kind, name)
    return None if sig is None else [p.name for p in sig.params if p.required]


def first_param(kind: str, name: str) -> str | None:
    """The parameter a lone value fills (``Dense: 10``): the first required one, else the
    first one, as in Python's ``Dense(10)``; None when there is none."""
    sig = signature(kind, name)
    if sig is None or not sig.params:
        return None
    required = [p.name for p in sig.params if p.required]
    return required[0] if required else sig.params[0].name


def _class_node(kind: str, name: str) -> ast.ClassDef | None:
    origin = _origins(API_PACKAGES[kind]).get(name)
    found = _find_def(*origin) if origin else None
    return found[0] if found and isinstance(found[0], ast.ClassDef) else None


_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ABBREVIATIONS = ("i.e.", "e.g.", "etc.", "vs.", "approx.")
SHORT = 100  # characters of a parameter's one-line description


def _args_section(doc: str) -> dict[str, str]:
    """'name: text' entries of a Google-style docstring's ``Args:`` section, joined."""
    lines = doc.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:")), None
    )
    if start is None:
        return {}
    section = lines[start].index(lines[start].strip())
    entries: dict[str, list[str]] = {}
    indent: int | None = None
    current: list[str] | None = None
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        here = len(line) - len(line.lstrip())
        if here <= section:
            break  # the next section (Example:, Returns: ...)
        if indent is None:
            indent = here
        match = _ARG.match(line.strip()) if here == indent else None
        if match:
            current = entries.setdefault(match.group(1).lstrip("*"), [])
            current.append(match.group(2))
        elif current is not None and here > indent:
            current.append(line.strip())
        elif here < indent:
            break
    return {k: " ".join(v) for k, v in entries.items()}


def short_line(text: str, limit: int = SHORT) -> str:
    """The first sentence of a docstring entry, plain (no backticks), at most `limit` chars."""
    text = re.sub(r"\s+", " ", text.replace("`", "")).strip()
    first = ""
    for piece in _SENTENCE_END.split(text):
        first = f"{first} {piece}" if first else piece
        # "Float." alone names a type; the sentence after it says what the value is.
        if not first.endswith(_ABBREVIATIONS) and len(first.split()) > 2:
            break
    text = first
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


@functools.cache
def param_docs(kind: str, name: str) -> dict[str, str]:
    """One short line per parameter, from the ``Args:`` section of the class's docstring.

    Falls back to ``__init__``'s docstring where the class has none; a parameter
    the docstring does not describe is left out.
    """
    node = _class_node(kind, name)
    if node is None:
        return {}
    docs = _args_section(ast.get_docstring(node) or "")
    init = next(
        (i for i in node.body if isinstance(i, ast.FunctionDef) and i.name == "__init__"), None
    )
    if init is not None:
        docs = {**_args_section(ast.get_docstring(init) or ""), **docs}
    return {k: short_line(v) for k, v in docs.items() if v.strip()}


# Strings `model.compile` itself resolves against the model's outputs and labels.
COMPILE_ALIASES = {"loss": ("crossentropy", "ce"), "metric": ("accuracy", "acc")}
_NOT_CONFIG_OBJECTS = {"deserialize", "serialize", "get", "Loss", "Metric", "Reduction"}


def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case, which names metrics' string aliases."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@functools.cache
def _registry_aliases(kind: str) -> list[str]:
    """String keys of the alias dicts in keras/src/<kind>s/__init__.py ('mse', 'bce', ...)."""
    tree = _parse(f"keras.src.{API_PACKAGES[kind]}")
    if tree is None:
        return []
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "update"
            and ast.unparse(node.func.value) == "ALL_OBJECTS_DICT"
        ):
            for arg in node.args:
                if isinstance(arg, ast.Dict):
                    found += [k.value for k in arg.keys if isinstance(k, ast.Constant)]
    return found


@functools.cache
def loss_or_metric_names(kind: str) -> tuple[str, ...]:
    """Every string a config can name as a loss or metric: classes, functions, aliases.

    Empty when Keras' layout is not the one this reads; callers then leave the
    check to the live registry.
    """
    public = [n for n in names(kind) if n not in _NOT_CONFIG_OBJECTS]
    if not public:
        return ()
    known = public + _registry_aliases(kind) + list(COMPILE_ALIASES[kind])
    if kind == "metric":
        known += [_snake_case(n) for n in public if n[:1].isupper()]
    return tuple(sorted(set(known)))
