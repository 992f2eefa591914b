"""Config -> keras.Model: Sequential layers, a functional graph, a builder, or a file.

Errors are raised with their key path (`ConfigError(path=...)`, or `loaded.error`
where the message is made here); the caller, `Trainer.prepare`, gives them their
file and line once with `LoadedConfig.locate`.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import keras

from trainrun import catalog, keras_compat
from trainrun.config import LoadedConfig, format_path
from trainrun.registry import (
    accepted_params,
    arg_kind,
    check_params,
    component,
    import_object,
    is_import_path,
    layer_kind,
    split_component,
    unknown_name,
)


def _first_line(exc: BaseException) -> str:
    """The line of a Keras message that says what is wrong (not 'Exception encountered...')."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # Keras bolds some messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    said = [
        line
        for line in lines
        if not line.startswith(("Exception encountered", "Arguments received"))
    ]
    return (said or lines or [type(exc).__name__])[0]


_KERAS_MODULES = {
    "initializer": "initializers",
    "regularizer": "regularizers",
    "constraint": "constraints",
    "activation": "activations",
}


def _resolve_object(kind: str, value: Any, *, loaded: LoadedConfig, path: tuple) -> Any:
    """A layer argument naming a Keras object -> the object, via keras.<kind>s.get."""
    where = format_path(path)
    try:
        found = component(kind, value)
    except ValueError as exc:
        raise loaded.error(str(exc), path) from None
    if found is None:
        return value  # a number, or an object Keras takes as it is
    name, args = found
    if kind == "layer" or (kind == "activation" and name[:1].isupper() and layer_kind(name)):
        return build_layer({name: args}, loaded=loaded, path=path)
    if is_import_path(name):
        target = import_object(name, base_dir=loaded.base_dir, what=kind, path=where)
        if not args and not inspect.isclass(target):
            return target  # a function: an activation, an initializer...
        check_params(target, args, what=f"{kind} '{name}'", path=f"{where}.{name}")
        try:
            return target(**args)
        except (TypeError, ValueError) as exc:
            raise loaded.error(f"invalid {kind} '{name}': {_first_line(exc)}", path) from None
    module = getattr(keras, _KERAS_MODULES[kind])
    known = catalog.names(kind)
    target = None
    if name in known or not known:
        # Aliases such as 'normal' live only in Keras' registry, not as attributes.
        registry = keras_compat.registered_objects(kind)
        target = getattr(module, name, None) or registry.get(name)
    if target is None:
        raise unknown_name(kind, name, path=where)
    if kind == "activation":
        if args:
            raise loaded.error(
                f"activation '{name}' is a function and takes no arguments here; give a layer "
                "instead, e.g. {LeakyReLU: {negative_slope: 0.1}}",
                path,
            )
        return name  # Keras serializes a built-in activation by its name
    check_params(target, args, what=f"{kind} '{name}'", path=f"{where}.{name}")
    try:
        return module.get({"class_name": name, "config": args} if args else name)
    except (TypeError, ValueError) as exc:
        raise loaded.error(f"invalid {kind} '{name}': {_first_line(exc)}", path) from None


def _resolve_args(args: dict[str, Any], *, loaded: LoadedConfig, path: tuple) -> dict[str, Any]:
    """Arguments of a layer with their nested objects (initializers, layers ...) built."""
    out = {}
    for key, value in args.items():
        kind = arg_kind(key)
        if kind is None or value is None:
            out[key] = value
        elif kind == "layer" and isinstance(value, list):
            out[key] = [
                _resolve_object(kind, item, loaded=loaded, path=(*path, key, i))
                for i, item in enumerate(value)
            ]
        else:
            out[key] = _resolve_object(kind, value, loaded=loaded, path=(*path, key))
    return out


def _application(
    name: str, args: dict[str, Any], *, loaded: LoadedConfig, path: tuple
) -> keras.Model:
    """A keras.applications model (MobileNetV2 ...) used as a layer; `trainable` set on it."""
    fn = getattr(keras.applications, name)
    where = (*path, name)
    trainable = args.pop("trainable", None)
    if "name" in args and "name" not in accepted_params(fn)[0]:
        args.pop("name")
    check_params(fn, args, what=f"application '{name}'", path=format_path(where))
    try:
        model = fn(**args)
    except (TypeError, ValueError) as exc:
        raise loaded.error(f"invalid arguments for '{name}': {_first_line(exc)}", where) from None
    except Exception as exc:  # the weights download (weights: imagenet) failing
        raise loaded.error(
            f"cannot build '{name}': {type(exc).__name__}: {_first_line(exc)}", where
        ) from None
    if trainable is not None:
        model.trainable = bool(trainable)
    return model


def build_layer(spec: Any, *, loaded: LoadedConfig, path: tuple, name: str | None = None) -> Any:
    """One layer from 'Name', {Name: {args}} or an import path, its class called directly.

    Nested objects in the arguments (`kernel_regularizer: {L2: {l2: 1.0e-4}}`, a
    wrapper's `layer`) are built first with Keras' own `get` functions.
    """
    layer_name, args = split_component(spec)
    where = format_path(path)
    if name is not None:
        args.setdefault("name", name)
    if is_import_path(layer_name):
        cls = import_object(layer_name, base_dir=loaded.base_dir, what="layer", path=where)
        check_params(cls, args, what=f"layer '{layer_name}'", path=f"{where}.{layer_name}")
        args = _resolve_args(args, loaded=loaded, path=(*path, layer_name))
        try:
            return cls(**args)
        except (TypeError, ValueError) as exc:
            raise loaded.error(
                f"invalid arguments for layer '{layer_name}': {_first_line(exc)}", path
            ) from None
    if layer_name == "Input":
        check_params(keras.Input, args, what="'Input'", path=f"{where}.Input")
        return keras.Input(**args)
    if layer_kind(layer_name) == "application":
        return _application(layer_name, args, loaded=loaded, path=path)
    cls = getattr(keras.layers, layer_name, None)
    if not isinstance(cls, type) or not issubclass(cls, keras.layers.Layer):
        raise unknown_name("layer", layer_name, path=where)
    check_params(cls, args, what=f"layer '{layer_name}'", path=f"{where}.{layer_name}")
    args = _resolve_args(args, loaded=loaded, path=(*path, layer_name))
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        # Keras checks values in the constructor ("Invalid value received for argument
        # `rate`..."): its first line, placed at the layer's item.
        raise loaded.error(
            f"invalid arguments for layer '{layer_name}': {_first_line(exc)}",
            (*path, layer_name),
        ) from None


def _sequential(loaded: LoadedConfig) -> keras.Model:
    items = loaded.config.model.layers or []
    built = [
        build_layer(spec, loaded=loaded, path=("model", "layers", i))
        for i, spec in enumerate(items)
    ]
    name = loaded.config.model.name or loaded.config.name
    try:
        return keras.Sequential(built, name=_safe_name(name))
    except (TypeError, ValueError) as exc:
        raise loaded.error(
            f"the layers do not form a model: {_first_line(exc)}", ("model", "layers")
        ) from None


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _functional(loaded: LoadedConfig) -> keras.Model:
    m = loaded.config.model
    tensors: dict[str, Any] = {}
    for in_name, spec in (m.inputs or {}).items():
        where = ("model", "inputs", in_name)
        check_params(keras.Input, spec, what="an input", path=format_path(where))
        try:
            tensors[in_name] = keras.Input(name=in_name, **spec)
        except (TypeError, ValueError) as exc:
            raise loaded.error(f"invalid input: {exc}", where) from None
    inputs = dict(tensors)
    for i, node in enumerate(m.graph or []):
        where = ("model", "graph", i)
        if node.name in tensors:
            raise loaded.error(
                f"name '{node.name}' is used twice; each graph node needs its own name",
                (*where, "name"),
            )
        names = [node.input] if isinstance(node.input, str) else list(node.input)
        for ref in names:
            if ref not in tensors:
                raise loaded.error(
                    f"input '{ref}' is not defined before this node; known so far: {', '.join(tensors)}",
                    (*where, "input"),
                )
        layer = build_layer(node.layer, loaded=loaded, path=(*where, "layer"), name=node.name)
        args = tensors[node.input] if isinstance(node.input, str) else [tensors[r] for r in names]
        try:
            tensors[node.name] = layer(args)
        except Exception as exc:
            raise loaded.error(
                f"layer '{node.name}' cannot be applied to {names}: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                where,
            ) from None
    out_names = [m.outputs] if isinstance(m.outputs, str) else list(m.outputs or [])
    for ref in out_names:
        if ref not in tensors:
            raise loaded.error(
                f"output '{ref}' is not a graph node; nodes: {', '.join(tensors)}",
                ("model", "outputs"),
            )
    model_inputs: Any = inputs if len(inputs) > 1 else next(iter(inputs.values()))
    model_outputs: Any = (
        {n: tensors[n] for n in out_names} if len(out_names) > 1 else tensors[out_names[0]]
    )
    try:
        return keras.Model(
            model_inputs, model_outputs, name=_safe_name(m.name or loaded.config.name)
        )
    except (TypeError, ValueError) as exc:
        raise loaded.error(f"the graph does not form a model: {exc}", ("model", "graph")) from None


def _builder(loaded: LoadedConfig) -> keras.Model:
    b = loaded.config.model.builder
    fn = import_object(
        b.factory, base_dir=loaded.base_dir, what="model builder", path="model.builder.factory"
    )
    check_params(fn, b.args, what=f"model builder '{b.factory}'", path="model.builder.args")
    model = fn(**b.args)
    if not isinstance(model, keras.Model):
        raise loaded.error(
            f"model builder '{b.factory}' must return a keras.Model, got {type(model).__name__}",
            ("model", "builder", "factory"),
        )
    return model


def _from_file(loaded: LoadedConfig) -> keras.Model:
    path = loaded.resolve_path(loaded.config.model.path)
    if not path.is_file():
        raise loaded.error(f"model file not found: {path}", ("model", "path"))
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:
        raise loaded.error(
            f"cannot load {path.name}: {type(exc).__name__}: {exc}", ("model", "path")
        ) from None


def _load_initial_weights(loaded: LoadedConfig, model: keras.Model) -> None:
    """model.initial_weights: an earlier run's weights, to fine-tune from them."""
    value = loaded.config.model.initial_weights
    if value is None:
        return
    path = loaded.resolve_path(value)
    try:
        model.load_weights(path)
    except Exception as exc:
        raise loaded.error(
            f"cannot load initial weights from {path.name} into this model "
            f"(the layers must match the model that saved them): {_first_line(exc)}",
            ("model", "initial_weights"),
        ) from None


def build_model(loaded: LoadedConfig) -> keras.Model:
    m = loaded.config.model
    if m.layers is not None:
        model = _sequential(loaded)
    elif m.graph is not None:
        model = _functional(loaded)
    elif m.builder is not None:
        model = _builder(loaded)
    else:
        model = _from_file(loaded)
    _load_initial_weights(loaded, model)
    return model
