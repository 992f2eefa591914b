"""Provenance: what made a run is recorded at its start; resume refuses when it changed;
reproduce trains again with the saved code; diff and show print it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_clean_error, cli, run_info

from trainrun.config import load_config
from trainrun.runs import provenance
from trainrun.runs.provenance import HashCache, changes, code_entries, config_hash, data_files
from trainrun.runs.record import RunRecord

CALLBACK = """
import keras


class Noted(keras.callbacks.Callback):
    pass
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _numpy_config(tmp_path: Path, **extra: str) -> Path:
    import numpy as np

    np.savez(tmp_path / "train.npz", x=np.zeros((8, 3), "float32"), y=np.zeros(8, "int64"))
    np.save(tmp_path / "val_x.npy", np.zeros((4, 3), "float32"))
    _write(tmp_path / "my_cbs.py", "class Noted:\n    pass\n")
    _write(tmp_path / "pkg" / "__init__.py", "")
    _write(tmp_path / "pkg" / "losses.py", "def mine(y, p):\n    return y\n")
    return _write(
        tmp_path / "cfg.yaml",
        """
seed: 1
data:
  source: numpy
  train: {path: train.npz, x: x, y: y}
  validation: {x: val_x.npy, y: val_x.npy}
model:
  layers: [{Input: {shape: [3]}}, {Dense: 2}]
  initial_weights: init.weights.h5
compile: {loss: "pkg.losses:mine", optimizer: "yaml:SafeLoader"}
callbacks: ["my_cbs:Noted"]
""",
    )


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRAINRUN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _record_of(loaded, cfg: Path) -> RunRecord:
    text = cfg.read_text()
    return RunRecord.new(provenance=provenance.collect(loaded, text)), text


# ---------------------------------------------------------------- fast: no TensorFlow


def test_record_keeps_provenance_and_refuses_a_wrong_type():
    record = RunRecord.from_json({"id": "a", "provenance": {"config": {"sha256": "x"}}})
    assert record.provenance == {"config": {"sha256": "x"}}
    assert record.to_json()["provenance"] == {"config": {"sha256": "x"}}
    odd = RunRecord.from_json({"provenance": [1, 2]})
    assert odd.provenance == {}
    assert odd.to_json()["provenance"] == [1, 2]  # kept as it was


def test_config_hash_ignores_epochs_and_name_only():
    base = "name: a\nseed: 1\nfit: {epochs: 3, batch_size: 32}\n"
    assert config_hash(base) == config_hash(base.replace("epochs: 3", "epochs: 9"))
    assert config_hash(base) == config_hash(base.replace("name: a", "name: b"))
    assert config_hash(base) != config_hash(base.replace("batch_size: 32", "batch_size: 64"))


def test_data_files_of_a_numpy_config(tmp_path, cache_dir):
    loaded = load_config(_numpy_config(tmp_path))
    files = data_files(loaded)
    assert files == {
        "data.train.path": tmp_path / "train.npz",
        "data.validation.x": tmp_path / "val_x.npy",
        "data.validation.y": tmp_path / "val_x.npy",
        "model.initial_weights": tmp_path / "init.weights.h5",
    }


def test_folder_and_csv_sources_are_data(tmp_path):
    _write(tmp_path / "imgs" / "a" / "1.png", "x")
    _write(tmp_path / "t.csv", "a,b\n1,2\n")
    loaded = load_config(
        _write(
            tmp_path / "f.yaml",
            "data: {source: image_folder, image_folder: {directory: imgs}}\n"
            "model: {layers: [{Dense: 1}]}\n",
        )
    )
    assert data_files(loaded) == {"data.image_folder.directory": tmp_path / "imgs"}
    loaded = load_config(
        _write(
            tmp_path / "c.yaml",
            "data: {source: csv, train: {path: t.csv, label: b}}\nmodel: {layers: [{Dense: 1}]}\n",
        )
    )
    assert data_files(loaded) == {"data.train.path": tmp_path / "t.csv"}


def test_code_is_found_without_importing_and_only_the_users_own(tmp_path):
    _numpy_config(tmp_path)
    names = provenance.module_names(
        load_config(tmp_path / "cfg.yaml").config.model_dump(mode="json")
    )
    assert sorted(names) == ["my_cbs", "pkg.losses", "yaml"]
    code = code_entries(names, tmp_path)
    assert sorted(code) == ["my_cbs", "pkg", "pkg.losses"]  # yaml is in site-packages
    assert code["pkg.losses"]["copy"] == "code/pkg/losses.py"
    assert code["pkg"]["copy"] == "code/pkg/__init__.py"
    assert "my_cbs" not in sys.modules and "pkg" not in sys.modules


def test_a_file_is_read_once_then_trusted_by_size_and_mtime(tmp_path, cache_dir):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(provenance.CACHED_FROM + 10))
    cache = HashCache()
    first = provenance.file_entry(big, None, cache)
    cache.save()
    assert cache.hashed == [str(big)]
    # The run's own record: nothing read.
    again = HashCache()
    assert provenance.file_entry(big, first, again) == first and again.hashed == []
    # A new run on the same large file: the user cache answers, nothing read.
    fresh = HashCache()
    assert provenance.file_entry(big, None, fresh)["sha256"] == first["sha256"]
    assert fresh.hashed == []
    # Same size, new bytes and mtime: read again, and the hash says so.
    data = bytearray(big.read_bytes())
    data[0] ^= 0xFF
    big.write_bytes(bytes(data))
    os.utime(big, ns=(first["mtime_ns"] + 10**9, first["mtime_ns"] + 10**9))
    changed = provenance.file_entry(big, first, HashCache())
    assert changed["sha256"] != first["sha256"]


def test_a_folder_is_rehashed_only_when_its_manifest_moves(tmp_path, cache_dir):
    folder = tmp_path / "imgs"
    _write(folder / "cat" / "1.png", "one")
    _write(folder / "dog" / "2.png", "two")
    first = provenance.file_entry(folder, None, HashCache())
    assert first["files"] == 2 and first["folder"]
    quiet = HashCache()
    assert provenance.file_entry(folder, first, quiet)["sha256"] == first["sha256"]
    assert quiet.hashed == []
    _write(folder / "dog" / "3.png", "three")
    assert provenance.file_entry(folder, first, HashCache())["sha256"] != first["sha256"]


def test_changes_name_what_moved_and_nothing_else(tmp_path, cache_dir, monkeypatch):
    cfg = _numpy_config(tmp_path)
    record, text = _record_of(load_config(cfg), cfg)
    assert record.provenance["code"]["my_cbs"]["sha256"].startswith("sha256:")
    assert changes(tmp_path, record, text) == []

    reads = []
    real = provenance._sha256_file
    monkeypatch.setattr(provenance, "_sha256_file", lambda p, d=None: reads.append(p) or real(p, d))
    assert changes(tmp_path, record, text) == []
    assert [p for p in reads if p.suffix != ".py"] == []  # unchanged data is not read again

    _write(tmp_path / "my_cbs.py", "class Noted:\n    x = 1\n")
    import numpy as np

    np.save(tmp_path / "val_x.npy", np.ones((4, 3), "float32"))
    record.provenance["environment"]["versions"]["numpy"] = "0.0.1"
    found = changes(tmp_path, record, text.replace("seed: 1", "seed: 2"))
    whats = [c.what for c in found]
    assert whats == [
        "numpy",
        "config.yaml",
        "data.validation.x (val_x.npy)",
        "data.validation.y (val_x.npy)",
        "code my_cbs (my_cbs.py)",
    ], found
    assert found[0].then == "0.0.1"


def test_the_backend_compared_is_the_configs_not_the_environments(
    tmp_path, cache_dir, monkeypatch
):
    # resume checks before Keras is imported, so KERAS_BACKEND is not yet set: the
    # present backend is the one the run's config.yaml names.
    cfg = _numpy_config(tmp_path)
    cfg.write_text(cfg.read_text() + "backend: jax\n")
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    record, text = _record_of(load_config(cfg), cfg)
    assert record.provenance["environment"]["backend"] == "jax"
    assert "jax" in record.provenance["environment"]["versions"]
    monkeypatch.delenv("KERAS_BACKEND")
    assert changes(tmp_path, record, text) == []
    as_tf = changes(tmp_path, record, text.replace("backend: jax", "backend: tensorflow"))
    assert "backend" in [c.what for c in as_tf], as_tf


def test_diff_names_config_keys_provenance_and_best(tmp_path):
    def fake_run(name: str, batch: int, numpy: str, value: float) -> Path:
        run = tmp_path / name
        _write(run / "config.yaml", f"name: x\nfit: {{epochs: 2, batch_size: {batch}}}\n")
        prov = {"environment": {"versions": {"numpy": numpy, "python": "3.11"}}, "seconds": 0.1}
        best = {"monitor": "val_loss", "value": value, "epoch": 2, "mode": "min"}
        _write(
            run / "run.json",
            json.dumps({"id": name, "status": "completed", "best": best, "provenance": prov}),
        )
        return run

    a, b = fake_run("a", 32, "2.0", 0.25), fake_run("b", 64, "2.1", 0.5)
    r = cli("diff", a, b)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.split() == ["fit.batch_size", "32", "64"] for line in lines), r.stdout
    assert any(line.split() == ["environment.versions.numpy", "2.0", "2.1"] for line in lines), (
        r.stdout
    )
    assert not any("python" in line or "seconds" in line for line in lines), r.stdout
    assert "val_loss 0.2500 @ 2" in r.stdout and "val_loss 0.5000 @ 2" in r.stdout


# ---------------------------------------------------------------- slow: real runs

TINY = """
name: tiny
seed: 3
deterministic: true
data: {source: mnist, flatten: true, scale: 255.0, validation_split: 0.25, limit: {train: 512}}
model:
  layers: [{Input: {shape: [784]}}, {Dense: {units: 8, activation: relu}}, {Dense: {units: 10, activation: softmax}}]
compile: {optimizer: adam, loss: sparse_categorical_crossentropy, steps_per_execution: 4}
fit: {epochs: 1, batch_size: 64}
outputs: {tensorboard: false}
callbacks: ["my_cbs:Noted"]
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, dict]:
    work = tmp_path_factory.mktemp("prov")
    _write(work / "my_cbs.py", CALLBACK)
    _write(work / "tiny.yaml", TINY)
    env = {"TRAINRUN_CACHE_DIR": str(work / "cache")}
    r = cli("fit", work / "tiny.yaml", "--runs-dir", work / "runs", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    (run,) = (work / "runs").iterdir()
    return work, run, env


@pytest.mark.slow
def test_fit_records_provenance_and_copies_code(trained):
    work, run, _ = trained
    prov = run_info(run)["provenance"]
    assert prov["environment"]["versions"]["keras"]
    assert prov["environment"]["versions"]["tensorflow"]
    assert prov["data"]["data.mnist"]["path"].endswith("mnist.npz")
    assert prov["code"]["my_cbs"]["file"] == str(work / "my_cbs.py")
    assert (run / "code" / "my_cbs.py").read_text() == CALLBACK
    assert prov["seconds"] < 1.0
    r = cli("show", run)
    assert "provenance" in r.stdout and "code my_cbs" in r.stdout, r.stdout


@pytest.mark.slow
def test_changed_code_refuses_resume_and_reproduce_uses_the_copy(trained):
    work, run, env = trained
    _write(work / "my_cbs.py", "raise RuntimeError('the user edited this file')\n")
    before = (run / "run.json").read_bytes()
    started = time.perf_counter()
    r = cli("resume", run, "--epochs", "2", env=env)
    took = time.perf_counter() - started
    assert_clean_error(r, "--allow-changed", "bitwise", "code my_cbs")
    assert "then" in r.stderr and "now" in r.stderr
    assert (run / "run.json").read_bytes() == before
    assert took < 8, took  # refused before TensorFlow is imported

    r = cli("reproduce", run, "--out-dir", work / "again", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verdict: equal (bitwise)" in r.stdout, r.stdout

    _write(work / "my_cbs.py", CALLBACK + "# a comment\n")
    r = cli("resume", run, "--epochs", "2", "--allow-changed", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "code my_cbs" in r.stderr
    (entry,) = run_info(run)["resumes"]
    assert entry["changed"][0]["what"] == "code my_cbs (my_cbs.py)"


@pytest.mark.slow
def test_reproduce_says_where_a_run_differs(trained, tmp_path):
    work, run, env = trained
    copy = tmp_path / "tampered"
    shutil.copytree(run, copy)
    history = (copy / "history.csv").read_text().splitlines()
    header, row = history[0].split(","), history[1].split(",")
    row[header.index("loss")] = "9.5"
    history[1] = ",".join(row)
    (copy / "history.csv").write_text("\n".join(history) + "\n")
    r = cli("reproduce", copy, "--out-dir", tmp_path / "out", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "verdict: different (bitwise): first at history.csv epoch 0, loss: 9.5" in r.stdout, (
        r.stdout
    )
