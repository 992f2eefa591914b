"""Preprocessing layers that learn from data, adapted on the training split before fit.

`Normalization`, `Discretization`, `TextVectorization`, `StringLookup` and
`IntegerLookup` learn their state with `layer.adapt(data)`, which a Keras user
calls before `fit`; a layer given that state in its arguments (`mean`/`variance`,
`bin_boundaries`, `vocabulary`), or holding it already (a saved model,
`initial_weights`), is left as it is. A layer is adapted on exactly what it sees
in training: the model input it takes, after trainrun's flatten / reshape /
scale, over the training split (after `validation_split` and `data.limit`).

What a layer learnt must survive resume unchanged: Normalization's mean and
variance are variables, saved with the model's others in state/; a vocabulary or
bin boundaries are not, so `adapted_state` gives them for the state's meta.json
and `restore_adapted` puts them back (a resumed run never adapts again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from trainrun import keras_compat
from trainrun.config import LoadedConfig
from trainrun.data.feed import Feed
from trainrun.errors import RunDirError
from trainrun.registry import split_component

_L = keras.layers
ADAPTABLE = (
    _L.Normalization,
    _L.Discretization,
    _L.TextVectorization,
    _L.StringLookup,
    _L.IntegerLookup,
)


@dataclass
class Adaptable:
    layer: Any
    input_name: str | None  # the model input it takes: a key of a dict x (None: the only input)
    where: tuple  # its key path in the config


def _vocabulary_layer(layer: Any) -> bool:
    return isinstance(layer, _L.TextVectorization | _L.StringLookup | _L.IntegerLookup)


def holds_state(layer: Any) -> bool:
    """Whether `layer` has its state already: given in its arguments, or loaded."""
    if isinstance(layer, _L.Normalization):
        if layer.input_mean is not None:
            return True
        if not layer.built or not hasattr(layer, "adapt_mean"):
            return False
        mean, var = np.asarray(layer.adapt_mean), np.asarray(layer.adapt_variance)
        return bool(np.any(mean != 0) or np.any(var != 1))  # not the initial zeros / ones
    if isinstance(layer, _L.Discretization):
        return layer.bin_boundaries is not None
    if _vocabulary_layer(layer):
        return bool(
            keras_compat.has_input_vocabulary(layer)
            or layer.get_vocabulary(include_special_tokens=False)
        )
    return True


def _layer_paths(loaded: LoadedConfig, model: Any) -> dict[int, tuple]:
    """id(layer) -> its key path in the config (Sequential items, graph nodes)."""
    m = loaded.config.model
    paths: dict[int, tuple] = {}
    if m.layers is not None:
        items = [i for i, spec in enumerate(m.layers) if split_component(spec)[0] != "Input"]
        for layer, i in zip(model.layers, items, strict=False):
            paths[id(layer)] = ("model", "layers", i)
    elif m.graph is not None:
        nodes = {node.name: j for j, node in enumerate(m.graph)}
        for layer in model.layers:
            if layer.name in nodes:
                paths[id(layer)] = ("model", "graph", nodes[layer.name])
    return paths


def _input_of(model: Any, layer: Any) -> tuple[bool, str | None]:
    """(whether `layer` takes a model input as it is, that input's name)."""
    if isinstance(model, keras.Sequential):
        return model.layers and model.layers[0] is layer, None
    ops = {
        id(op): op for op in map(keras_compat.producing_layer, keras_compat.inbound_tensors(layer))
    }
    if len(ops) != 1:
        return False, None
    (op,) = ops.values()
    if not isinstance(op, _L.InputLayer):
        return False, None
    return True, op.name


def find_adaptable(loaded: LoadedConfig, model: Any) -> list[Adaptable]:
    """The model's layers that need adapting; a config error for one trainrun cannot adapt."""
    paths = _layer_paths(loaded, model)
    found = []
    for layer in model.layers:
        if not isinstance(layer, ADAPTABLE) or holds_state(layer):
            continue
        where = paths.get(id(layer), ("model",))
        kind = type(layer).__name__
        direct, name = _input_of(model, layer)
        if not direct:
            raise loaded.error(
                f"{kind} layer '{layer.name}' learns from the data (adapt), but it is not "
                "directly on a model input, and trainrun adapts only layers that take a "
                "model input as it is: apply it to an input, or give what it would learn "
                "in its arguments (mean and variance, vocabulary, bin_boundaries)",
                where,
            )
        if _vocabulary_layer(layer):
            lookup = keras_compat.lookup_layer(layer)
            if lookup.output_mode != "int" and not lookup.pad_to_max_tokens:
                raise loaded.error(
                    f"{kind} layer '{layer.name}' with output_mode {lookup.output_mode} has "
                    "one output per vocabulary entry, but the vocabulary is learnt after the "
                    "model is built: set max_tokens and pad_to_max_tokens: true, so its "
                    "output size is known",
                    where,
                )
        found.append(Adaptable(layer, name, where))
    return found


def adapt_layers(items: list[Adaptable], feed: Feed) -> list[str]:
    """Adapt each layer on the training data it sees; returns one line per layer."""
    lines = []
    for item in items:
        x, n = feed.training_x(item.input_name)
        item.layer.adapt(x)
        lines.append(f"adapted {item.layer.name} on {n:,} training samples")
    return lines


def _plain(values: Any) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def adapted_state(items: list[Adaptable]) -> dict[str, dict[str, Any]]:
    """What each adapted layer learnt that is not a variable, for the state's meta.json."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        layer = item.layer
        entry: dict[str, Any] = {"class": type(layer).__name__}
        if isinstance(layer, _L.Discretization):
            entry["bin_boundaries"] = _plain(layer.bin_boundaries)
        elif _vocabulary_layer(layer):
            lookup = keras_compat.lookup_layer(layer)
            entry["vocabulary"] = _plain(layer.get_vocabulary(include_special_tokens=True))
            if lookup.output_mode == "tf_idf":
                entry["idf_weights"] = np.asarray(lookup.idf_weights_const).tolist()
        out[layer.name] = entry
    return out


def restore_adapted(items: list[Adaptable], saved: Any) -> None:
    """Put back what the layers learnt when the run started (after the variables)."""
    saved = saved if isinstance(saved, dict) else {}
    for item in items:
        layer = item.layer
        if isinstance(layer, _L.Normalization):
            layer.finalize_state()  # its mean and variance were just assigned
            continue
        entry = saved.get(layer.name)
        if not isinstance(entry, dict) or entry.get("class") != type(layer).__name__:
            raise RunDirError(
                f"the saved state has nothing for the adapted {type(layer).__name__} layer "
                f"'{layer.name}', so resuming would train with a different one; does "
                "config.yaml still describe this run?"
            )
        if isinstance(layer, _L.Discretization):
            layer.bin_boundaries = list(entry["bin_boundaries"])
        else:
            idf = entry.get("idf_weights")
            layer.set_vocabulary(
                entry["vocabulary"], idf_weights=None if idf is None else np.asarray(idf)
            )
