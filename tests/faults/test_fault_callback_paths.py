"""Callback paths stay inside the run directory unless the user wrote an absolute one.

A relative path that leaves the run directory with '..' is a config error found
before anything is created; an absolute path never overwrites what is there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SMALL, assert_clean_error, cli, only_run

from trainrun.config import load_config
from trainrun.errors import ConfigError

BASE = """\
name: t
seed: 1
data: {source: mnist, flatten: true, scale: 255.0, validation_split: 0.2}
model:
  layers:
    - Input: {shape: [784]}
    - Dense: {units: 10, activation: softmax}
compile:
  loss: sparse_categorical_crossentropy
callbacks:
"""


def config(tmp_path: Path, callback: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(BASE + f"  - {callback}\n")
    return path


@pytest.mark.parametrize(
    ("callback", "key"),
    [
        ("ModelCheckpoint: {filepath: ../../x/x.keras}", "ModelCheckpoint.filepath"),
        ("CSVLogger: {filename: a/../../x.csv}", "CSVLogger.filename"),
        ("TensorBoard: {log_dir: ..}", "TensorBoard.log_dir"),
        ("BackupAndRestore: {backup_dir: ./../b}", "BackupAndRestore.backup_dir"),
    ],
)
def test_relative_path_leaving_the_run_dir_is_refused(tmp_path, callback, key):
    with pytest.raises(ConfigError) as e:
        load_config(config(tmp_path, callback))
    msg = str(e.value)
    assert f"callbacks[0].{key} in " in msg and "cfg.yaml line 11" in msg, msg
    assert "leaves the run directory" in msg, msg


@pytest.mark.parametrize(
    "callback",
    [
        "ModelCheckpoint: {filepath: ckpt/../best.keras}",
        "ModelCheckpoint: {filepath: 'c/{epoch}/../e{epoch:02d}.keras'}",
        "CSVLogger: {filename: ./log.csv}",
        "TensorBoard: {log_dir: tb}",
    ],
)
def test_relative_path_inside_the_run_dir_is_accepted(tmp_path, callback):
    load_config(config(tmp_path, callback))


def test_relative_path_from_set_names_the_option(tmp_path):
    cfg = config(tmp_path, "ModelCheckpoint: {filepath: m.keras}")
    with pytest.raises(ConfigError) as e:
        load_config(cfg, ["callbacks.0.ModelCheckpoint.filepath=../m.keras"])
    assert "(from --set callbacks.0.ModelCheckpoint.filepath=../m.keras)" in str(e.value)


def test_escaping_path_creates_nothing(tmp_path):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    cfg = config(work, "ModelCheckpoint: {filepath: ../../x/d/x.keras}")
    result = cli("fit", cfg, "--runs-dir", "runs", *SMALL, cwd=work)
    assert_clean_error(result, "callbacks[0].ModelCheckpoint.filepath", "leaves the run directory")
    assert not (tmp_path / "x").exists()
    assert not (work / "x").exists()
    assert not (work / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("callback", "existing", "needle"),
    [
        ("ModelCheckpoint: {{filepath: {d}/x.keras}}", "x.keras", "x.keras exists already"),
        ("CSVLogger: {{filename: {d}/existing.csv}}", "existing.csv", "existing.csv exists"),
        (
            "ModelCheckpoint: {{filepath: '{d}/ep{{epoch:02d}}.keras'}}",
            "ep01.keras",
            "ep01.keras",
        ),
        ("TensorBoard: {{log_dir: {d}}}", "events.out", "is not empty"),
        ("CSVLogger: {{filename: {d}/no/such/dir/x.csv}}", None, "does not exist"),
    ],
    ids=["checkpoint", "csv", "checkpoint-template", "tensorboard", "missing-dir"],
)
def test_absolute_path_never_overwrites(tmp_path, callback, existing, needle):
    outside = tmp_path / "outside"
    outside.mkdir()
    if existing:
        (outside / existing).write_text("precious")
    cfg = config(tmp_path, callback.format(d=outside))
    result = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL)
    assert_clean_error(result, "callbacks[0].", "cfg.yaml line 11", needle)
    if existing:
        assert (outside / existing).read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ([existing] if existing else [])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_absolute_paths_are_written_and_resume_keeps_them(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        BASE
        + f"  - ModelCheckpoint: {{filepath: {outside}/best.keras}}\n"
        + f"  - CSVLogger: {{filename: {outside}/log.csv}}\n"
        + f"  - TensorBoard: {{log_dir: {outside}/tb}}\n"
    )
    runs = tmp_path / "runs"
    result = cli("fit", cfg, "--runs-dir", runs, *SMALL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p.name for p in outside.iterdir()} == {"best.keras", "log.csv", "tb"}
    # The run's own files outside it are no reason to refuse continuing it.
    result = cli("resume", only_run(runs), "--epochs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len((outside / "log.csv").read_text().splitlines()) == 4  # header + 3 epochs
