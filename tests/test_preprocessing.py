"""Preprocessing layers adapted on the training data, one-hot labels, per-feature scale.

The fast tests load configs only; the slow ones train tiny models in a subprocess
(and load the saved model in-process to look at what the layers learnt).
"""

from __future__ import annotations

import json
import signal
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_clean_error,
    assert_same_model,
    cli,
    keras_arrays,
    only_run,
    read_history,
    run_info,
)

from trainrun.config import load_config
from trainrun.errors import ConfigError

# ---------------------------------------------------------------- fast: the format


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


BASE = """\
model:
  layers:
    - Input: {shape: [3]}
    - Dense: {units: 2}
compile: {loss: mse}
"""


def test_scale_takes_one_divisor_per_feature(tmp_path):
    cfg = load_config(_write(tmp_path, BASE + "data: {scale: [255, 255, 1]}\n")).config
    assert cfg.data.scale == [255.0, 255.0, 1.0]


@pytest.mark.parametrize(
    ("scale", "needle"),
    [("[255, 0, 1]", "cannot be 0"), ("[]", "at least one"), ("[255, .nan]", "finite")],
)
def test_scale_list_is_checked(tmp_path, scale, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, BASE + f"data: {{scale: {scale}}}\n"))
    assert needle in str(exc.value)
    assert "scale" in str(exc.value)


def test_one_hot_keys_load(tmp_path):
    cfg = load_config(_write(tmp_path, BASE + "data: {one_hot: true, num_classes: 3}\n")).config
    assert cfg.data.one_hot is True and cfg.data.num_classes == 3


def test_misspelt_one_hot_is_answered_with_the_key(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, BASE + "data: {one_hott: true}\n"))
    assert "did you mean 'one_hot'" in str(exc.value)


def test_num_classes_needs_one_hot(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, BASE + "data: {num_classes: 3}\n"))
    assert "one_hot" in str(exc.value)


# ---------------------------------------------------------------- slow: training


def _assets(run: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(run / "model.keras") as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.startswith("assets/")}


def _fit(cfg: Path, runs: Path, *extra: str, env: dict | None = None):
    before = set(runs.iterdir()) if runs.exists() else set()
    r = cli("fit", cfg, "--runs-dir", runs, *extra, env=env)
    after = set(runs.iterdir()) if runs.exists() else set()
    new = after - before
    return r, (new.pop() if new else None)


NORMALIZATION = """\
seed: 1
data:
  source: numpy
  train: {path: train.npz}
  scale: [255, 255, 1]
  validation_split: 0.2
  limit: {train: 500}
model:
  layers:
    - Input: {shape: [3]}
    - Normalization
    - Dense: {units: 1}
compile: {loss: mse}
fit: {epochs: 1, batch_size: 50}
"""


@pytest.mark.slow
def test_normalization_adapts_on_scaled_training_samples_only(tmp_path):
    rng = np.random.default_rng(0)
    n = 600
    # After scale, every feature has mean 50 and std 10 in the first 400 samples (the
    # training part of limit 500 with validation_split 0.2); samples 400-499 (validation)
    # and 500+ (beyond the limit) are far off, so adapting on them would show.
    x = rng.normal(50, 10, size=(n, 3)).astype("float32")
    x[400:] += 1000.0
    x[:, :2] *= 255.0
    y = rng.normal(size=(n, 1)).astype("float32")
    np.savez(tmp_path / "train.npz", x=x, y=y)
    cfg = _write(tmp_path, NORMALIZATION)
    r, run = _fit(cfg, tmp_path / "runs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "adapted normalization on 400 training samples" in r.stdout
    arrays = keras_arrays(run / "model.keras")
    mean = next(v for k, v in arrays.items() if k.endswith("normalization/vars/0"))
    var = next(v for k, v in arrays.items() if k.endswith("normalization/vars/1"))
    scaled = x[:400] / np.array([255, 255, 1], "float32")
    np.testing.assert_allclose(mean, scaled.mean(axis=0), rtol=1e-4)
    normalized = (scaled - mean) / np.sqrt(var)
    assert np.all(np.abs(normalized.mean(axis=0)) < 1e-3)
    assert np.all(np.abs(normalized.std(axis=0) - 1) < 1e-3)


@pytest.mark.slow
def test_scale_list_must_match_the_last_axis(tmp_path):
    np.savez(tmp_path / "train.npz", x=np.ones((10, 3), "float32"), y=np.ones((10, 1), "float32"))
    cfg = _write(tmp_path, NORMALIZATION.replace("[255, 255, 1]", "[255, 1]"))
    r, _ = _fit(cfg, tmp_path / "runs")
    assert_clean_error(r, "data.scale", "2 divisors", "3 features")


def _texts(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    filler = ["the", "film", "was", "really", "quite", "a", "plot", "story"]
    words = {0: ["bad", "awful", "boring"], 1: ["good", "great", "fine"]}
    y = rng.integers(0, 2, size=n)
    x = [
        " ".join([*rng.choice(filler, 3), rng.choice(words[int(label)]), *rng.choice(filler, 2)])
        for label in y
    ]
    return np.array(x), y.astype("int64")


TEXT = """\
seed: 3
data:
  source: numpy
  train: {x: x_train.npy, y: y_train.npy}
  test: {x: x_test.npy, y: y_test.npy}
model:
  layers:
    - Input: {shape: [], dtype: string}
    - TextVectorization: {max_tokens: 40, output_sequence_length: 8}
    - Embedding: {input_dim: 40, output_dim: 8}
    - GlobalAveragePooling1D
    - Dense: {units: 2, activation: softmax}
compile: {optimizer: {Adam: {learning_rate: 0.02}}, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
fit: {epochs: 6, batch_size: 32}
"""


@pytest.mark.slow
def test_text_classification_from_npy_strings(tmp_path):
    rng = np.random.default_rng(0)
    x, y = _texts(rng, 400)
    assert x.dtype.kind == "U"
    np.save(tmp_path / "x_train.npy", x)
    np.save(tmp_path / "y_train.npy", y)
    xt, yt = _texts(rng, 100)
    np.save(tmp_path / "x_test.npy", xt)
    np.save(tmp_path / "y_test.npy", yt)
    r, run = _fit(_write(tmp_path, TEXT), tmp_path / "runs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "adapted text_vectorization on 400 training samples" in r.stdout
    assert float(read_history(run)[-1]["accuracy"]) > 0.9
    vocab = next(iter(_assets(run).values())).decode().splitlines()
    assert {"good", "bad", "the"} <= set(vocab)
    ev = cli("evaluate", run)  # model.keras carries the vocabulary
    assert ev.returncode == 0, ev.stdout + ev.stderr
    # predict takes text for a text model, and numbers are refused for it
    pr = cli("predict", run, tmp_path / "x_test.npy", "--out", tmp_path / "p.npy")
    assert pr.returncode == 0, pr.stdout + pr.stderr
    probs = np.load(tmp_path / "p.npy")
    assert probs.shape == (100, 2) and float(np.mean(probs.argmax(1) == yt)) > 0.9
    np.save(tmp_path / "numbers.npy", np.zeros((3, 4), np.float32))
    assert_clean_error(cli("predict", run, tmp_path / "numbers.npy"), "text")


GRAPH = """\
seed: 5
deterministic: true
data:
  source: numpy
  train: {path: train.npz, x: {num: num, text: text, cat: cat}}
  validation_split: 0.25
model:
  inputs:
    num: {shape: [4]}
    text: {shape: [], dtype: string}
    cat: {shape: [1], dtype: string}
  graph:
    - {name: norm, layer: Normalization, input: num}
    - {name: vec, layer: {TextVectorization: {max_tokens: 30, output_sequence_length: 6}}, input: text}
    - {name: emb, layer: {Embedding: {input_dim: 30, output_dim: 4}}, input: vec}
    - {name: pool, layer: GlobalAveragePooling1D, input: emb}
    - {name: lookup, layer: StringLookup, input: cat}
    - {name: cat_emb, layer: {Embedding: {input_dim: 8, output_dim: 2}}, input: lookup}
    - {name: cat_flat, layer: Flatten, input: cat_emb}
    - {name: bins, layer: {Discretization: {num_bins: 4}}, input: num}
    - {name: bins_f, layer: {CategoryEncoding: {num_tokens: 4, output_mode: multi_hot}}, input: bins}
    - {name: joined, layer: Concatenate, input: [norm, pool, cat_flat, bins_f]}
    - {name: hidden, layer: {Dense: {units: 8, activation: relu}}, input: joined}
    - {name: out, layer: {Dense: {units: 2, activation: softmax}}, input: hidden}
  outputs: out
compile: {optimizer: adam, loss: sparse_categorical_crossentropy}
fit: {epochs: 3, batch_size: 16}
outputs: {state_every: 1}
callbacks:
  - killer:KillAt
"""


def _graph_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    text, y = _texts(rng, 160)
    num = rng.normal(20, 5, size=(160, 4)).astype("float32")
    cat = rng.choice(["red", "green", "blue", "grey"], size=(160, 1))
    np.savez(tmp_path / "train.npz", num=num, text=text, cat=cat, y=y)


@pytest.mark.slow
def test_resume_after_kill_restores_adapted_state_bitwise(tmp_path):
    fixtures = Path(__file__).parent / "resume_fixtures"
    (tmp_path / "killer.py").write_text((fixtures / "killer.py").read_text())
    _graph_data(tmp_path)
    cfg = _write(tmp_path, GRAPH)
    runs = tmp_path / "runs"
    r, baseline = _fit(cfg, runs, "--name", "base")
    assert r.returncode == 0, r.stdout + r.stderr
    for layer in ("norm", "vec", "lookup", "bins"):
        assert f"adapted {layer} on 120 training samples" in r.stdout
    r, run = _fit(cfg, runs, "--name", "killed", env={"KILL_AT": "1:3"})
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    resumed = cli("resume", run)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "adapted" not in resumed.stdout  # restored from state/, never adapted again
    assert run_info(run)["status"] == "completed"
    assert_same_model(run, baseline)
    assert _assets(run) == _assets(baseline)
    assert _assets(run)  # the vocabularies are in the saved model
    assert _bin_boundaries(run) == _bin_boundaries(baseline)
    assert len(_bin_boundaries(run)) == 3


def _bin_boundaries(run: Path) -> list[float]:
    config = json.loads(zipfile.ZipFile(run / "model.keras").read("config.json"))
    (layer,) = [lay for lay in config["config"]["layers"] if lay["class_name"] == "Discretization"]
    return layer["config"]["bin_boundaries"]


@pytest.mark.slow
def test_preprocessing_layer_deeper_in_the_graph_is_refused(tmp_path):
    _graph_data(tmp_path)
    text = GRAPH.replace(
        "    - {name: norm, layer: Normalization, input: num}\n",
        "    - {name: pre, layer: {Dense: {units: 4}}, input: num}\n"
        "    - {name: norm, layer: Normalization, input: pre}\n",
    ).replace("callbacks:\n  - killer:KillAt\n", "")
    r, run = _fit(_write(tmp_path, text), tmp_path / "runs")
    assert_clean_error(r, "model.graph[1]", "Normalization", "directly on a model input")
    assert run is None


ONE_HOT = """\
seed: 2
data: {source: mnist, flatten: true, scale: 255.0, one_hot: true, limit: {train: 300, test: 100}}
model:
  layers:
    - Input: {shape: [784]}
    - Dense: {units: 10, activation: softmax}
compile: {loss: categorical_crossentropy, metrics: [categorical_accuracy]}
fit: {epochs: 1, batch_size: 50}
"""


@pytest.mark.slow
def test_one_hot_labels_for_categorical_crossentropy(tmp_path):
    runs = tmp_path / "runs"
    r, run = _fit(_write(tmp_path, ONE_HOT), runs)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "categorical_accuracy" in read_history(run)[0]
    ev = cli("evaluate", only_run(runs))
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert "categorical_accuracy" in ev.stdout


@pytest.mark.slow
def test_one_hot_labels_beyond_the_classes_are_refused(tmp_path):
    text = ONE_HOT.replace("units: 10", "units: 5")
    r, run = _fit(_write(tmp_path, text), tmp_path / "runs")
    assert_clean_error(r, "data.one_hot", "up to 9", "5 classes")
    assert run is None
    r, run = _fit(
        _write(tmp_path, text.replace("one_hot: true", "one_hot: true, num_classes: 12")),
        tmp_path / "runs",
    )
    assert_clean_error(r, "12")
