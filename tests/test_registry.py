"""trainrun.registry: names in a config -> objects, parameters checked (no Keras import)."""

from __future__ import annotations

import sys

import pytest

from trainrun import catalog, registry
from trainrun.config import load_config
from trainrun.errors import ConfigError, UnknownNameError
from trainrun.precheck import precheck


def test_split_component_and_import_paths():
    assert registry.split_component("Dense") == ("Dense", {})
    assert registry.split_component({"Dense": {"units": 3}}) == ("Dense", {"units": 3})
    assert registry.split_component({"Flatten": None}) == ("Flatten", {})
    assert registry.is_import_path("my_layers:Big")
    assert not registry.is_import_path("Dense")


def test_import_object_finds_modules_beside_the_config(tmp_path):
    (tmp_path / "beside_cfg_mod.py").write_text("class Thing:\n    class Inner:\n        pass\n")
    before = list(sys.path)
    try:
        obj = registry.import_object("beside_cfg_mod:Thing.Inner", base_dir=tmp_path, what="layer")
        assert obj.__name__ == "Inner"
    finally:
        sys.modules.pop("beside_cfg_mod", None)
    assert sys.path == before  # the config's directory is on sys.path only while importing


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nocolon", "is not an import path; write it as module:attr"),
        ("no_such_module_xyz:Thing", "no module named 'no_such_module_xyz'"),
        ("json:dumpz", "module 'json' has no attribute 'dumpz'; did you mean"),
    ],
)
def test_import_object_errors_carry_the_key_path(tmp_path, spec, needle):
    with pytest.raises(ConfigError) as info:
        registry.import_object(spec, base_dir=tmp_path, what="loss", path="compile.loss")
    assert info.value.path == "compile.loss"
    assert needle in info.value.detail


def test_import_object_reports_a_module_that_fails_to_import(tmp_path):
    (tmp_path / "broken_cfg_mod.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError) as info:
        registry.import_object("broken_cfg_mod:X", base_dir=tmp_path, what="metric")
    assert "importing module 'broken_cfg_mod' for metric 'broken_cfg_mod:X' failed" in str(
        info.value
    )
    assert "RuntimeError: boom" in str(info.value)


class Base:
    def __init__(self, name=None, **kwargs):
        pass


class Child(Base):
    def __init__(self, units, use_bias=True, **kwargs):
        super().__init__(**kwargs)


class Closed:
    def __init__(self, rate):
        pass


def test_accepted_params_follow_kwargs_up_the_classes():
    assert registry.accepted_params(Child) == (["units", "use_bias", "name"], True)
    assert registry.accepted_params(Closed) == (["rate"], False)
    assert registry.accepted_params(lambda x, *, y=1: x) == (["x", "y"], False)


def test_check_params_names_the_key_and_suggests():
    registry.check_params(Closed, {"rate": 0.5}, what="layer 'Closed'")
    registry.check_params(Child, {"anything": 1}, what="layer 'Child'")  # open-ended: passes
    with pytest.raises(ConfigError) as info:
        registry.check_params(Closed, {"rat": 0.5}, what="layer 'Closed'", path="model.layers[0]")
    assert info.value.path == "model.layers[0].rat"
    assert info.value.detail == "unknown parameter 'rat' for layer 'Closed'; did you mean 'rate'?"
    with pytest.raises(ConfigError, match="it takes: rate"):
        registry.check_params(Closed, {"zzz": 1}, what="x")


@pytest.mark.parametrize(
    ("param", "kind"),
    [
        ("kernel_initializer", "initializer"),
        ("bias_regularizer", "regularizer"),
        ("recurrent_constraint", "constraint"),
        ("activation", "activation"),
        ("recurrent_activation", "activation"),
        ("layer", "layer"),
        ("backward_layer", "layer"),
        ("units", None),
    ],
)
def test_arg_kind(param, kind):
    assert registry.arg_kind(param) == kind


def test_layer_kind_and_shorthand():
    assert registry.layer_kind("Dense") == "layer"
    assert registry.layer_kind("MobileNetV2") == "application"
    assert registry.layer_kind("Dnse") is None
    assert registry.shorthand_args("layer", "Dense", 10) == {"units": 10}
    with pytest.raises(ValueError, match="unknown layer 'Dnse'; did you mean 'Dense'"):
        registry.shorthand_args("layer", "Dnse", 10)
    with pytest.raises(ValueError, match="must be a mapping"):
        registry.shorthand_args("layer", "m:Cls", 10)


def test_component_forms():
    assert registry.component("initializer", "he_normal") == ("he_normal", {})
    assert registry.component("regularizer", {"L2": {"l2": 0.1}}) == ("L2", {"l2": 0.1})
    assert registry.component("regularizer", {"L2": 0.1}) == ("L2", {"l2": 0.1})
    assert registry.component("layer", {"Dense": 4}) == ("Dense", {"units": 4})
    assert registry.component("initializer", 0.5) is None


def test_callback_names_are_keras_and_plugins():
    names = registry.callback_names()
    assert "EarlyStopping" in names and "CSVLogger" in names
    assert set(catalog.names("callback")) <= set(names)


@pytest.mark.parametrize(
    ("kind", "name", "text"),
    [
        (
            "callback",
            "EarlyStoping",
            "unknown callback 'EarlyStoping'; did you mean 'EarlyStopping'?",
        ),
        ("callback", "Zzzzzz", "unknown callback 'Zzzzzz'; see `trainrun callbacks`, or give"),
        ("layer", "Zzzzzz", "unknown layer 'Zzzzzz'; a keras.layers class, a keras.applications"),
        ("optimizer", "rmsprp", "unknown optimizer 'rmsprp'; did you mean 'RMSprop'?"),
        ("loss", "msee", "unknown loss 'msee'; did you mean 'mse'"),
        ("regularizer", "L3", "unknown regularizer 'L3'; known: L1, L1L2, L2"),
        ("activation", "Zzzzzz", "unknown activation 'Zzzzzz'; a keras.activations name"),
        (
            "learning-rate schedule",
            "ExponentialDecayy",
            "unknown learning-rate schedule 'ExponentialDecayy'; did you mean 'ExponentialDecay'",
        ),
    ],
)
def test_unknown_name_is_one_message_per_kind(kind, name, text):
    exc = registry.unknown_name(kind, name, path="here")
    assert isinstance(exc, UnknownNameError)
    assert str(exc).startswith(f"here: {text}"), str(exc)


def test_precheck_raises_the_registry_message(tmp_path):
    """The builders raise registry.unknown_name too: one message, before or after TensorFlow."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "data: {source: mnist}\nmodel:\n  layers:\n    - Dnse: {units: 10}\n"
        "compile: {optimizer: adam, loss: mse}\n"
    )
    with pytest.raises(UnknownNameError) as info:
        precheck(load_config(path))
    want = registry.unknown_name("layer", "Dnse", path="model.layers[0]")
    assert info.value.detail == want.detail
    assert str(info.value) == f"model.layers[0] in {path} line 4: {want.detail}"
