"""Values that must be refused before training: one `error:` line, exit 2, key and range named.

Each case once got through to TensorFlow (an OverflowError or ResourceExhausted
traceback, a run that trains on NaN, `epochs: true` training one epoch). All are
answered by the config checks, before TensorFlow is imported: most cases run
those checks in-process (fast), and a sample runs `trainrun` itself to show the
user sees one clean line.
"""

from __future__ import annotations

import pytest
from conftest import CONFIGS, assert_clean_error, cli

from trainrun.config import load_config
from trainrun.errors import ConfigError
from trainrun.precheck import precheck

MLP = CONFIGS / "mnist_mlp.yaml"


def refusal(*sets: str, config=MLP) -> str:
    """The message the config checks answer `trainrun validate/fit --set ...` with."""
    with pytest.raises(ConfigError) as caught:
        precheck(load_config(config, list(sets)))
    assert caught.value.exit_code == 2
    return caught.value.message


def assert_refused_early(message: str, *needles: str) -> None:
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"


def validate(*sets: str, config=MLP):
    args = [a for s in sets for a in ("--set", s)]
    return cli("validate", config, *args, timeout=120)


@pytest.mark.parametrize(
    ("setting", "needles"),
    [
        ("fit.batch_size=1e29", ["fit.batch_size", "whole number from 1 to", "1e+29"]),
        ("fit.batch_size=1e18", ["fit.batch_size", "whole number from 1 to"]),
        ("fit.batch_size=99999999999999999999", ["fit.batch_size", "from 1 to"]),
        ("fit.batch_size=64.5", ["fit.batch_size", "whole number"]),
        ("fit.epochs=true", ["fit.epochs", "whole number from 1 to", "got True"]),
        ("fit.epochs=false", ["fit.epochs", "whole number"]),
        ("fit.steps_per_epoch=true", ["fit.steps_per_epoch", "whole number"]),
        ("fit.validation_batch_size=true", ["fit.validation_batch_size", "whole number"]),
        ("compile.steps_per_execution=true", ["compile.steps_per_execution", "whole number"]),
        ("seed=true", ["seed", "whole number from 0 to"]),
        ("data.limit.train=true", ["data.limit.train", "whole number"]),
        ("outputs.state_every=true", ["outputs.state_every", "whole number"]),
        ("data.reshape=[28, true]", ["data.reshape", "whole number"]),
    ],
)
def test_counts_are_whole_numbers_in_range(setting, needles):
    assert_refused_early(refusal(setting), *needles)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400"])
def test_learning_rate_must_be_finite(value):
    r = refusal(f"compile.optimizer.RMSprop.learning_rate={value}")
    assert_refused_early(r, "compile.optimizer.RMSprop.learning_rate", "finite number")


@pytest.mark.parametrize(
    ("setting", "needles", "config"),
    [
        (
            "compile.optimizer={Adam: {learning_rate: {ExponentialDecay: "
            "{initial_learning_rate: .nan, decay_steps: 10, decay_rate: 0.9}}}}",
            ["compile.optimizer.Adam.learning_rate.ExponentialDecay.initial_learning_rate"],
            MLP,
        ),
        (
            "compile.optimizer.RMSprop.clipnorm=.inf",
            ["compile.optimizer.RMSprop.clipnorm"],
            MLP,
        ),
        (
            "callbacks.0.LearningRateScheduler.schedule.piecewise.values=[1.0e-3, .nan, 1.0e-4]",
            ["callbacks[0].LearningRateScheduler.schedule.piecewise.values[1]"],
            CONFIGS / "lr_schedule.yaml",
        ),
        (
            "callbacks.0.EarlyStopping.min_delta=.nan",
            ["callbacks[0].EarlyStopping.min_delta"],
            CONFIGS / "early_stopping.yaml",
        ),
        (
            "model.layers.1.Dense.kernel_regularizer={L2: {l2: .inf}}",
            ["model.layers[1].Dense.kernel_regularizer.L2.l2"],
            MLP,
        ),
    ],
)
def test_float_arguments_must_be_finite(setting, needles, config):
    assert_refused_early(refusal(setting, config=config), *needles, "finite number")


@pytest.mark.parametrize(
    ("setting", "needles"),
    [
        ("fit.class_weight={0: .nan}", ["fit.class_weight", "finite number >= 0"]),
        ("fit.class_weight={0: .inf}", ["fit.class_weight", "finite number >= 0"]),
        ("fit.class_weight={0: true}", ["fit.class_weight", "finite number >= 0"]),
        ("data.scale=.nan", ["data.scale", "finite number"]),
        ("data.scale=-.inf", ["data.scale", "finite number"]),
        ("data.validation_split=.nan", ["data.validation_split", "0 to"]),
        ("compile.loss_weights=[.nan]", ["compile.loss_weights", "finite number"]),
    ],
)
def test_typed_floats_must_be_finite(setting, needles):
    assert_refused_early(refusal(setting), *needles)


@pytest.mark.parametrize("value", ["1e11", "10.5", "true", "0", "-3"])
def test_layer_units_must_be_a_positive_whole_number(value):
    r = refusal(f"model.layers.1.Dense.units={value}")
    assert_refused_early(r, "model.layers[1].Dense.units", "whole number >= 1")


@pytest.mark.parametrize(
    ("setting", "needles"),
    [
        ("model.layers.1.Dense.units=100000000000", ["model.layers[1]", "Dense", "GiB", "memory"]),
        # Sized by its input (64 units before it), not by its own units alone.
        ("model.layers.2.Dense.units=4000000000", ["model.layers[2]", "GiB", "memory"]),
    ],
)
def test_a_layer_too_big_for_memory_is_refused(setting, needles):
    assert_refused_early(refusal(setting), *needles)


@pytest.mark.parametrize(
    ("setting", "needles"),
    [
        ("fit.batch_size=1e29", ["fit.batch_size", "from 1 to", "1e+29"]),
        ("compile.optimizer.RMSprop.learning_rate=.nan", ["learning_rate", "finite number"]),
    ],
)
def test_the_user_sees_one_clean_line_before_tensorflow(setting, needles):
    r = validate(setting)
    assert_clean_error(r, *needles)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Model:" not in r.stdout, "the model was built: the check came too late"


def test_fit_refuses_and_leaves_no_run(tmp_path):
    runs = tmp_path / "runs"
    r = cli("fit", MLP, "--set", "data.scale=.nan", "--runs-dir", runs, timeout=120)
    assert_clean_error(r, "data.scale", "finite number")
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize(
    "setting",
    [
        "fit.batch_size=128",
        "compile.optimizer.RMSprop.learning_rate=1e-4",
        "data.scale=255",  # an int where a float is expected stays fine
        "fit.class_weight={0: 1, 1: 2.5}",
        "model.layers.1.Dense.units=128",
    ],
)
def test_sound_values_still_pass_the_config_checks(setting):
    precheck(load_config(MLP, [setting]))


@pytest.mark.slow  # builds the model: imports TensorFlow
def test_a_layer_the_estimate_does_not_know_still_gets_a_clean_error():
    """Layers precheck cannot size are caught when TensorFlow fails to allocate them."""
    huge = '{EinsumDense: {equation: "ab,bc->ac", output_shape: 100000000000}}'
    r = validate(f"model.layers.1={huge}")
    assert_clean_error(r, "model", "does not fit in memory", "784,100000000000")
