"""Config -> the arguments of model.compile: optimizer, loss, metrics, loss_weights."""

from __future__ import annotations

from typing import Any

import keras

from trainrun import catalog, custom
from trainrun.config import LoadedConfig
from trainrun.errors import ConfigError, UnknownNameError, did_you_mean
from trainrun.registry import check_params, import_object, is_import_path, split_component


def _located(loaded: LoadedConfig, exc: ConfigError, path: tuple) -> ConfigError:
    """`exc` with its file line, or naming the --set option that set its key."""
    if exc.path and not exc.file:
        return loaded.locate(exc)
    return exc.locate(**loaded.where(path))


def _schedule(value: Any, loaded: LoadedConfig, path: tuple) -> Any:
    """A learning_rate that is itself a schedule: {ExponentialDecay: {...}}."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1:
        raise loaded.error("a learning-rate schedule is one 'Name: {args}' entry", path)
    ((name, args),) = value.items()
    cls = getattr(keras.optimizers.schedules, name, None)
    if cls is None or not isinstance(cls, type):
        raise _located(
            loaded,
            UnknownNameError(
                "learning-rate schedule", name, catalog.names("schedule"), path=_fmt((*path, name))
            ),
            path,
        )
    try:
        check_params(cls, args or {}, what=f"schedule '{name}'", path=_fmt((*path, name)))
        return cls(**(args or {}))
    except ConfigError as exc:
        raise _located(loaded, exc, path) from None
    except (TypeError, ValueError) as exc:
        raise loaded.error(f"invalid arguments for schedule '{name}': {exc}", path) from None


def _fmt(path: tuple) -> str:
    from trainrun.config import format_path

    return format_path(path)


def _optimizer_names() -> list[str]:
    return [
        n
        for n in catalog.names("optimizer")
        if n[0].isupper() and n not in ("Optimizer", "LossScaleOptimizer")
    ]


def build_optimizer(loaded: LoadedConfig) -> keras.optimizers.Optimizer:
    spec = loaded.config.compile.optimizer
    path = ("compile", "optimizer")
    name, args = split_component(spec)
    if is_import_path(name):
        cls = import_object(name, base_dir=loaded.base_dir, what="optimizer", path=_fmt(path))
    else:
        try:
            cls = type(keras.optimizers.get(name))
        except ValueError:
            known = _optimizer_names()
            raise _located(
                loaded,
                UnknownNameError(
                    "optimizer", name, known + [n.lower() for n in known], path=_fmt(path)
                ),
                path,
            ) from None
    if "learning_rate" in args:
        args["learning_rate"] = _schedule(
            args["learning_rate"], loaded, (*path, name, "learning_rate")
        )
    try:
        check_params(cls, args, what=f"optimizer '{name}'", path=_fmt((*path, name)))
        return cls(**args)
    except ConfigError as exc:
        raise _located(loaded, exc, (*path, name)) from None
    except (TypeError, ValueError) as exc:
        raise loaded.error(f"invalid arguments for optimizer '{name}': {exc}", path) from None


def _object(kind: str, spec: Any, loaded: LoadedConfig, path: tuple) -> Any:
    """One loss or metric: a Keras name/alias (kept as the string Keras expects), {Class: args}, or module:attr."""
    getter = keras.losses.get if kind == "loss" else keras.metrics.get
    name, args = split_component(spec)
    if is_import_path(name):
        obj = import_object(name, base_dir=loaded.base_dir, what=kind, path=_fmt(path))
        if isinstance(obj, type):
            try:
                check_params(obj, args, what=f"{kind} '{name}'", path=_fmt((*path, name)))
                return obj(**args)
            except ConfigError as exc:
                raise _located(loaded, exc, path) from None
        return obj
    if isinstance(spec, str) and name.lower() in catalog.COMPILE_ALIASES[kind]:
        return name  # compile picks the accuracy / crossentropy that fits outputs and labels
    found = getattr(keras.losses if kind == "loss" else keras.metrics, name, None)
    if not isinstance(found, type):
        # Only names that are not classes: get('AUC') builds an AUC, which takes the
        # name 'auc', and the metric built for the config would then log as auc_1.
        try:
            found = getter(name)
        except (ValueError, TypeError):
            found = None
    if found is None:
        known = catalog.loss_or_metric_names(kind)
        raise _located(loaded, UnknownNameError(kind, name, known, path=_fmt(path)), path) from None
    if isinstance(spec, str):
        return name  # kept as the string: Keras names the logged metric after it
    cls = (
        found
        if isinstance(found, type)
        else getattr(keras.losses if kind == "loss" else keras.metrics, name, None)
    )
    if not isinstance(cls, type):
        raise loaded.error(
            f"'{name}' is a function and takes no arguments; write it as a bare name", path
        )
    try:
        check_params(cls, args, what=f"{kind} '{name}'", path=_fmt((*path, name)))
        return cls(**args)
    except ConfigError as exc:
        raise _located(loaded, exc, (*path, name)) from None
    except (TypeError, ValueError) as exc:
        raise loaded.error(f"invalid arguments for {kind} '{name}': {exc}", path) from None


def _is_component(value: dict, outputs: list[str]) -> bool:
    """{Name: {args}} (one loss with arguments), as opposed to a mapping by output."""
    if len(value) != 1:
        return False
    ((name, args),) = value.items()
    return name not in outputs and isinstance(args, dict)


def _check_output_keys(value: dict, outputs: list[str], loaded: LoadedConfig, path: tuple) -> None:
    for key in value:
        if key not in outputs:
            has = (
                f"the model has one output: {outputs[0]}"
                if len(outputs) == 1
                else f"outputs are: {', '.join(outputs)}"
            )
            raise loaded.error(
                f"'{key}' is not an output of the model"
                + (did_you_mean(str(key), outputs) or "")
                + f"; {has}",
                (*path, key),
            )


def _by_output(value: dict, outputs: list[str], loaded: LoadedConfig, path: tuple) -> dict:
    """A mapping by output name, its keys checked against the model's outputs."""
    _check_output_keys(value, outputs, loaded, path)
    return value


def output_names(model: keras.Model) -> list[str]:
    """The model's output names; a Sequential model's is its last layer's name."""
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    outputs = getattr(model, "outputs", None) or []
    if len(outputs) == 1 and model.layers:
        return [model.layers[-1].name]
    return [f"output_{i}" for i in range(len(outputs))]


def compile_args(loaded: LoadedConfig, model: keras.Model) -> dict[str, Any]:
    """keyword arguments for model.compile, except jit_compile / steps_per_execution.

    A mapping by output name is passed on as one for a model with several outputs;
    for a single-output model (Keras takes no mapping there, and a Sequential model
    has no output names) the value of its one output is used.
    """
    # Before anything is saved, so that a checkpoint or model.keras can be loaded again.
    custom.register_config_objects(loaded)
    c = loaded.config.compile
    outputs = output_names(model)
    multi = len(outputs) > 1
    args: dict[str, Any] = {"optimizer": build_optimizer(loaded)}

    loss = c.loss
    if loss is None:
        raise loaded.error(
            "compile needs a 'loss', e.g. loss: sparse_categorical_crossentropy", ("compile",)
        )
    if isinstance(loss, dict) and not _is_component(loss, outputs):
        losses = {
            k: _object("loss", v, loaded, ("compile", "loss", k))
            for k, v in _by_output(loss, outputs, loaded, ("compile", "loss")).items()
        }
        args["loss"] = losses if multi else next(iter(losses.values()))
    else:
        args["loss"] = _object("loss", loss, loaded, ("compile", "loss"))

    metrics = c.metrics
    if isinstance(metrics, dict):
        by_output = {
            k: [
                _object("metric", m, loaded, ("compile", "metrics", k, i))
                for i, m in enumerate(v if isinstance(v, list) else [v])
            ]
            for k, v in _by_output(metrics, outputs, loaded, ("compile", "metrics")).items()
        }
        args["metrics"] = by_output if multi else next(iter(by_output.values()), [])
    elif metrics:
        args["metrics"] = [
            _object("metric", m, loaded, ("compile", "metrics", i)) for i, m in enumerate(metrics)
        ]

    weights = c.loss_weights
    if weights is not None:
        if isinstance(weights, dict):
            weights = _by_output(weights, outputs, loaded, ("compile", "loss_weights"))
            if not multi:
                weights = list(weights.values()) or None
        elif len(weights) != len(outputs):
            raise loaded.error(
                f"loss_weights has {len(weights)} values but the model has {len(outputs)} outputs",
                ("compile", "loss_weights"),
            )
        if weights is not None:
            args["loss_weights"] = weights
    return args
