"""Config loading, validation, --set overrides and the resolved config. No Keras here."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from trainrun.config import dump_config, load_config, with_seed
from trainrun.config.loader import read_yaml
from trainrun.errors import ConfigError

MINIMAL = """\
name: t
model:
  layers:
    - Input: {shape: [4]}
    - Dense: {units: 2}
compile:
  loss: mse
callbacks:
  - EarlyStopping: {monitor: loss, patience: 1}
  - TerminateOnNaN
"""


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(MINIMAL)
    return path


def test_defaults_are_filled_and_typed(cfg):
    loaded = load_config(cfg)
    c = loaded.config
    assert c.fit.epochs == 1 and c.fit.batch_size == 32
    assert c.compile.optimizer == "rmsprop"
    assert c.callbacks[1] == "TerminateOnNaN"
    assert c.callbacks[0] == {"EarlyStopping": {"monitor": "loss", "patience": 1}}
    assert c.base_dir == str(cfg.parent.resolve())


def test_unknown_key_names_path_line_and_suggestion(cfg, tmp_path):
    cfg.write_text(
        MINIMAL.replace("compile:\n  loss: mse", "compile:\n  loss: mse\n  optimiser: adam")
    )
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert "compile.optimiser" in msg and "line 8" in msg and "did you mean 'optimizer'" in msg


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("fit.epochs=5", lambda c: c.fit.epochs == 5),
        ("compile.optimizer=adam", lambda c: c.compile.optimizer == "adam"),
        (
            "callbacks.0.EarlyStopping.patience=5",
            lambda c: c.callbacks[0]["EarlyStopping"]["patience"] == 5,
        ),
        (
            "callbacks.1.TerminateOnNaN.raise_error=true",
            lambda c: c.callbacks[1] == {"TerminateOnNaN": {"raise_error": True}},
        ),
        ("fit.class_weight={0: 1.0, 1: 2.5}", lambda c: c.fit.class_weight == {0: 1.0, 1: 2.5}),
        ("data.validation_split=0.1", lambda c: c.data.validation_split == 0.1),
    ],
)
def test_set_overrides(cfg, override, check):
    assert check(load_config(cfg, [override]).config)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("callbacks.5.EarlyStopping.patience=1", "index 5 is out of range; callbacks has 2 items"),
        ("fit.epoch=3", "unknown key 'epoch'; did you mean 'epochs'?"),
        ("fit.epochs=0", "fit.epochs"),
        ("fitepochs", "expected KEY=VALUE"),
        ("compile.loss.x=1", "single value"),
    ],
)
def test_bad_set_overrides(cfg, override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(cfg, [override])
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "the config is empty"),
        ("- a\n- b\n", "top level of a config must be a mapping"),
        ("model: {layers: [Dense\n", "YAML syntax error"),
        ("model: !!python/object/apply:os.system ['echo hi']\n", "no !!python tags"),
        ("model: {}\n", "describe the model"),
        ("model: {layers: [Dense]}\nfit: {batch_size: -1}\n", "fit.batch_size"),
        ("model: {layers: [Dense]}\ndata: {validation_split: 1.5}\n", "data.validation_split"),
        ("model: {layers: [Dense]}\nprecision: float64\n", "precision"),
        ("model: {layers: [Dense]}\nfit: {class_weight: {a: 1}}\n", "fit.class_weight"),
        ("model: {layers: [Dense]}\ncallbacks: [{A: 1, B: 2}]\n", "one 'Name: {args}' entry"),
    ],
)
def test_bad_files(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert needle in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_seed_is_chosen_and_written_back(cfg):
    loaded = with_seed(load_config(cfg))
    assert isinstance(loaded.config.seed, int)
    assert yaml.safe_load(dump_config(loaded))["seed"] == loaded.config.seed


def test_resolved_config_reproduces(cfg, tmp_path):
    loaded = with_seed(load_config(cfg, ["fit.epochs=3"]))
    out = tmp_path / "resolved.yaml"
    out.write_text(dump_config(loaded))
    again = load_config(out)
    assert again.config == loaded.config


def test_loading_and_prechecking_need_no_tensorflow(cfg):
    # In a fresh process: this one may have imported TensorFlow for other tests.
    code = (
        "import sys\n"
        "from trainrun.config import load_config\n"
        "from trainrun.precheck import precheck\n"
        "precheck(load_config(sys.argv[1], ['fit.epochs=2']))\n"
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(cfg)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("fit", "expected"),
    [
        ({"batch_size": 64}, 256),  # auto: 4x the training batch
        ({"batch_size": 512}, 1024),  # ... up to 1024
        ({"batch_size": 2048}, 2048),  # ... never below the training batch
        ({"batch_size": 64, "validation_steps": 5}, 64),  # steps keep their meaning
        ({"batch_size": 64, "validation_batch_size": 100}, 100),
    ],
)
def test_validation_batch_size(cfg, fit, expected):
    overrides = [f"fit.{key}={value}" for key, value in fit.items()]
    assert load_config(cfg, overrides).config.fit.eval_batch_size() == expected


def test_validation_batch_size_must_be_auto_or_positive(cfg):
    with pytest.raises(ConfigError, match="fit.validation_batch_size"):
        load_config(cfg, ["fit.validation_batch_size=0"])


def test_anchors_aliases_and_merge_keys_still_work(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text(
        "name: t\n"
        "model:\n"
        "  layers:\n"
        "    - Input: {shape: &shape [4]}\n"
        "    - Dense: &dense {units: 8, activation: relu}\n"
        "    - Dense: {<<: *dense, units: 2}\n"
        "    - Reshape: {target_shape: *shape}\n"
        "compile: {loss: mse}\n"
    )
    layers = load_config(path).config.model.layers
    assert layers[1] == {"Dense": {"units": 8, "activation": "relu"}}
    assert layers[2] == {"Dense": {"units": 2, "activation": "relu"}}
    assert layers[3] == {"Reshape": {"target_shape": [4]}}


def test_aliases_within_the_limit_expand(tmp_path):
    # Three levels of nine aliases: 729 values, far below the bound, still loads.
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 3)]
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    data, lines_of = read_yaml(path)
    assert len(data["a2"]) == 9 and data["a2"][0][0] == data["a0"]
    assert lines_of[("a2", 8, 8)] == 1  # an aliased value points at its anchor's line


@pytest.mark.parametrize("depth", [50, 99])
def test_nesting_within_the_limit_loads(tmp_path, depth):
    path = tmp_path / "c.yaml"
    path.write_text("x: " + "[" * depth + "]" * depth + "\n")
    assert read_yaml(path)[0]["x"] is not None


def test_too_deep_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nx: " + "[" * 101 + "]" * 101 + "\n")
    with pytest.raises(ConfigError, match=r"c\.yaml line 2: values nested more than 100"):
        read_yaml(path)
