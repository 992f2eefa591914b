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


# ---------------------------------------------------------------- what compile_args builds


def compiled(tmp_path, compile_section: str, sets=(), *, last_layer: str = "dense"):
    """(model, compile kwargs) for a config with this compile section, in this process."""
    from trainrun.builders.compile import compile_args
    from trainrun.builders.model import build_model

    # Named: in one process Keras numbers the default names (dense_1, dense_2, ...).
    sets = [*sets, f"model.layers.1.Dense.name={last_layer}"]
    loaded = load_config(write(tmp_path, compile_section), sets)
    model = build_model(loaded)
    return model, compile_args(loaded, model)


@pytest.mark.slow
def test_losses_and_metrics_with_arguments(tmp_path):
    import keras

    _, args = compiled(
        tmp_path,
        "  loss: {SparseCategoricalCrossentropy: {from_logits: true}}\n"
        "  metrics: [{AUC: {num_thresholds: 100}}, {TopKCategoricalAccuracy: {k: 3}},"
        " {SparseTopKCategoricalAccuracy: {k: 2}}, accuracy]",
    )
    loss = args["loss"]
    assert isinstance(loss, keras.losses.SparseCategoricalCrossentropy)
    assert loss.get_config()["from_logits"] is True
    auc, top3, sparse_top2, acc = args["metrics"]
    assert isinstance(auc, keras.metrics.AUC) and auc.num_thresholds == 100
    assert isinstance(top3, keras.metrics.TopKCategoricalAccuracy)
    assert top3.get_config()["k"] == 3
    assert sparse_top2.get_config()["k"] == 2
    assert acc == "accuracy"


@pytest.mark.slow
def test_optimizer_parameter_set_without_class_level_reaches_keras(tmp_path):
    _, args = compiled(
        tmp_path,
        "  optimizer: sgd\n  loss: sparse_categorical_crossentropy",
        ["compile.optimizer.learning_rate=3e-4", "compile.optimizer.momentum=0.9"],
    )
    opt = args["optimizer"]
    assert type(opt).__name__ == "SGD"
    assert opt.momentum == pytest.approx(0.9)
    assert float(opt.learning_rate) == pytest.approx(3e-4)


@pytest.mark.slow
def test_mappings_by_the_one_output_name_of_a_sequential_model(tmp_path):
    """A single-output model takes mappings keyed by its output (the last layer's name)."""
    import numpy as np

    model, args = compiled(
        tmp_path,
        "  loss: {dense: sparse_categorical_crossentropy}\n"
        "  metrics: {dense: [sparse_categorical_accuracy]}\n"
        "  loss_weights: {dense: 2.0}",
    )
    assert args["loss"] == "sparse_categorical_crossentropy"
    assert args["metrics"] == ["sparse_categorical_accuracy"]
    assert args["loss_weights"] == [2.0]
    model.compile(**args)
    logs = model.train_on_batch(np.zeros((4, 784)), np.zeros((4,)), return_dict=True)
    assert set(logs) == {"loss", "sparse_categorical_accuracy"}


ONE_HOT = """\
seed: 1
data:
  source: numpy
  train: {path: train.npz}
model:
  layers:
    - Input: {shape: [8]}
    - Dense: {units: 4}
compile:
  optimizer: adam
  loss: {CategoricalCrossentropy: {from_logits: true}}
  metrics: [{AUC: {num_thresholds: 100, from_logits: true}}, {TopKCategoricalAccuracy: {k: 3}}]
fit: {epochs: 1, batch_size: 16}
outputs: {tensorboard: false, state: false}
"""


@pytest.mark.slow
def test_fit_with_loss_and_metric_arguments(tmp_path):
    import numpy as np
    from conftest import only_run, read_history

    rng = np.random.default_rng(0)
    y = np.eye(4, dtype="float32")[rng.integers(0, 4, 64)]
    np.savez(tmp_path / "train.npz", x=rng.normal(size=(64, 8)).astype("float32"), y=y)
    (tmp_path / "c.yaml").write_text(ONE_HOT)
    result = cli("fit", "c.yaml", "--runs-dir", "runs", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = read_history(only_run(tmp_path / "runs"))
    assert {"auc", "top_k_categorical_accuracy"} <= set(row)
    assert 0.0 <= float(row["top_k_categorical_accuracy"]) <= 1.0
