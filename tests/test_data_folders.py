"""Data where users keep it: `source: image_folder`, `text_folder` and `csv`.

The folder sources list, label and split files as Keras'
image_dataset_from_directory / text_dataset_from_directory do, and read them
into memory, so a killed run resumes bitwise like MNIST does. Each test makes
its own tiny data in tmp_path.
"""

from __future__ import annotations

import json
import shutil
import signal
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, cli, read_history, run_info

FIXTURES = Path(__file__).parent / "resume_fixtures"


# ---------------------------------------------------------------- tiny data


def make_images(root: Path, classes=("cat", "dog"), per_class: int = 12, seed: int = 0) -> Path:
    """PNGs of varied sizes (so resizing matters), one shade per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            shade = 40 + 160 * k / max(len(classes) - 1, 1)
            pixels = np.clip(rng.normal(shade, 30, (10 + i % 4, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


def make_texts(root: Path, per_class: int = 12) -> Path:
    words = {"neg": "awful bad dull ", "pos": "great good fine "}
    for name, text in words.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i:02d}.txt").write_text(text * (i % 5 + 1))
    return root


def make_csv(path: Path, rows: int = 40, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).round(4)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    lines = ["a,b,c,target", *(f"{a},{b},{c},{t}" for (a, b, c), t in zip(x, y, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


IMAGE_YAML = """\
    seed: 5
    deterministic: true
    data:
      source: image_folder
      scale: 255.0
      image_folder: {directory: imgs, image_size: [8, 8], validation_split: 0.25, seed: 11}
    model:
      layers:
        - Input: {shape: [8, 8, 3]}
        - Flatten
        - Dense: {units: 8, activation: relu}
        - Dropout: 0.2
        - Dense: {units: 2, activation: softmax}
    compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
    fit: {epochs: 3, batch_size: 4}
    outputs: {state_every: 1, tensorboard: false}
    callbacks: [killer:KillAt]
"""

TEXT_YAML = """\
    seed: 5
    deterministic: true
    data:
      source: text_folder
      text_folder: {directory: texts, validation_split: 0.25, max_length: 30}
    model:
      layers:
        - Input: {shape: [], dtype: string}
        - TextVectorization: {output_mode: multi_hot, vocabulary: [awful, bad, dull, great, good, fine]}
        - Dense: {units: 2, activation: softmax}
    compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
    fit: {epochs: 3, batch_size: 4}
    outputs: {state_every: 1, tensorboard: false}
    callbacks: [killer:KillAt]
"""

CSV_YAML = """\
    seed: 5
    deterministic: true
    data:
      source: csv
      train: {path: table.csv, label: target, columns: [a, b]}
      validation_split: 0.25
    model:
      layers:
        - Input: {shape: [2]}
        - Dense: {units: 8, activation: relu}
        - Dense: {units: 2, activation: softmax}
    compile: {optimizer: adam, loss: sparse_categorical_crossentropy, metrics: [accuracy]}
    fit: {epochs: 3, batch_size: 4}
    outputs: {state_every: 1, tensorboard: false}
    callbacks: [killer:KillAt]
"""


def project(tmp_path: Path, yaml_text: str) -> Path:
    """A folder with the config, its data and the kill helper; returns the config."""
    make_images(tmp_path / "imgs")
    make_texts(tmp_path / "texts")
    make_csv(tmp_path / "table.csv")
    shutil.copy(FIXTURES / "killer.py", tmp_path / "killer.py")
    return write(tmp_path / "cfg.yaml", yaml_text)


def fit(cfg: Path, name: str, *extra: str, env: dict | None = None):
    runs = cfg.parent / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    r = cli("fit", cfg, "--runs-dir", runs, "--name", name, *extra, env=env)
    new = set(runs.iterdir()) - before if runs.exists() else set()
    return r, (new.pop() if new else None)


# ---------------------------------------------------------------- config errors (fast)


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (
            ["--set", "data.image_folder.imgae_size=[8,8]"],
            ["data.image_folder.imgae_size", "did you mean 'image_size'"],
        ),
        (
            ["--set", "data.image_folder.batch_size=32"],
            ["data.image_folder", "'batch_size'", "fit.batch_size"],
        ),
        (
            ["--set", "data.image_folder.directory=nowhere"],
            ["data.image_folder.directory", "directory not found", "nowhere"],
        ),
        (
            ["--set", "data.image_folder.test_directory=table.csv"],
            ["data.image_folder.test_directory", "not a directory"],
        ),
        (
            ["--set", "data.validation_split=0.2"],
            ["data", "validation_split inside image_folder"],
        ),
        (
            ["--set", "data.train.path=x.npz"],
            ["data", "remove 'train'"],
        ),
        (
            ["--set", "data.image_folder.color_mode=grey"],
            ["data.image_folder.color_mode", "grayscale"],
        ),
        (
            ["--set", "data.image_folder.validation_directory=imgs"],
            ["data.image_folder", "validation_split or validation_directory"],
        ),
        (
            ["--set", "data.image_folder.image_size=[8,8,3]"],
            ["data.image_folder.image_size", "height and width", "[8, 8, 3]"],
        ),
        (
            ["--set", "data.source=text_folder"],
            ["data", "'image_folder' is read only with source: image_folder"],
        ),
    ],
    ids=[
        "misspelt-key",
        "keras-batch_size",
        "directory-missing",
        "test-directory-a-file",
        "data-validation_split",
        "train-split",
        "color_mode",
        "two-validations",
        "image_size-3",
        "section-of-other-source",
    ],
)
def test_image_folder_config_errors(tmp_path, change, needles):
    config_error(project(tmp_path, IMAGE_YAML), change, needles)


def config_error(cfg: Path, change: list[str], needles: list[str]) -> None:
    """The error `trainrun fit` would print, found in-process (no TensorFlow import)."""
    from trainrun.config import load_config
    from trainrun.errors import ConfigError
    from trainrun.precheck import precheck

    with pytest.raises(ConfigError) as info:
        precheck(load_config(cfg, change[1::2]))
    for needle in needles:
        assert needle in str(info.value)


def test_config_error_is_one_clean_line_and_no_run(tmp_path):
    cfg = project(tmp_path, IMAGE_YAML)
    r, run = fit(cfg, "bad", "--set", "data.image_folder.imgae_size=8")
    assert_clean_error(r, "data.image_folder.imgae_size", "did you mean 'image_size'")
    assert run is None


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (["--set", "data.train.path=missing.csv"], ["data.train.path", "file not found"]),
        (["--set", "data.train.x=a"], ["data", "path, label and columns", "x"]),
        (["--set", "data.train.label=null"], ["data", "label: COLUMN"]),
        (["--set", "data.test.label=target"], ["data", "'test' needs 'path: file.csv'"]),
    ],
    ids=["missing-file", "numpy-key", "no-label", "split-without-path"],
)
def test_csv_config_errors(tmp_path, change, needles):
    config_error(project(tmp_path, CSV_YAML), change, needles)


def test_text_folder_refuses_scale(tmp_path):
    config_error(project(tmp_path, TEXT_YAML), ["--set", "data.scale=255"], ["strings", "'scale'"])


# ---------------------------------------------------------------- loading (TensorFlow in-process)


def _loaded(cfg: Path, *overrides: str):
    from trainrun.config import load_config, with_seed

    return with_seed(load_config(cfg, overrides))


@pytest.mark.slow
@pytest.mark.parametrize("label_mode", ["int", "categorical", "binary"])
def test_image_folder_matches_keras(tmp_path, label_mode):
    import keras

    from trainrun.data import build_data

    cfg = project(tmp_path, IMAGE_YAML)
    data = build_data(_loaded(cfg, f"data.image_folder.label_mode={label_mode}"))
    train, val = keras.utils.image_dataset_from_directory(
        tmp_path / "imgs",
        label_mode=label_mode,
        image_size=(8, 8),
        validation_split=0.25,
        subset="both",
        seed=11,
        batch_size=None,
        verbose=False,
    )
    # Keras shuffles its training subset again per epoch; the files are the same set.
    assert len(data.train) == len(train.file_paths) == 18
    # Its validation subset is not shuffled: same files, same order, same pixels and labels.
    kx, ky = (np.stack(a) for a in zip(*val.as_numpy_iterator(), strict=True))
    assert data.validation.x.dtype == np.uint8
    assert data.validation.x.shape == kx.shape == (6, 8, 8, 3)
    assert np.abs(data.validation.x.astype(np.float32) - kx).max() <= 0.5  # rounded to uint8
    assert data.validation.y.dtype == ky.dtype
    assert np.array_equal(data.validation.y, ky)
    train_labels = sorted(map(tuple, np.reshape(data.train.y, (18, -1)).tolist()))
    keras_labels = sorted(map(tuple, np.reshape([y for _, y in train], (18, -1)).tolist()))
    assert train_labels == keras_labels


@pytest.mark.slow
def test_image_folder_test_directory_grayscale_and_binary_refused(tmp_path):
    from trainrun.data import build_data
    from trainrun.errors import ConfigError

    cfg = project(tmp_path, IMAGE_YAML)
    make_images(tmp_path / "more", per_class=3, seed=1)
    data = build_data(
        _loaded(
            cfg,
            "data.image_folder.test_directory=more",
            "data.image_folder.color_mode=grayscale",
            "data.image_folder.crop_to_aspect_ratio=true",
        )
    )
    assert data.test.x.shape == (6, 8, 8, 1)
    assert data.train.x.shape == (18, 8, 8, 1)
    make_images(tmp_path / "three", classes=("a", "b", "c"), per_class=2)
    with pytest.raises(ConfigError, match="exactly 2 classes"):
        build_data(
            _loaded(cfg, "data.image_folder.directory=three", "data.image_folder.label_mode=binary")
        )
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not a png")
    from trainrun.errors import DataError

    with pytest.raises(DataError, match="broken.png"):
        build_data(_loaded(cfg))


@pytest.mark.slow
def test_text_folder_matches_keras(tmp_path):
    import keras

    from trainrun.data import build_data

    cfg = project(tmp_path, TEXT_YAML)
    data = build_data(_loaded(cfg, "data.text_folder.seed=3"))
    train, val = keras.utils.text_dataset_from_directory(
        tmp_path / "texts",
        max_length=30,
        validation_split=0.25,
        subset="both",
        seed=3,
        batch_size=None,
        verbose=False,
    )
    texts, labels = zip(*val.as_numpy_iterator(), strict=True)
    assert list(data.validation.x) == list(texts)
    assert np.array_equal(data.validation.y, np.array(labels))
    assert sorted(data.train.x) == sorted(t for t, _ in train.as_numpy_iterator())
    assert max(len(t) for t in data.train.x) == 30


@pytest.mark.slow
def test_csv_reads_columns_and_names_a_bad_cell(tmp_path):
    from trainrun.data import build_data
    from trainrun.errors import ConfigError

    cfg = project(tmp_path, CSV_YAML)
    data = build_data(_loaded(cfg))
    table = np.loadtxt(tmp_path / "table.csv", delimiter=",", skiprows=1)
    assert data.train.x.dtype == np.float32 and data.train.y.dtype == np.int64
    assert np.array_equal(data.train.x, table[:30, :2].astype(np.float32))
    assert np.array_equal(data.validation.y, table[30:, 3].astype(np.int64))
    lines = (tmp_path / "table.csv").read_text().splitlines()
    lines[7] = "0.5,,1,0"
    (tmp_path / "table.csv").write_text("\n".join(lines))
    with pytest.raises(ConfigError, match="line 8, column 'b': an empty cell is not a number"):
        build_data(_loaded(cfg))


# ---------------------------------------------------------------- kill and resume (trains)


def _same_final_weights(run: Path, baseline: Path) -> None:
    from test_resume import assert_same_run

    assert_same_run(run, baseline)


@pytest.mark.slow
@pytest.mark.parametrize(
    "yaml_text", [IMAGE_YAML, TEXT_YAML, CSV_YAML], ids=["image_folder", "text_folder", "csv"]
)
def test_killed_run_resumes_bitwise(tmp_path, yaml_text):
    cfg = project(tmp_path, yaml_text)
    r, baseline = fit(cfg, "baseline")
    assert r.returncode == 0, r.stdout + r.stderr
    r, run = fit(cfg, "killed", env={"KILL_AT": "1:2"})
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    resumed = cli("resume", run)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_info(run)["status"] == "completed"
    _same_final_weights(run, baseline)


@pytest.mark.slow
def test_evaluate_rebuilds_the_same_validation_files(tmp_path):
    # Without image_folder.seed the split is keyed by the run's seed, which
    # config.yaml records: evaluate must pick the same 6 validation files.
    cfg = project(tmp_path, IMAGE_YAML)
    r, run = fit(cfg, "eval", "--set", "data.image_folder.seed=null", "--set", "seed=9")
    assert r.returncode == 0, r.stdout + r.stderr
    ev = cli("evaluate", run, "--split", "validation")
    assert ev.returncode == 0, ev.stdout + ev.stderr
    got = json.loads((run / "eval.json").read_text())
    assert got["samples"] == 6
    last = read_history(run)[-1]
    assert got["metrics"]["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-5)
