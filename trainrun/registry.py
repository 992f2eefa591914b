"""Names in a config -> real objects: Keras' own registries, import paths, plugins.

Resolution order for a name:

1. ``module:attr`` -- an import path, with the config's directory first on
   ``sys.path`` (so ``my_callbacks.py`` beside the YAML just works);
2. a plugin registered under the ``trainrun.callbacks`` entry-point group
   (callbacks only);
3. Keras' own registry: class names and Keras' string aliases through
   ``keras.<kind>.get`` / ``deserialize``.

Keras is imported inside the functions that need it, never at module level.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from trainrun import catalog
from trainrun.errors import ConfigError, UnknownNameError, did_you_mean

ENTRY_POINT_GROUP = "trainrun.callbacks"


def split_component(value: Any) -> tuple[str, dict[str, Any]]:
    """'Name' or {'Name': {args}} (already normalised by the schema) -> (name, args)."""
    if isinstance(value, str):
        return value, {}
    ((name, args),) = value.items()
    return name, dict(args or {})


def is_import_path(name: str) -> bool:
    return ":" in name


@contextlib.contextmanager
def config_dir_on_path(base_dir: str | Path | None) -> Iterator[None]:
    """Put the config's directory first on sys.path while resolving import paths."""
    if not base_dir:
        yield
        return
    entry = str(base_dir)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def import_object(
    spec: str, *, base_dir: str | Path | None, what: str, path: str | None = None
) -> Any:
    """Import 'package.module:attr' (attr may be dotted), the config's directory first."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"'{spec}' is not an import path; write it as module:attr, e.g. my_callbacks:MyCallback",
            path=path,
        )
    with config_dir_on_path(base_dir):
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise ConfigError(
                    f"cannot import {what} '{spec}': no module named '{exc.name}' "
                    f"(looked beside the config in {base_dir} and on sys.path)",
                    path=path,
                ) from None
            raise ConfigError(f"cannot import {what} '{spec}': {exc}", path=path) from exc
        except Exception as exc:
            raise ConfigError(
                f"importing module '{module_name}' for {what} '{spec}' failed: "
                f"{type(exc).__name__}: {exc}",
                path=path,
            ) from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(
                f"module '{module_name}' has no attribute '{part}'" + did_you_mean(part, public),
                path=path,
            )
        obj = getattr(obj, part)
    return obj


# ---------------------------------------------------------------- unknown names

_APPLICATION_HINT = (
    "a keras.layers class, a keras.applications model, or an import path module:Class"
)
_ACTIVATION_HINT = (
    "a keras.activations name (relu, gelu ...) or a layer, e.g. {LeakyReLU: {negative_slope: 0.1}}"
)


def _known(kind: str) -> tuple[list[str], str | None]:
    """The names a config can give for `kind`, and what to say when none is close."""
    if kind == "callback":
        hint = "see `trainrun callbacks`, or give an import path module:Class"
        return callback_names(), hint
    if kind == "layer":
        return catalog.names("layer") + catalog.names("application"), _APPLICATION_HINT
    if kind == "optimizer":
        return [n for n in catalog.names("optimizer") if n[:1].isupper()], None
    if kind in ("loss", "metric"):
        return list(catalog.loss_or_metric_names(kind)), None
    if kind == "learning-rate schedule":
        return catalog.names("schedule"), None
    if kind == "activation":
        return catalog.names(kind), _ACTIVATION_HINT
    known = catalog.names(kind)  # initializer, regularizer, constraint
    return (
        known,
        f"known: {', '.join(n for n in known if n[:1].isupper())} (or their snake_case names)",
    )


def unknown_name(kind: str, name: str, *, path: str | None = None) -> UnknownNameError:
    """The one error for a name of `kind` that Keras and the plugins do not have.

    `precheck` raises it from Keras' source before TensorFlow is imported; the
    builders raise the same error when the live lookup fails (only what precheck
    could not see: Keras' layout unread, a run's config edited before resume).
    """
    known, hint = _known(kind)
    return UnknownNameError(kind, name, known, path=path, hint=hint)


# ---------------------------------------------------------------- callbacks


@functools.cache
def plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    """Callbacks that installed packages register under 'trainrun.callbacks'."""
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def callback_names() -> list[str]:
    """Every callback a config can name: Keras' own and plugins'."""
    return sorted(set(catalog.names("callback")) | set(plugin_entry_points()))


def resolve_callback_class(
    name: str, *, base_dir: str | Path | None, path: str | None = None
) -> type:
    import keras

    if is_import_path(name):
        cls = import_object(name, base_dir=base_dir, what="callback", path=path)
    elif name in plugin_entry_points():
        try:
            cls = plugin_entry_points()[name].load()
        except Exception as exc:
            raise ConfigError(
                f"loading plugin callback '{name}' failed: {type(exc).__name__}: {exc}", path=path
            ) from exc
    else:
        cls = getattr(keras.callbacks, name, None)
        if not (inspect.isclass(cls) and name in catalog.names("callback")) and name not in dir(
            keras.callbacks
        ):
            cls = None
        if cls is None:
            raise unknown_name("callback", name, path=path)
    if not (inspect.isclass(cls) and issubclass(cls, keras.callbacks.Callback)):
        raise ConfigError(
            f"'{name}' is not a keras.callbacks.Callback subclass (got {type(cls).__name__} "
            f"{getattr(cls, '__name__', cls)!r})",
            path=path,
        )
    return cls


# ---------------------------------------------------------------- parameters

# Keyword arguments every keras Layer accepts through **kwargs (Layer.__init__).
_LAYER_KWARGS = ("input_dim", "input_shape", "batch_input_shape", "batch_size", "weights")


def accepted_params(target: Any) -> tuple[list[str], bool]:
    """Parameter names `target` accepts, and whether it takes any keyword at all.

    Follows **kwargs up the class hierarchy, the way Keras classes pass them to
    their base class.
    """
    if not inspect.isclass(target):
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            return [], True
        names = [
            p.name
            for p in sig.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        return names, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    names: list[str] = []
    for klass in target.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            sig = inspect.signature(init)
        except (TypeError, ValueError):
            return names, True
        for p in sig.parameters.values():
            if (
                p.name != "self"
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                and p.name not in names
            ):
                names.append(p.name)
        if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return names, False
        if klass.__name__ == "Layer" and klass.__module__.startswith("keras"):
            return names + [k for k in _LAYER_KWARGS if k not in names], False
        if klass.__name__ == "BaseOptimizer" and klass.__module__.startswith("keras"):
            # Its **kwargs only takes the removed `decay`; anything else is refused.
            return names, False
    return names, True


def check_params(target: Any, args: dict[str, Any], *, what: str, path: str | None = None) -> None:
    """Unknown keyword -> ConfigError with a suggestion from the real signature."""
    names, open_ended = accepted_params(target)
    if open_ended:
        return
    for key in args:
        if key not in names:
            raise ConfigError(
                f"unknown parameter '{key}' for {what}"
                + (
                    did_you_mean(key, names) or f"; it takes: {', '.join(names) or 'no parameters'}"
                ),
                path=f"{path}.{key}" if path else key,
            )


# ---------------------------------------------------------------- layer arguments

# What a layer argument holds, by Keras' naming convention: `kernel_initializer`,
# `bias_regularizer`, `recurrent_constraint`, `activation`, a wrapper's `layer`.
_OBJECT_SUFFIXES = (
    ("_initializer", "initializer"),
    ("_regularizer", "regularizer"),
    ("_constraint", "constraint"),
)
_LAYER_ARGS = ("layer", "backward_layer", "cell")
_ACTIVATION_ARGS = ("activation", "recurrent_activation")


def arg_kind(param: str) -> str | None:
    """The kind of Keras object a layer argument takes ('initializer', 'layer' ...), or None."""
    if param in _LAYER_ARGS:
        return "layer"
    if param in _ACTIVATION_ARGS:
        return "activation"
    for suffix, kind in _OBJECT_SUFFIXES:
        if param.endswith(suffix):
            return kind
    return None


def layer_kind(name: str) -> str | None:
    """'layer' for a keras.layers name, 'application' for a keras.applications one."""
    if name in catalog.names("layer"):
        return "layer"
    if name in catalog.names("application"):
        return "application"
    return None


def shorthand_args(kind: str, name: str, value: Any) -> dict[str, Any]:
    """`Name: value` -> {first parameter: value}, as Python's ``Name(value)`` would.

    A lone value (a number, a string, a list) instead of a mapping of arguments
    fills the first required parameter, else the first parameter: ``Dense: 10``
    is ``{units: 10}``, ``Reshape: [28, 28, 1]`` is ``{target_shape: [...]}``.
    Raises ValueError when the name takes no parameter it could fill.
    """
    if is_import_path(name):
        raise ValueError(
            f"arguments of '{name}' must be a mapping like {{units: 10}}, got {value!r} "
            "(a lone value is read only for Keras' own names)"
        )
    sig = catalog.signature(kind, name)
    if sig is None:
        known = catalog.names(kind) + (catalog.names("application") if kind == "layer" else [])
        if known:
            raise ValueError(f"unknown {kind} '{name}'" + did_you_mean(name, known))
        raise ValueError(f"arguments of '{name}' must be a mapping, got {value!r}")
    param = catalog.first_param(kind, name)
    if param is None:
        raise ValueError(
            f"'{name}' takes no parameters of its own, so a lone value ({value!r}) fills "
            f"nothing; write its arguments as a mapping, e.g. {name}: {{name: my_{kind}}}"
        )
    return {param: value}


def component(kind: str, value: Any) -> tuple[str, dict[str, Any]] | None:
    """A nested object argument as (name, args): 'Name', {Name: {args}} or {Name: value}.

    None for anything else (a number, a list, an object Keras takes as is).
    """
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and len(value) == 1:
        ((name, args),) = value.items()
        if not isinstance(name, str):
            return None
        if args is None or isinstance(args, dict):
            return name, dict(args or {})
        if kind == "layer":
            kind = layer_kind(name) or kind
        return name, shorthand_args(kind, name, args)
    return None
