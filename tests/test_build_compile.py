"""compile: --set paths into the optimizer (fast, no Keras), and what compile_args builds (slow)."""

from __future__ import annotations

import pytest
from conftest import assert_clean_error, cli

from trainrun.config import load_config
from trainrun.errors import ConfigError

CONFIG = """\
seed: 1
data: {{source: mnist, flatten: true, scale: 255.0, limit: {{train: 256, test: 64}}}}
model:
  layers:
    - Input: {{shape: [784]}}
    - Dense: {{units: 10, activation: softmax}}
compile:
{compile}
fit: {{epochs: 1}}
outputs: {{tensorboard: false, state: false}}
"""


def write(tmp_path, compile_section: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(CONFIG.format(compile=compile_section))
    return path


# ---------------------------------------------------------------- --set compile.optimizer.*


@pytest.mark.parametrize(
    ("optimizer", "sets", "expected"),
    [
        # bare name: the class level is added, named as Keras' class
        ("rmsprop", ["compile.optimizer.learning_rate=3e-4"], {"RMSprop": {"learning_rate": 3e-4}}),
        ("adam", ["compile.optimizer.learning_rate=0.01"], {"Adam": {"learning_rate": 0.01}}),
        ("SGD", ["compile.optimizer.momentum=0.9"], {"SGD": {"momentum": 0.9}}),
        # {Class: {...}}: the path skips the class level
        (
            "{RMSprop: {learning_rate: 0.001, rho: 0.8}}",
            ["compile.optimizer.learning_rate=3e-4"],
            {"RMSprop": {"learning_rate": 3e-4, "rho": 0.8}},
        ),
        ("{SGD: {}}", ["compile.optimizer.momentum=0.9"], {"SGD": {"momentum": 0.9}}),
        ("{SGD: null}", ["compile.optimizer.momentum=0.9"], {"SGD": {"momentum": 0.9}}),
        # the full path keeps working, on a mapping and on a bare name
        (
            "{RMSprop: {learning_rate: 0.001}}",
            ["compile.optimizer.RMSprop.learning_rate=3e-4"],
            {"RMSprop": {"learning_rate": 3e-4}},
        ),
        ("RMSprop", ["compile.optimizer.RMSprop.rho=0.8"], {"RMSprop": {"rho": 0.8}}),
        ("rmsprop", ["compile.optimizer.RMSprop.rho=0.8"], {"RMSprop": {"rho": 0.8}}),
        # a schedule as the learning rate, below the parameter
        (
            "sgd",
            ["compile.optimizer.learning_rate.ExponentialDecay.decay_steps=10"],
            {"SGD": {"learning_rate": {"ExponentialDecay": {"decay_steps": 10}}}},
        ),
        # an import path keeps its name
        (
            "my_opts:Fast",
            ["compile.optimizer.learning_rate=0.5"],
            {"my_opts:Fast": {"learning_rate": 0.5}},
        ),
        # replacing the optimizer, then setting its parameter
        (
            "rmsprop",
            ["compile.optimizer=adam", "compile.optimizer.beta_1=0.8"],
            {"Adam": {"beta_1": 0.8}},
        ),
    ],
)
def test_set_optimizer_parameter(tmp_path, optimizer, sets, expected):
    cfg = write(tmp_path, f"  optimizer: {optimizer}\n  loss: sparse_categorical_crossentropy")
    assert load_config(cfg, sets).config.compile.optimizer == expected


def test_set_optimizer_parameter_without_optimizer_key(tmp_path):
    cfg = write(tmp_path, "  loss: sparse_categorical_crossentropy")
    loaded = load_config(cfg, ["compile.optimizer.learning_rate=3e-4"])
    assert loaded.config.compile.optimizer == {"RMSprop": {"learning_rate": 3e-4}}


def test_set_optimizer_other_class_is_refused_clearly(tmp_path):
    cfg = write(tmp_path, "  optimizer: adam\n  loss: sparse_categorical_crossentropy")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, ["compile.optimizer.SGD.momentum=0.9"])
    msg = str(e.value)
    assert "--set compile.optimizer.SGD.momentum=0.9" in msg
    assert "adam" in msg and "--set compile.optimizer=SGD" in msg


@pytest.mark.slow
def test_set_optimizer_parameter_error_names_the_option(tmp_path):
    """A misspelt parameter set this way is answered naming --set (trainrun validate)."""
    cfg = write(tmp_path, "  optimizer: rmsprop\n  loss: sparse_categorical_crossentropy")
    result = cli("validate", cfg, "--set", "compile.optimizer.learnin_rate=0.1", cwd=tmp_path)
    assert_clean_error(
        result, "learnin_rate", "did you mean 'learning_rate'", "--set compile.optimizer"
    )

