"""Cross-checks before training: data shapes vs model inputs, monitors vs logged keys."""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np

from trainrun import keras_compat
from trainrun.builders.callback_list import callback_specs
from trainrun.config import LoadedConfig
from trainrun.data.feed import Feed
from trainrun.errors import ConfigError, DataError, did_you_mean
from trainrun.registry import resolve_callback_class


def _shape(s: Any) -> list:
    return [None if d is None else int(d) for d in s]


def _compatible(expected: list, got: tuple) -> bool:
    if len(expected) != len(got):
        return False
    return all(e is None or g is None or e == g for e, g in zip(expected, got, strict=True))


def check_inputs(loaded: LoadedConfig, model: Any, feed: Feed) -> None:
    """Data shapes must fit the model's inputs: caught here with both shapes named."""
    inputs = getattr(model, "inputs", None)
    try:
        inputs = list(inputs) if inputs else []
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        return  # a subclassed or not-yet-built model: Keras builds it from the data
    x = feed.input_shapes()
    src = loaded.config.data
    how = (
        " after flatten"
        if src.flatten
        else (f" after reshape {src.reshape}" if src.reshape else "")
    )
    if isinstance(x, dict):
        names = [t.name.split(":")[0] for t in inputs]
        by_name = {
            getattr(keras_compat.producing_layer(t), "name", None) or n: t
            for n, t in zip(names, inputs, strict=True)
        }
        for key in x:
            if key not in by_name:
                raise DataError(
                    f"data x has an entry '{key}' but the model has no input of that name"
                    + did_you_mean(key, by_name)
                    + f"; model inputs are: {', '.join(by_name)}"
                )
        missing = [n for n in by_name if n not in x]
        if missing:
            raise DataError(
                f"data x lacks model input(s) {', '.join(missing)}; give x as a mapping of input names to arrays"
            )
        for key, got in x.items():
            expected = _shape(by_name[key].shape[1:])
            if not _compatible(expected, got):
                raise DataError(
                    f"model input '{key}' expects samples of shape {expected}, but data x['{key}'] has {list(got)}{how}"
                )
        return
    if len(inputs) > 1:
        raise DataError(
            f"the model has {len(inputs)} inputs ({', '.join(t.name for t in inputs)}); give data x as a mapping "
            "of input names to arrays"
        )
    expected = _shape(inputs[0].shape[1:])
    if not _compatible(expected, tuple(x)):
        fix = ""
        if (
            len(x) > 1
            and int(np.prod(x)) == int(np.prod([d or 1 for d in expected]))
            and len(expected) == 1
        ):
            fix = "; set data.flatten: true"
        elif len(x) == 1 and len(expected) > 1:
            fix = f"; set data.reshape: {expected}"
        elif len(x) == 1 and len(expected) == 1:
            fix = f"; set the Input shape to [{x[0]}]"
        raise loaded.error(
            f"the model's input expects samples of shape {expected}, but the data has shape {list(x)}{how}{fix}",
            ("model",),
        )


def _is_sparse_crossentropy(loss: Any) -> bool:
    name = (
        loss
        if isinstance(loss, str)
        else getattr(loss, "name", None) or getattr(loss, "__name__", "")
    )
    return str(name).lower().replace("_", "") == "sparsecategoricalcrossentropy"


def check_labels(loaded: LoadedConfig, model: Any, feed: Feed) -> None:
    """Class labels of a sparse crossentropy must index the output's units.

    TensorFlow would otherwise fail inside the first training step with a graph
    error; here the labels and the units are named before training starts.
    """
    labels = feed.train_labels()  # None for a tf.data dataset: not read before training
    if labels is None or not getattr(model, "outputs", None):
        return
    outputs = list(model.outputs)
    names = list(getattr(model, "output_names", None) or [t.name for t in outputs])
    loss = model.loss
    if isinstance(loss, dict):
        losses = loss
    elif isinstance(loss, list | tuple):
        losses = dict(zip(names, loss, strict=False))
    else:
        losses = dict.fromkeys(names, loss)
    ys = labels if isinstance(labels, dict) else ({names[0]: labels} if len(names) == 1 else {})
    for name, output in zip(names, outputs, strict=True):
        y = ys.get(name)
        if y is None or not _is_sparse_crossentropy(losses.get(name)):
            continue
        if not np.issubdtype(np.asarray(y).dtype, np.integer) or not len(y):
            continue
        units, low, high = output.shape[-1], int(np.min(y)), int(np.max(y))
        labels = "labels" if len(names) == 1 else f"labels of output '{name}'"
        if low < 0:
            raise DataError(
                f"{labels} include {low}; class labels of a sparse crossentropy start at 0"
            )
        if units is not None and high >= units:
            where = (
                ("model", "layers", len(loaded.config.model.layers) - 1)
                if loaded.config.model.layers
                else ("model",)
            )
            raise loaded.error(
                f"{labels} go up to {high}, but the model's output has {units} units; "
                f"sparse_categorical_crossentropy needs one unit per class: set units to {high + 1}",
                where,
            )


def build_and_list_logs(loaded: LoadedConfig, model: Any, feed: Feed) -> list[str]:
    """Build model, loss and metrics from one batch; return every key fit will log."""
    batch = feed.first_batch()
    try:
        keras_compat.symbolic_build(model, batch)  # what Keras' fit does first under a strategy
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise loaded.error(
            f"the data does not fit the model and its loss: {first} "
            "(check compile.loss against the labels, and the last layer's units)",
            ("compile", "loss"),
        ) from None
    keys = list(model.get_metrics_result().keys())
    if "loss" not in keys:
        keys.insert(0, "loss")
    if feed.split("validation") is not None:
        keys += [f"val_{k}" for k in list(keys)]
    return [*keys, "learning_rate"]


def _monitor_of(cls: type, args: dict[str, Any]) -> str | None:
    if "monitor" in args:
        return args["monitor"]
    try:
        param = inspect.signature(cls).parameters.get("monitor")
    except (TypeError, ValueError):
        return None
    return param.default if param is not None and isinstance(param.default, str) else None


def check_monitors(loaded: LoadedConfig, keys: list[str]) -> None:
    """Every callback's monitor must be a key training will log."""
    for name, args, path in callback_specs(loaded):
        cls = resolve_callback_class(name, base_dir=loaded.base_dir)
        monitor = _monitor_of(cls, args)
        if monitor is None or monitor in keys:
            continue
        hint = ""
        if monitor.startswith("val_") and monitor[4:] in keys:
            hint = " (there is no validation data: set data.validation_split or give a validation split)"
        shown = [k for k in keys if k != "learning_rate"]
        msg = f"monitor '{monitor}' is not produced{hint}" + (
            did_you_mean(monitor, shown) if not hint else ""
        )
        msg += f"; metrics are {', '.join(shown)}"
        where = (*path, name, "monitor") if "monitor" in args else (*path, name)
        raise loaded.error(msg, where)


def main_monitor(loaded: LoadedConfig, keys: list[str]) -> str:
    """The value run.json's 'best' follows: the first callback monitor, else val_loss/loss."""
    for name, args, _ in callback_specs(loaded):
        try:
            monitor = _monitor_of(resolve_callback_class(name, base_dir=loaded.base_dir), args)
        except ConfigError:
            continue
        if monitor in keys:
            return monitor
    return "val_loss" if "val_loss" in keys else "loss"


def _mode_of(cls: type, args: dict[str, Any]) -> str:
    """A callback's `mode` as given, else its class default: min, max or auto."""
    mode = args.get("mode")
    if mode is None:
        try:
            param = inspect.signature(cls).parameters.get("mode")
        except (TypeError, ValueError):
            param = None
        mode = param.default if param is not None else None
    return mode if mode in ("min", "max") else "auto"


def monitor_direction(loaded: LoadedConfig, model: Any, monitor: str) -> str:
    """'max' or 'min': the way `monitor` improves, as the callback that watches it sees it.

    The `mode` of the first callback monitoring it (EarlyStopping,
    ModelCheckpoint, ReduceLROnPlateau) when it says min or max; otherwise
    Keras' own rule, asked of a Keras MonitorCallback on the compiled, built
    model: the metric object's direction (AUC, accuracy: up), then the name
    `loss`. Never a guess from the name's spelling (`AUC` is logged as `val_AUC`).
    A value Keras cannot place either way (a custom function's mean) counts as
    `min`, like a loss.
    """
    mode = "auto"
    for name, args, _ in callback_specs(loaded):
        try:
            cls = resolve_callback_class(name, base_dir=loaded.base_dir)
        except ConfigError:
            continue
        if _monitor_of(cls, args) == monitor:
            mode = _mode_of(cls, args)
            break
    if mode != "auto":
        return mode
    probe = keras_compat.MonitorCallback(monitor=monitor)
    probe.set_model(model)
    try:
        probe._set_monitor_op()
    except ValueError:  # Keras: "isn't able to automatically determine ..."
        return "min"
    return "max" if bool(np.asarray(probe.monitor_op(1.0, 0.0))) else "min"


@contextlib.contextmanager
def weights_fit_in_memory(loaded: LoadedConfig) -> Iterator[None]:
    """Turn TensorFlow's out-of-memory error while building the model into a config error.

    `trainrun.precheck` refuses the common layers that are too big before
    TensorFlow is imported; this covers the rest (other layers, builders, files).
    """
    try:
        yield
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        found = re.search(r"shape\s*\[([^\]]*)\] and type (\w+)", str(exc))
        what = f" a {found[2]} tensor of shape [{found[1]}]" if found else ""
        raise loaded.error(
            f"the model does not fit in memory: TensorFlow could not allocate{what}; "
            "make the largest layer smaller (its units, filters or other sizes)",
            ("model",),
        ) from None


def _out_of_memory(exc: Exception) -> bool:
    """TensorFlow's allocation failure (no other backend's error is matched)."""
    if sys.modules.get("tensorflow") is None:  # not imported (or blocked: not installed)
        return False
    import tensorflow as tf

    return isinstance(exc, tf.errors.ResourceExhaustedError)


MAX_MODES = ("acc", "accuracy", "auc", "precision", "recall", "f1", "iou")


def monitor_mode(monitor: str) -> str:
    base = monitor.removeprefix("val_")
    return (
        "max" if any(base == m or base.endswith(f"_{m}") or m in base for m in MAX_MODES) else "min"
    )
