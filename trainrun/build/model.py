"""Config -> keras.Model: Sequential layers, a functional graph, a builder, or a file."""

from __future__ import annotations

from typing import Any

import keras

from trainrun import catalog
from trainrun.config import LoadedConfig, format_path
from trainrun.errors import ConfigError, UnknownNameError
from trainrun.registry import check_params, import_object, is_import_path, split_component


def _to_keras_config(value: Any) -> Any:
    """Nested '{LSTM: {units: 8}}' arguments -> Keras' serialized form for from_config."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, args),) = value.items()
        if (
            isinstance(name, str)
            and name in catalog.names("layer")
            and isinstance(args, dict | None)
        ):
            return {"class_name": name, "config": dict(args or {}), "module": "keras.layers"}
    return value


def build_layer(spec: Any, *, loaded: LoadedConfig, path: tuple, name: str | None = None) -> Any:
    """One layer from 'Name', {Name: {args}} or an import path, via keras.layers.deserialize."""
    layer_name, args = split_component(spec)
    where = format_path(path)
    if name is not None:
        args.setdefault("name", name)
    if is_import_path(layer_name):
        cls = import_object(layer_name, base_dir=loaded.base_dir, what="layer", path=where)
        check_params(cls, args, what=f"layer '{layer_name}'", path=f"{where}.{layer_name}")
        try:
            return cls(**args)
        except (TypeError, ValueError) as exc:
            raise loaded.error(f"invalid arguments for layer '{layer_name}': {exc}", path) from None
    if layer_name == "Input":
        check_params(keras.Input, args, what="'Input'", path=f"{where}.Input")
        return keras.Input(**args)
    cls = getattr(keras.layers, layer_name, None)
    if not isinstance(cls, type) or not issubclass(cls, keras.layers.Layer):
        raise UnknownNameError("layer", layer_name, catalog.names("layer"), path=where).locate(
            file=loaded.file, line=loaded.line_of(path)
        )
    try:
        check_params(cls, args, what=f"layer '{layer_name}'", path=f"{where}.{layer_name}")
    except ConfigError as exc:
        raise exc.locate(
            file=loaded.file, line=loaded.line_of((*path, layer_name, *exc.path.split(".")[-1:]))
        ) from None
    config = {k: _to_keras_config(v) for k, v in args.items()}
    try:
        return keras.layers.deserialize(
            {"class_name": layer_name, "config": config, "module": "keras.layers"}
        )
    except (TypeError, ValueError, KeyError) as exc:
        raise loaded.error(f"invalid arguments for layer '{layer_name}': {exc}", path) from None


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
        raise loaded.error(f"the layers do not form a model: {exc}", ("model", "layers")) from None


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def _functional(loaded: LoadedConfig) -> keras.Model:
    m = loaded.config.model
    tensors: dict[str, Any] = {}
    for in_name, spec in (m.inputs or {}).items():
        where = ("model", "inputs", in_name)
        try:
            check_params(keras.Input, spec, what="an input", path=format_path(where))
            tensors[in_name] = keras.Input(name=in_name, **spec)
        except ConfigError as exc:
            raise exc.locate(file=loaded.file, line=loaded.line_of(where)) from None
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


def build_model(loaded: LoadedConfig) -> keras.Model:
    m = loaded.config.model
    if m.layers is not None:
        return _sequential(loaded)
    if m.graph is not None:
        return _functional(loaded)
    if m.builder is not None:
        return _builder(loaded)
    return _from_file(loaded)
