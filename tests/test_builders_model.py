"""Layers as a Keras user writes them: nested objects, shorthand, wrapped layers, backbones.

The fast tests read configs and Keras' source only (no TensorFlow); the slow
ones build the models with `trainrun.builders.model.build_model`.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from trainrun import catalog
from trainrun.config import load_config
from trainrun.errors import ConfigError
from trainrun.precheck import precheck

HEAD = """\
name: t
data: {source: mnist, flatten: true, scale: 255.0, limit: {train: 64}}
model:
  layers:
"""
TAIL = """\
compile: {optimizer: rmsprop, loss: sparse_categorical_crossentropy}
"""


def write(tmp_path: Path, *layers: str, extra: str = "") -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + "".join(f"    - {item}\n" for item in layers) + extra + TAIL)
    return path


def checked(path: Path):
    loaded = load_config(path)
    precheck(loaded)
    return loaded


def refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        checked(path)
    text = str(info.value)
    assert "\n" not in text, text
    return info.value


# ---------------------------------------------------------------- fast: no TensorFlow


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("Dropout: 0.5", {"Dropout": {"rate": 0.5}}),
        ("Dense: 10", {"Dense": {"units": 10}}),
        ("Reshape: [28, 28, 1]", {"Reshape": {"target_shape": [28, 28, 1]}}),
        ("Input: [784]", {"Input": {"shape": [784]}}),
        ("LeakyReLU: 0.1", {"LeakyReLU": {"negative_slope": 0.1}}),
        ("MaxPool2D: 2", {"MaxPool2D": {"pool_size": 2}}),
    ],
)
def test_positional_shorthand_fills_the_first_parameter(tmp_path, item, expected):
    loaded = checked(write(tmp_path, "Input: {shape: [784]}", item))
    assert loaded.config.model.layers[1] == expected


def test_positional_shorthand_in_a_graph_and_nested(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text(
        "model:\n"
        "  inputs: {x: {shape: [5, 3]}}\n"
        "  graph:\n"
        "    - {name: r, layer: {Bidirectional: {layer: {LSTM: 4}}}, input: x}\n"
        "    - {name: y, layer: {Dense: 2}, input: r}\n"
        "  outputs: y\n" + TAIL
    )
    loaded = checked(path)
    assert loaded.config.model.graph[1].layer == {"Dense": {"units": 2}}


def test_positional_shorthand_for_a_layer_without_parameters_is_refused(tmp_path):
    err = refused(write(tmp_path, "Input: {shape: [784]}", "Identity: 3"))
    assert "model.layers[1]" in str(err)
    assert "Identity" in str(err)
    assert "line 6" in str(err)


@pytest.mark.parametrize(
    "item",
    [
        "Rescaling: {scale: 0.0039}",
        "Dense: {units: 10, kernel_regularizer: {L2: {l2: 1.0e-4}}}",
        "Dense: {units: 10, kernel_regularizer: {L1L2: {l1: 1.0e-5, l2: 1.0e-4}}}",
        "Dense: {units: 10, kernel_regularizer: l2, bias_regularizer: {L2: 1.0e-3}}",
        "Dense: {units: 10, kernel_initializer: {HeNormal: {seed: 3}}, bias_initializer: zeros}",
        "Dense: {units: 10, kernel_initializer: he_normal}",
        "Dense: {units: 10, kernel_constraint: {MaxNorm: {max_value: 2}}}",
        "Dense: {units: 10, kernel_constraint: non_neg}",
        "Dense: {units: 10, activation: {LeakyReLU: {negative_slope: 0.1}}}",
        "Dense: {units: 10, activation: gelu, trainable: false}",
        "TimeDistributed: {layer: {Dense: {units: 8}}}",
        "Bidirectional: {layer: {LSTM: {units: 32}}}",
        "MobileNetV2: {include_top: false, weights: null, input_shape: [96, 96, 3]}",
        "MobileNetV2: {include_top: false, weights: null, trainable: false}",
    ],
)
def test_what_a_keras_user_writes_passes_the_checks(tmp_path, item):
    checked(write(tmp_path, "Input: {shape: [784]}", item))


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        (
            "Dense: {units: 10, kernel_regularizer: {L3: {l2: 1.0e-4}}}",
            ["model.layers[1].Dense.kernel_regularizer", "'L3'", "L1L2, L2", "line 6"],
        ),
        (
            "Dense: {units: 10, kernel_initializer: he_nromal}",
            ["model.layers[1].Dense.kernel_initializer", "did you mean 'he_normal'", "line 6"],
        ),
        (
            "Dense: {units: 10, kernel_constraint: {MaxNrom: {max_value: 2}}}",
            ["kernel_constraint", "did you mean 'MaxNorm'"],
        ),
        ("Dense: {units: 10, activation: rellu}", ["activation", "did you mean 'relu'"]),
        (
            "Bidirectional: {layer: {LSTN: {units: 8}}}",
            ["model.layers[1].Bidirectional.layer", "did you mean 'LSTM'", "line 6"],
        ),
        ("Dense: {activation: relu}", ["model.layers[1].Dense", "'units'", "line 6"]),
        ("Bidirectional: {layer: {LSTM: {}}}", ["Bidirectional.layer.LSTM", "'units'"]),
        ("MobileNetV22: {weights: null}", ["did you mean 'MobileNetV2'"]),
        ("MobileNetV2: {include_topp: false}", ["MobileNetV2.include_topp", "'include_top'"]),
        (
            "Dense: {units: 10, kernel_regularizer: {L2: {l3: 1.0}}}",
            ["kernel_regularizer.L2.l3", "it takes: l2"],
        ),
    ],
)
def test_mistakes_inside_a_layer_are_one_line_without_tensorflow(tmp_path, item, needles):
    err = str(refused(write(tmp_path, "Input: {shape: [784]}", item)))
    for needle in needles:
        assert needle in err, err


def test_application_names_are_read_from_source():
    names = catalog.names("application")
    assert {"MobileNetV2", "ResNet50", "EfficientNetB0"} <= set(names)
    sig = catalog.signature("application", "MobileNetV2")
    assert sig is not None
    assert "include_top" in sig.param_names
    assert catalog.required_params("application", "MobileNetV2") == []


def test_aliases_have_their_class_signature():
    assert catalog.signature("layer", "MaxPool2D").param_names[:1] == ["pool_size"]
    assert catalog.signature("initializer", "he_normal").param_names[:1] == ["seed"]
    assert catalog.required_params("layer", "Dense") == ["units"]
    assert catalog.required_params("layer", "Rescaling") == ["scale"]


def test_initial_weights_must_exist(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(
        HEAD + "    - Input: {shape: [784]}\n    - Dense: 10\n"
        "  initial_weights: runs/nothing/model.keras\n" + TAIL
    )
    err = str(refused(path))
    assert "model.initial_weights" in err
    assert "not found" in err


def test_json_schema_accepts_layer_shorthand():
    from trainrun.config.schema import json_schema

    layer = json_schema()["$defs"]["LayerComponent"]
    entry = layer["anyOf"][1]
    assert {"type": "number"} in entry["additionalProperties"]["anyOf"]
    assert {"type": "array"} in entry["additionalProperties"]["anyOf"]


# ---------------------------------------------------------------- slow: builds models


def _keras_layer_classes():
    import keras

    for name in catalog.names("layer"):
        cls = getattr(keras.layers, name, None)
        if inspect.isclass(cls) and issubclass(cls, keras.layers.Layer):
            yield name, cls


@pytest.mark.slow  # imports Keras
def test_required_arguments_match_every_layer_signature():
    """What trainrun demands of a layer is what its constructor cannot do without."""
    checked_any = 0
    for name, cls in _keras_layer_classes():
        sig = inspect.signature(cls.__init__)
        needed = [
            p.name
            for p in sig.parameters.values()
            if p.name != "self"
            and p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        assert catalog.required_params("layer", name) == needed, name
        checked_any += 1
    assert checked_any > 100


@pytest.mark.slow  # imports Keras
def test_required_arguments_match_every_application():
    import keras

    for name in catalog.names("application"):
        fn = getattr(keras.applications, name)
        needed = [p.name for p in inspect.signature(fn).parameters.values() if p.default is p.empty]
        assert catalog.required_params("application", name) == needed, name


def build(path: Path):
    from trainrun.builders.model import build_model

    return build_model(checked(path))


@pytest.mark.slow
def test_nested_objects_are_built_with_keras_get(tmp_path):
    import keras

    model = build(
        write(
            tmp_path,
            "Input: {shape: [784]}",
            "Rescaling: {scale: 0.0039}",
            "Dense: {units: 10, kernel_regularizer: {L2: {l2: 1.0e-4}}, "
            "kernel_initializer: {HeNormal: {seed: 3}}, kernel_constraint: {MaxNorm: {max_value: 2}}, "
            "bias_regularizer: {L1L2: {l1: 1.0e-5, l2: 1.0e-4}}, "
            "activation: {LeakyReLU: {negative_slope: 0.1}}}",
            "Dropout: 0.5",
            "Dense: {units: 10, activation: softmax, kernel_initializer: glorot_normal}",
        )
    )
    rescale, dense, dropout, out = model.layers
    assert rescale.scale == pytest.approx(0.0039)
    assert rescale.offset == 0.0
    assert isinstance(dense.kernel_regularizer, keras.regularizers.L2)
    assert dense.kernel_regularizer.l2 == pytest.approx(1.0e-4)
    assert isinstance(dense.bias_regularizer, keras.regularizers.L1L2)
    assert isinstance(dense.kernel_initializer, keras.initializers.HeNormal)
    assert dense.kernel_initializer.seed == 3
    assert isinstance(dense.kernel_constraint, keras.constraints.MaxNorm)
    assert dense.kernel_constraint.max_value == 2
    assert isinstance(dense.activation, keras.layers.LeakyReLU)
    assert dense.activation.negative_slope == pytest.approx(0.1)
    assert dropout.rate == 0.5
    assert isinstance(out.kernel_initializer, keras.initializers.GlorotNormal)
    # What was built is saved and loaded like any Keras model.
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert again.layers[1].activation.negative_slope == pytest.approx(0.1)


@pytest.mark.slow
def test_wrapped_layers_and_reshape_shorthand(tmp_path):
    import keras

    model = build(
        write(
            tmp_path,
            "Input: {shape: [784]}",
            "Reshape: [28, 28]",
            "Bidirectional: {layer: {LSTM: {units: 4, return_sequences: true}}}",
            "TimeDistributed: {layer: {Dense: {units: 8}}}",
            "Flatten",
            "Dense: 10",
        )
    )
    _, bi, td, _, dense = model.layers
    assert isinstance(bi.forward_layer, keras.layers.LSTM)
    assert bi.forward_layer.units == 4
    assert td.layer.units == 8
    assert dense.units == 10
    assert model.output_shape == (None, 10)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("Dropout: {rate: 2}", ["model.layers[1].Dropout", "rate", "line 6"]),
        ("Dropout: 2", ["model.layers[1].Dropout", "rate", "line 6"]),
        ("Bidirectional: {layer: {LSTM: {units: -4}}}", ["Bidirectional.layer.LSTM", "units"]),
    ],
)
def test_bad_values_are_one_line_with_the_place(tmp_path, item, needles):
    with pytest.raises(ConfigError) as info:
        build(write(tmp_path, "Input: {shape: [784]}", item, "Dense: 10"))
    text = str(info.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, text


@pytest.mark.slow
def test_application_backbone_frozen_and_fine_tuned(tmp_path):
    import keras
    import numpy as np

    first = tmp_path / "first.yaml"
    first.write_text(
        "model:\n  layers:\n"
        "    - Input: {shape: [32, 32, 3]}\n"
        "    - MobileNetV2: {include_top: false, weights: null, alpha: 0.35, pooling: avg, trainable: false}\n"
        "    - Dense: 3\n" + TAIL
    )
    model = build(first)
    backbone = model.layers[0]
    assert isinstance(backbone, keras.Model)
    assert backbone.trainable is False
    assert len(model.trainable_weights) == 2  # the head only
    model.save(tmp_path / "model.keras")

    second = tmp_path / "second.yaml"
    second.write_text(
        first.read_text()
        .replace(", trainable: false", "")
        .replace("model:\n", "model:\n  initial_weights: model.keras\n")
    )
    tuned = build(second)
    assert tuned.layers[0].trainable is True
    for a, b in zip(model.get_weights(), tuned.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_initial_weights_of_another_model_are_refused(tmp_path):
    import keras

    other = keras.Sequential([keras.Input((784,)), keras.layers.Dense(3)])
    other.save(tmp_path / "other.keras")
    path = tmp_path / "c.yaml"
    path.write_text(
        HEAD + "    - Input: {shape: [784]}\n    - Dense: 10\n"
        "  initial_weights: other.keras\n" + TAIL
    )
    with pytest.raises(ConfigError) as info:
        build(path)
    text = str(info.value)
    assert "\n" not in text
    assert "model.initial_weights" in text


@pytest.mark.slow  # imports Keras
@pytest.mark.parametrize("kind", ["initializer", "regularizer", "constraint", "activation"])
def test_every_name_keras_get_resolves_is_known_without_keras(kind):
    import importlib

    live = importlib.import_module(f"keras.src.{kind}s").ALL_OBJECTS_DICT
    bases = {"Initializer", "Regularizer", "Constraint", "initializer", "regularizer", "constraint"}
    assert set(live) - bases <= set(catalog.names(kind))
