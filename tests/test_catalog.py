"""What trainrun reads from Keras' source without importing it, against the live registries.

If a Keras upgrade moves things, these fail: the fast checks would then miss
names (they fall back to the live check) or, worse, refuse valid ones.
"""

from __future__ import annotations

import pytest

from trainrun import catalog

pytestmark = pytest.mark.slow  # imports Keras


@pytest.mark.parametrize("kind", ["loss", "metric"])
def test_every_name_keras_resolves_is_known_without_keras(kind):
    from keras.src import losses, metrics

    live = (losses if kind == "loss" else metrics).ALL_OBJECTS_DICT
    static = set(catalog.loss_or_metric_names(kind))
    bases = {"Loss", "LossFunctionWrapper", "Metric", "metric"}
    assert set(live) - bases <= static


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
