"""Config checks that need no TensorFlow: names and parameters read from Keras' source.

Run before anything heavy is imported, so the common mistakes (a misspelt
callback, parameter, layer or optimizer) are answered in a fraction of a
second. What this cannot see (import paths, plugins' parameters) is checked
again with the real objects when the run is built.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

from trainrun import catalog
from trainrun.builders.schedules import SCHEDULES, unknown_schedule
from trainrun.config import LoadedConfig, format_path
from trainrun.errors import ConfigError, did_you_mean
from trainrun.registry import (
    arg_kind,
    component,
    is_import_path,
    layer_kind,
    plugin_entry_points,
    split_component,
    unknown_name,
)
from trainrun.tracking import mlflow as tracking


def _check_callbacks(loaded: LoadedConfig) -> None:
    keras_callbacks = catalog.names("callback")
    if not keras_callbacks:
        return  # Keras' layout unknown: leave it to the live check
    for i, item in enumerate(loaded.config.callbacks):
        name, args = split_component(item)
        path = ("callbacks", i)
        if is_import_path(name) or name in plugin_entry_points():
            continue
        if name not in keras_callbacks:
            raise unknown_name("callback", name, path=format_path(path))
        _check_params(loaded, "callback", name, args, (*path, name))
        if name == "LearningRateScheduler" and isinstance(args.get("schedule"), dict):
            sched = args["schedule"]
            for kind in sched:
                if kind not in SCHEDULES:
                    raise unknown_schedule(kind, path=format_path((*path, name, "schedule", kind)))


def _check_layer_names(loaded: LoadedConfig) -> None:
    """Every layer's name, required arguments, and the objects inside its arguments."""
    if not catalog.names("layer"):
        return  # Keras' layout unknown: leave it to the live check
    for spec, path in _layer_items(loaded):
        _check_layer(loaded, spec, path)


def _check_layer(loaded: LoadedConfig, spec: Any, path: tuple) -> None:
    name, args = split_component(spec)
    if is_import_path(name):
        return
    kind = layer_kind(name)
    if kind is None:
        raise unknown_name("layer", name, path=format_path(path))
    where = (*path, name)
    if kind == "application":
        args.pop("trainable", None)  # set on the model it returns
        _check_params(loaded, kind, name, args, where)
    _check_required(loaded, kind, name, args, where)
    for key, value in args.items():
        nested = arg_kind(key)
        if nested is not None and value is not None:
            for i, item in (
                enumerate(value)
                if nested == "layer" and isinstance(value, list)
                else [(None, value)]
            ):
                _check_object(
                    loaded, nested, item, (*where, key) if i is None else (*where, key, i)
                )


def _check_required(loaded: LoadedConfig, kind: str, name: str, args: dict, where: tuple) -> None:
    required = catalog.required_params(kind, name) or []
    missing = [p for p in required if p not in args]
    if not missing:
        return
    for key in args:  # 'unitz' given for 'units': the misspelling is the mistake
        if did_you_mean(key, missing) and key not in (catalog.signature(kind, name).param_names):
            raise loaded.error(
                f"unknown parameter '{key}' for {kind} '{name}'" + did_you_mean(key, missing),
                (*where, key),
            )
    raise loaded.error(
        f"{kind} '{name}' needs {' and '.join(repr(p) for p in missing)} "
        f"(its required parameters: {', '.join(required)}), e.g. {name}: {{{missing[0]}: ...}}",
        where,
    )


def _check_params(loaded: LoadedConfig, kind: str, name: str, args: dict, where: tuple) -> None:
    """Unknown arguments, where Keras' source shows every parameter (no **kwargs)."""
    sig = catalog.signature(kind, name)
    if sig is None or sig.var_kwargs:
        return
    for key in args:
        if key not in sig.param_names:
            raise loaded.error(
                f"unknown parameter '{key}' for {kind} '{name}'"
                + (
                    did_you_mean(key, sig.param_names)
                    or f"; it takes: {', '.join(sig.param_names)}"
                ),
                (*where, key),
            )


def _check_object(loaded: LoadedConfig, kind: str, value: Any, path: tuple) -> None:
    """A layer argument that names a Keras object: an initializer, a layer, an activation..."""
    try:
        found = component(kind, value)
    except ValueError as exc:
        raise loaded.error(str(exc), path) from None
    if found is None:
        return  # a number or an object Keras takes as it is
    name, args = found
    if is_import_path(name):
        return
    if kind == "layer" or (
        kind == "activation" and layer_kind(name) is not None and name[:1].isupper()
    ):
        _check_layer(loaded, {name: args}, path)
        return
    known = catalog.names(kind)
    if not known:
        return
    if name not in known:
        raise unknown_name(kind, name, path=format_path(path))
    if kind == "activation":
        if args:
            raise loaded.error(
                f"activation '{name}' is a function and takes no arguments here; give a layer "
                "instead, e.g. {LeakyReLU: {negative_slope: 0.1}}",
                (*path, name),
            )
        return
    _check_params(loaded, kind, name, args, (*path, name))
    _check_required(loaded, kind, name, args, (*path, name))


def _check_optimizer_name(loaded: LoadedConfig) -> None:
    names = [n for n in catalog.names("optimizer") if n[:1].isupper()]
    if not names:
        return
    name, _ = split_component(loaded.config.compile.optimizer)
    if is_import_path(name):
        return
    known = {n.lower(): n for n in names}
    if name.lower() in known:
        return
    raise unknown_name("optimizer", name, path="compile.optimizer")


def _check_losses_and_metrics(loaded: LoadedConfig) -> None:
    """Loss and metric names, where the config's shape says unambiguously which is a name."""
    c = loaded.config.compile
    checks: list[tuple[str, object, tuple]] = []
    losses = catalog.loss_or_metric_names("loss")
    if isinstance(c.loss, str):
        checks.append(("loss", c.loss, ("compile", "loss")))
    elif isinstance(c.loss, dict) and not (len(c.loss) == 1 and next(iter(c.loss)) in losses):
        # A mapping per output ({score: mse, class: ...}); a {Class: {args}} is checked live.
        checks += [
            ("loss", v, ("compile", "loss", k)) for k, v in c.loss.items() if isinstance(v, str)
        ]
    metrics = c.metrics
    if isinstance(metrics, list):
        checks += [("metric", m, ("compile", "metrics", i)) for i, m in enumerate(metrics)]
    elif isinstance(metrics, dict):
        for out, items in metrics.items():
            items = items if isinstance(items, list) else [items]
            checks += [
                ("metric", m, ("compile", "metrics", out, i))
                for i, m in enumerate(items)
                if isinstance(m, str)
            ]
    for kind, spec, path in checks:
        if not isinstance(spec, str | dict) or isinstance(spec, dict) and len(spec) != 1:
            continue
        name, _ = split_component(spec)
        known = catalog.loss_or_metric_names(kind)
        if not known or is_import_path(name) or name in known:
            continue
        raise unknown_name(kind, name, path=format_path(path))


# ---------------------------------------------------------------- numbers


def _non_finite(value: Any, path: tuple) -> Iterator[tuple[tuple, float]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _non_finite(item, (*path, i))


def _check_finite(loaded: LoadedConfig) -> None:
    """No NaN or infinity anywhere: a learning rate of .nan trains on NaN, silently.

    The typed fields refuse them already; this covers the free-form arguments of
    optimizers, schedules, layers, callbacks, losses and data factories.
    """
    for path, value in _non_finite(loaded.config.model_dump(), ()):
        raise loaded.error(
            f"must be a finite number (got {value!r}; YAML reads .nan, .inf and numbers "
            "beyond 1.8e308 as not finite)",
            path,
        )


def _layer_items(loaded: LoadedConfig) -> list[tuple[Any, tuple]]:
    m = loaded.config.model
    items: list[tuple[Any, tuple]] = []
    if m.layers:
        items += [(spec, ("model", "layers", i)) for i, spec in enumerate(m.layers)]
    if m.graph:
        items += [(node.layer, ("model", "graph", i, "layer")) for i, node in enumerate(m.graph)]
    return items


# Layer arguments that count something (units, filters, table sizes): whole numbers >= 1.
_COUNT_ARGS = ("units", "filters", "input_dim", "output_dim", "num_heads", "key_dim")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_layer_counts(loaded: LoadedConfig) -> None:
    for spec, path in _layer_items(loaded):
        name, args = split_component(spec)
        if is_import_path(name):
            continue
        for key in _COUNT_ARGS:
            value = args.get(key)
            if value is not None and not _is_count(value):
                raise loaded.error(
                    f"'{key}' of layer '{name}' must be a whole number >= 1 (got {value!r})",
                    (*path, name, key),
                )


# ---------------------------------------------------------------- layer sizes
#
# A layer too big for memory makes TensorFlow fail with a ResourceExhausted
# traceback while it builds the model. Its size follows from the arguments and
# the input shape for the common layers, so it is checked here, before TensorFlow.

Shape = tuple[int | None, ...] | None
_BYTES_PER_WEIGHT = 4  # variables are float32, under mixed precision too
_SAME_SHAPE = {
    "Activation", "ActivityRegularization", "AlphaDropout", "BatchNormalization", "Dropout",
    "ELU", "GaussianDropout", "GaussianNoise", "GroupNormalization", "Identity",
    "LayerNormalization", "LeakyReLU", "Masking", "ReLU", "Softmax", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "UnitNormalization",
}  # fmt: skip
_RNN_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}


def _dims(value: Any) -> Shape:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple):
        return None
    if not all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value):
        return None
    return tuple(value)


def _last(shape: Shape) -> int:
    """The input's feature size, or 1 when unknown: weights are then a lower bound."""
    return shape[-1] if shape and _is_count(shape[-1]) else 1


def _estimate(name: str, args: dict[str, Any], shape: Shape) -> tuple[int, Shape]:
    """(number of weights, output shape) of a Keras layer; (0, None) when unknown."""
    if name in ("Input", "InputLayer"):
        batch = _dims(args.get("batch_shape"))
        return 0, _dims(args.get("shape")) or (batch[1:] if batch else None)
    if name in _SAME_SHAPE:
        return 0, shape
    units = args.get("units")
    if name == "Dense" and _is_count(units):
        bias = units if args.get("use_bias", True) else 0
        return _last(shape) * units + bias, (*(shape[:-1] if shape else (None,)), units)
    if name in _RNN_GATES and _is_count(units):
        per_gate = _last(shape) * units + units * units + units
        seq = args.get("return_sequences") is True and shape and len(shape) > 1
        return _RNN_GATES[name] * per_gate, ((shape[0], units) if seq else (units,))
    if (
        name == "Embedding"
        and _is_count(args.get("input_dim"))
        and _is_count(args.get("output_dim"))
    ):
        out = (*shape, args["output_dim"]) if shape else None
        return args["input_dim"] * args["output_dim"], out
    filters = args.get("filters")
    if name[:4] == "Conv" and name[-2:] in ("1D", "2D", "3D") and _is_count(filters):
        rank = int(name[-2])
        kernel = _dims(args.get("kernel_size"))
        if kernel and len(kernel) == 1:
            kernel = kernel * rank
        if args.get("data_format") == "channels_first":
            return 0, None  # the channels are not the last dimension
        channels = _last(shape)
        if kernel and all(_is_count(k) for k in kernel):
            groups = args.get("groups", 1)
            groups = groups if _is_count(groups) else 1
            weights = math.prod(kernel) * max(channels // groups, 1) * filters + filters
            return weights, (*(None,) * rank, filters)
        return 0, None
    if name == "Flatten":
        known = shape and all(_is_count(d) for d in shape)
        return 0, ((math.prod(shape),) if known else (None,))
    if name == "Reshape":
        return 0, _dims(args.get("target_shape"))
    if "Pooling" in name and shape:
        if name.startswith("Global"):
            return 0, (shape[-1],) if not args.get("keepdims") else None
        return 0, (*(None,) * (len(shape) - 1), shape[-1])
    return 0, None


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:,.0f} GiB" if n >= 2**30 else f"{n / 2**30:.2f} GiB"


def _layer_sizes(loaded: LoadedConfig) -> Iterator[tuple[str, dict, int, tuple]]:
    """(layer name, arguments, weights, key path) of each layer; 0 weights when unknown."""
    m = loaded.config.model
    shape: Shape = None
    for i, spec in enumerate(m.layers or []):
        name, args = split_component(spec)
        weights, shape = (0, None) if is_import_path(name) else _estimate(name, args, shape)
        yield name, args, weights, ("model", "layers", i)
    shapes: dict[str, Shape] = {k: _dims(v.get("shape")) for k, v in (m.inputs or {}).items()}
    for i, node in enumerate(m.graph or []):
        name, args = split_component(node.layer)
        given = shapes.get(node.input) if isinstance(node.input, str) else None
        weights, out = (0, None) if is_import_path(name) else _estimate(name, args, given)
        shapes[node.name] = out
        yield name, args, weights, ("model", "graph", i, "layer")


def _check_layer_sizes(loaded: LoadedConfig) -> None:
    """Refuse a model whose weights alone exceed this machine's memory, naming the layer."""
    memory = _physical_memory()
    if not memory:
        return
    sizes = list(_layer_sizes(loaded))
    for name, args, weights, path in sizes:
        need = weights * _BYTES_PER_WEIGHT
        if need > memory:
            given = ", ".join(f"{k}: {args[k]}" for k in _COUNT_ARGS if k in args)
            raise loaded.error(
                f"layer '{name}' would have {weights:,} weights ({_gib(need)} as float32), "
                f"more than this machine's memory ({_gib(memory)}); make it smaller ({given})",
                path,
            )
    total = sum(s[2] for s in sizes) * _BYTES_PER_WEIGHT
    if total > memory:
        name, _, weights, path = max(sizes, key=lambda s: s[2])
        raise loaded.error(
            f"the model's weights need {_gib(total)} as float32, more than this machine's "
            f"memory ({_gib(memory)}); the largest layer is '{name}' at {format_path(path)} "
            f"with {weights:,} weights",
            ("model",),
        )


_WEIGHT_FILES = (".keras", ".weights.h5")


def _check_initial_weights(loaded: LoadedConfig) -> None:
    value = loaded.config.model.initial_weights
    if value is None:
        return
    path = loaded.resolve_path(value)
    where = ("model", "initial_weights")
    if not path.name.endswith(_WEIGHT_FILES):
        raise loaded.error(
            f"initial weights must be a .keras or .weights.h5 file (got {path.name}), "
            "e.g. runs/<id>/model.keras",
            where,
        )
    if not path.is_file():
        raise loaded.error(f"initial weights file not found: {path}", where)


def _check_data_paths(loaded: LoadedConfig) -> None:
    """The folders of image_folder / text_folder and the files of csv exist."""
    data = loaded.config.data
    if data.source in ("image_folder", "text_folder"):
        folder = getattr(data, data.source)
        for key in ("directory", "validation_directory", "test_directory"):
            value = getattr(folder, key)
            if value is None:
                continue
            path = loaded.resolve_path(value)
            if not path.is_dir():
                what = "not a directory" if path.exists() else "directory not found"
                raise loaded.error(
                    f"{what}: {path} (it should hold one subfolder per class)",
                    ("data", data.source, key),
                )
    if data.source == "csv":
        for name in ("train", "validation", "test"):
            split = getattr(data, name)
            if split is not None and split.path is not None:
                path = loaded.resolve_path(split.path)
                if not path.is_file():
                    raise loaded.error(f"file not found: {path}", ("data", name, "path"))


def precheck(loaded: LoadedConfig) -> None:
    """Raise a ConfigError for the mistakes that can be found without TensorFlow.

    The checks raise with a key path; this gives the error its file and line (or
    the --set option that set the key) once, as `Trainer.prepare` does for the
    builders.
    """
    try:
        _run_checks(loaded)
    except ConfigError as exc:
        raise loaded.locate(exc) from None


def _run_checks(loaded: LoadedConfig) -> None:
    from trainrun.backend_check import check_backend

    check_backend(loaded)
    _check_data_paths(loaded)
    _check_callbacks(loaded)
    _check_layer_names(loaded)
    _check_initial_weights(loaded)
    _check_optimizer_name(loaded)
    _check_losses_and_metrics(loaded)
    _check_finite(loaded)
    _check_layer_counts(loaded)
    _check_layer_sizes(loaded)
    tracking.check(loaded)
