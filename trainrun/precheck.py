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
        raise UnknownNameError(kind, name, known, path=format_path(path)).locate(
            file=loaded.file, line=loaded.line_of(path)
        )


def precheck(loaded: LoadedConfig) -> None:
    """Raise a ConfigError for the mistakes that can be found without TensorFlow."""
    _check_callbacks(loaded)
    _check_layer_names(loaded)
    _check_optimizer_name(loaded)
    _check_losses_and_metrics(loaded)
