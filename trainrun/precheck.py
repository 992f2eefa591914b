"""Config checks that need no TensorFlow: names and parameters read from Keras' source.

Run before anything heavy is imported, so the common mistakes (a misspelt
callback, parameter, layer or optimizer) are answered in a fraction of a
second. What this cannot see (import paths, plugins' parameters) is checked
again with the real objects when the run is built.
"""

from __future__ import annotations

from trainrun import catalog
from trainrun.build.schedules import SCHEDULES
from trainrun.config import LoadedConfig, format_path
from trainrun.errors import UnknownNameError, did_you_mean
from trainrun.registry import is_import_path, plugin_entry_points, split_component


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
            known = sorted(set(keras_callbacks) | set(plugin_entry_points()))
            raise UnknownNameError(
                "callback",
                name,
                known,
                path=format_path(path),
                hint="see `trainrun callbacks`, or give an import path module:Class",
            ).locate(file=loaded.file, line=loaded.line_of(path))
        sig = catalog.signature("callback", name)
        if sig is None or sig.var_kwargs:
            continue
        for key in args:
            if key not in sig.param_names:
                raise loaded.error(
                    f"unknown parameter '{key}' for callback '{name}'"
                    + (
                        did_you_mean(key, sig.param_names)
                        or f"; it takes: {', '.join(sig.param_names)}"
                    ),
                    (*path, name, key),
                )
        if name == "LearningRateScheduler" and isinstance(args.get("schedule"), dict):
            sched = args["schedule"]
            for kind in sched:
                if kind not in SCHEDULES:
                    raise loaded.error(
                        f"unknown schedule '{kind}'"
                        + (did_you_mean(kind, SCHEDULES) or f"; known: {', '.join(SCHEDULES)}"),
                        (*path, name, "schedule", kind),
                    )


def _check_layer_names(loaded: LoadedConfig) -> None:
    layers = catalog.names("layer")
    if not layers:
        return
    m = loaded.config.model
    items: list[tuple[object, tuple]] = []
    if m.layers:
        items += [(spec, ("model", "layers", i)) for i, spec in enumerate(m.layers)]
    if m.graph:
        items += [(node.layer, ("model", "graph", i, "layer")) for i, node in enumerate(m.graph)]
    for spec, path in items:
        name, _ = split_component(spec)
        if is_import_path(name) or name in layers:
            continue
        raise UnknownNameError("layer", name, layers, path=format_path(path)).locate(
            file=loaded.file, line=loaded.line_of(path)
        )


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
    raise UnknownNameError("optimizer", name, names, path="compile.optimizer").locate(
        file=loaded.file, line=loaded.line_of(("compile", "optimizer"))
    )


def precheck(loaded: LoadedConfig) -> None:
    """Raise a ConfigError for the mistakes that can be found without TensorFlow."""
    _check_callbacks(loaded)
    _check_layer_names(loaded)
    _check_optimizer_name(loaded)
