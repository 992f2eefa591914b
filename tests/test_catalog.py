"""What trainrun reads from Keras' source without importing it, against the live registries.

If a Keras upgrade moves things, these fail: the fast checks would then miss
names (they fall back to the live check) or, worse, refuse valid ones.
"""

from __future__ import annotations

import pytest

from trainrun import catalog


@pytest.mark.slow  # imports Keras
@pytest.mark.parametrize("kind", ["loss", "metric"])
def test_every_name_keras_resolves_is_known_without_keras(kind):
    from keras.src import losses, metrics

    live = (losses if kind == "loss" else metrics).ALL_OBJECTS_DICT
    static = set(catalog.loss_or_metric_names(kind))
    bases = {"Loss", "LossFunctionWrapper", "Metric", "metric"}
    assert set(live) - bases <= static


@pytest.mark.slow  # imports Keras
@pytest.mark.parametrize(
    ("loss", "metric"),
    list(zip(catalog.COMPILE_ALIASES["loss"], catalog.COMPILE_ALIASES["metric"], strict=True)),
)
def test_aliases_compile_resolves_are_accepted(loss, metric):
    from conftest import CONFIGS, cli

    r = cli(
        "validate",
        CONFIGS / "mnist_mlp.yaml",
        "--set",
        f"compile.loss={loss}",
        "--set",
        f"compile.metrics.0={metric}",
    )
    assert r.returncode == 0, r.stderr
    assert "training will log: loss, " in r.stdout


# ---------------------------------------------------------------- parameter descriptions

# Parameters Keras' own docstring does not describe (checked: keras 3.15).
UNDOCUMENTED = {("OrbaxCheckpoint", "save_weights_only")}


@pytest.mark.parametrize("name", catalog.names("callback"))
def test_every_callback_parameter_has_a_short_description(name):
    sig = catalog.signature("callback", name)
    docs = catalog.param_docs("callback", name)
    missing = [p for p in sig.param_names if p not in docs and (name, p) not in UNDOCUMENTED]
    assert missing == []
    for param, text in docs.items():
        assert text and "\n" not in text and "`" not in text, (param, text)
        assert len(text) <= catalog.SHORT, (param, text)


def test_descriptions_are_the_first_sentence_of_keras_args():
    docs = catalog.param_docs("callback", "EarlyStopping")
    assert docs["patience"] == (
        "Number of epochs with no improvement after which training will be stopped."
    )
    # "i.e." does not end a sentence; a lone type word ("Float.") keeps the next one.
    assert docs["min_delta"].startswith("Minimum change in the monitored quantity")
    assert "i.e. an absolute change" in docs["min_delta"]
    assert catalog.param_docs("callback", "ReduceLROnPlateau")["factor"] == (
        "Float. Factor by which the learning rate will be reduced."
    )


def test_callbacks_command_shows_each_parameter_with_its_description():
    from conftest import cli

    r = cli("callbacks", "EarlyStopping")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[3:] if line.strip()}
    assert "default 0" in lines["patience"]
    assert "Number of epochs with no improvement" in lines["patience"]
    assert "Quantity to be monitored." in lines["monitor"]
    assert "'val_loss'" in lines["monitor"]


@pytest.mark.slow  # imports Keras
@pytest.mark.parametrize("name", catalog.names("callback"))
def test_descriptions_match_the_docstrings_keras_loads(name):
    import inspect
    import re

    import keras

    live = re.sub(r"\s+", " ", inspect.getdoc(getattr(keras.callbacks, name)) or "")
    live = live.replace("`", "")
    for param, text in catalog.param_docs("callback", name).items():
        assert f"{param}: {text.removesuffix('...')}" in live or (
            text.removesuffix("...") in live
        ), (param, text)
