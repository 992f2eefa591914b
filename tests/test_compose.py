"""Config composition: `base:` files deep-merged, callbacks merged by name, --explain.

Everything but the last test reads configs without TensorFlow.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import yaml
from conftest import assert_clean_error, cli, only_run, read_history

from trainrun.config import dump_config, load_config
from trainrun.config.explain import explain
from trainrun.errors import ConfigError

COMMON = """\
name: common
model:
  layers:
    - Input: {shape: [4]}
    - Dense: {units: 2}
compile:
  loss: mse
  metrics: [mae]
fit:
  epochs: 3
  batch_size: 16
callbacks:
  - EarlyStopping: {monitor: loss, patience: 1}
  - TerminateOnNaN
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def common(tmp_path):
    return write(tmp_path, "common.yaml", COMMON)


def callbacks_of(loaded) -> list:
    return loaded.config.model_dump(mode="json")["callbacks"]


# ---------------------------------------------------------------- merging


def test_base_is_deep_merged_and_the_including_file_wins(tmp_path, common):
    main = write(tmp_path, "main.yaml", "base: common.yaml\nname: main\nfit: {epochs: 5}\n")
    c = load_config(main).config
    assert c.name == "main"
    assert (c.fit.epochs, c.fit.batch_size) == (5, 16)  # one key replaced, its sibling kept
    assert c.compile.loss == "mse"
    assert len(c.model.layers) == 2


def test_a_list_of_bases_merges_left_to_right_then_the_file_then_set(tmp_path, common):
    write(tmp_path, "long.yaml", "fit: {epochs: 10, batch_size: 64}\nseed: 1\n")
    main = write(tmp_path, "main.yaml", "base: [common.yaml, long.yaml]\nseed: 2\n")
    c = load_config(main, ["fit.batch_size=8"]).config
    assert (c.fit.epochs, c.fit.batch_size, c.seed) == (10, 8, 2)
    assert c.compile.loss == "mse"


def test_bases_resolve_against_the_including_files_folder(tmp_path):
    write(tmp_path, "shared/model.yaml", "model: {layers: [{Input: {shape: [3]}}, Dense: 1]}\n")
    write(tmp_path, "shared/common.yaml", "base: model.yaml\ncompile: {loss: mse}\n")
    main = write(tmp_path, "exp/one/main.yaml", "base: ../../shared/common.yaml\nseed: 3\n")
    c = load_config(main).config
    assert c.model.layers[0] == {"Input": {"shape": [3]}}
    assert c.compile.loss == "mse" and c.seed == 3
    # base_dir stays the top file's folder: data paths and import paths resolve there
    assert Path(c.base_dir) == main.parent.resolve()


def test_a_diamond_of_bases_is_not_a_cycle(tmp_path, common):
    write(tmp_path, "a.yaml", "base: common.yaml\nseed: 1\n")
    write(tmp_path, "b.yaml", "base: common.yaml\nfit: {epochs: 7}\n")
    main = write(tmp_path, "main.yaml", "base: [a.yaml, b.yaml]\n")
    c = load_config(main).config
    assert (c.seed, c.fit.epochs) == (1, 7)


def test_each_base_file_is_read_once_however_often_it_is_named(tmp_path, common):
    # 30 levels that each name the next twice: 2**30 reads if each name were read anew
    for level in range(30):
        write(tmp_path, f"l{level}.yaml", f"base: [l{level + 1}.yaml, l{level + 1}.yaml]\n")
    write(tmp_path, "l30.yaml", "base: common.yaml\nseed: 30\n")
    t0 = time.perf_counter()
    assert load_config(tmp_path / "l0.yaml").config.seed == 30
    assert time.perf_counter() - t0 < 5


def test_lists_other_than_callbacks_are_replaced(tmp_path, common):
    main = write(
        tmp_path,
        "main.yaml",
        "base: common.yaml\nmodel: {layers: [{Input: {shape: [8]}}, Dense: 1, Dense: 1]}\n"
        "compile: {metrics: [mse]}\n",
    )
    c = load_config(main).config
    assert len(c.model.layers) == 3 and c.model.layers[0] == {"Input": {"shape": [8]}}
    assert c.compile.metrics == ["mse"]


def test_callbacks_merge_by_name_keeping_the_base_order(tmp_path, common):
    main = write(
        tmp_path,
        "main.yaml",
        "base: common.yaml\ncallbacks:\n  - ReduceLROnPlateau: {monitor: loss}\n"
        "  - EarlyStopping: {patience: 5}\n",
    )
    assert callbacks_of(load_config(main)) == [
        {"EarlyStopping": {"monitor": "loss", "patience": 5}},
        "TerminateOnNaN",
        {"ReduceLROnPlateau": {"monitor": "loss"}},
    ]


def test_a_bare_name_or_null_args_changes_nothing(tmp_path, common):
    main = write(
        tmp_path,
        "main.yaml",
        "base: common.yaml\ncallbacks: [EarlyStopping, {TerminateOnNaN: null}]\n",
    )
    assert callbacks_of(load_config(main)) == callbacks_of(load_config(common))


def test_tilde_drops_a_base_callback_and_can_replace_it_whole(tmp_path, common):
    main = write(tmp_path, "main.yaml", "base: common.yaml\ncallbacks: [~TerminateOnNaN]\n")
    assert callbacks_of(load_config(main)) == [
        {"EarlyStopping": {"monitor": "loss", "patience": 1}}
    ]
    main.write_text(
        "base: common.yaml\ncallbacks:\n  - ~EarlyStopping\n  - EarlyStopping: {monitor: mae}\n"
    )
    assert callbacks_of(load_config(main)) == [
        "TerminateOnNaN",
        {"EarlyStopping": {"monitor": "mae"}},
    ]


def test_tilde_drops_every_entry_of_that_name(tmp_path):
    write(
        tmp_path,
        "two.yaml",
        COMMON
        + "  - ModelCheckpoint: {filepath: a.keras}\n  - ModelCheckpoint: {filepath: b.keras}\n",
    )
    main = write(tmp_path, "main.yaml", "base: two.yaml\ncallbacks: [~ModelCheckpoint]\n")
    assert [
        next(iter(c)) if isinstance(c, dict) else c for c in callbacks_of(load_config(main))
    ] == [
        "EarlyStopping",
        "TerminateOnNaN",
    ]


def test_an_empty_callbacks_list_removes_them_all(tmp_path, common):
    main = write(tmp_path, "main.yaml", "base: common.yaml\ncallbacks: []\n")
    assert callbacks_of(load_config(main)) == []


def test_an_empty_base_file_adds_nothing(tmp_path, common):
    write(tmp_path, "empty.yaml", "# nothing yet\n")
    main = write(tmp_path, "main.yaml", "base: [common.yaml, empty.yaml]\n")
    assert load_config(main).config.fit.epochs == 3


def test_the_resolved_config_stands_alone(tmp_path, common):
    main = write(tmp_path, "main.yaml", "base: common.yaml\nfit: {epochs: 5}\n")
    loaded = load_config(main, ["callbacks.0.EarlyStopping.patience=4"])
    text = dump_config(loaded)
    assert "base" not in yaml.safe_load(text)
    elsewhere = write(tmp_path / "elsewhere", "config.yaml", text)
    common.unlink()
    again = load_config(elsewhere)
    assert again.config == loaded.config


# ---------------------------------------------------------------- errors


def error_of(main: Path, *overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(main, overrides)
    return info.value


def test_a_bad_value_in_a_base_is_reported_at_the_base_files_line(tmp_path, common):
    write(tmp_path, "long.yaml", "seed: 1\nfit:\n  epochs: 0\n")
    main = write(tmp_path, "main.yaml", "name: m\nbase: [common.yaml, long.yaml]\n")
    err = error_of(main)
    assert (err.path, Path(err.file).name, err.line) == ("fit.epochs", "long.yaml", 3)
    # set again in the including file: reported there
    main.write_text("name: m\nbase: [common.yaml, long.yaml]\nfit: {epochs: -1}\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("main.yaml", 3)
    # set by --set: reported as that option
    err = error_of(main, "fit.epochs=0")
    assert err.file is None and "(from --set fit.epochs=0)" in str(err)


def test_an_unknown_key_in_a_base_is_reported_at_the_base_files_line(tmp_path, common):
    write(tmp_path, "long.yaml", "seed: 1\nfit:\n  epoch: 3\n")
    main = write(tmp_path, "main.yaml", "base: [common.yaml, long.yaml]\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("long.yaml", 3)
    assert "did you mean 'epochs'" in str(err)


def test_a_missing_base_names_the_including_line_and_the_path_tried(tmp_path, common):
    main = write(tmp_path, "main.yaml", "seed: 1\nbase:\n  - common.yaml\n  - nope.yaml\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("main.yaml", 4)
    assert "not found" in str(err) and str(tmp_path / "nope.yaml") in str(err)


def test_a_cycle_of_bases_is_refused_with_the_chain(tmp_path, common):
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "seed: 1\nbase: a.yaml\n")
    main = write(tmp_path, "main.yaml", "base: [common.yaml, a.yaml]\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("b.yaml", 2)
    assert "a.yaml -> b.yaml -> a.yaml" in str(err)
    self_base = write(tmp_path, "self.yaml", "base: self.yaml\n")
    assert "cycle" in str(error_of(self_base))


def test_a_base_that_is_a_symlink_loop_is_refused_at_its_base_line(tmp_path):
    (tmp_path / "a.yaml").symlink_to("b.yaml")
    (tmp_path / "b.yaml").symlink_to("a.yaml")
    main = write(tmp_path, "main.yaml", "seed: 1\nbase: a.yaml\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("main.yaml", 2)
    assert "symbolic links" in str(err)


def test_a_base_that_is_not_a_mapping_is_refused_in_that_file(tmp_path):
    write(tmp_path, "list.yaml", "- a\n- b\n")
    main = write(tmp_path, "main.yaml", "base: list.yaml\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("list.yaml", 1)
    assert "mapping" in str(err)


@pytest.mark.parametrize(
    ("base", "needle"),
    [
        ("3", "a file name or a list"),
        ("{a: b}", "a file name or a list"),
        ("[a.yaml, 3]", "base[1]"),
        ("''", "a file name"),
        ('"a\\0b"', "a file name"),  # a NUL in the name
    ],
)
def test_a_bad_base_value_is_refused(tmp_path, base, needle):
    main = write(tmp_path, "main.yaml", f"seed: 1\nbase: {base}\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("main.yaml", 2)
    assert needle in str(err)


def test_a_drop_of_a_callback_no_base_lists_is_refused(tmp_path, common):
    main = write(tmp_path, "main.yaml", "base: common.yaml\ncallbacks:\n  - ~ModelCheckpoint\n")
    err = error_of(main)
    assert (Path(err.file).name, err.line, err.path) == ("main.yaml", 3, "callbacks[0]")
    assert "EarlyStopping, TerminateOnNaN" in str(err)  # what the bases do list
    alone = write(tmp_path, "alone.yaml", COMMON + "  - ~TerminateOnNaN\n")
    assert "no base" in str(error_of(alone))


def test_merging_into_a_name_the_bases_list_twice_is_refused(tmp_path):
    write(
        tmp_path,
        "two.yaml",
        COMMON
        + "  - ModelCheckpoint: {filepath: a.keras}\n  - ModelCheckpoint: {filepath: b.keras}\n",
    )
    main = write(
        tmp_path, "main.yaml", "base: two.yaml\ncallbacks:\n  - ModelCheckpoint: {verbose: 1}\n"
    )
    err = error_of(main)
    assert (Path(err.file).name, err.line) == ("main.yaml", 3)
    assert "~ModelCheckpoint" in str(err)


def test_base_cannot_be_set_from_the_command_line(tmp_path, common):
    err = error_of(common, "base=other.yaml")
    assert "--set base=other.yaml" in str(err) and "base:" in str(err)


def test_cli_error_from_a_base_is_one_line_naming_it(tmp_path, common):
    write(tmp_path, "cb.yaml", "callbacks:\n  - EarlyStoping: {patience: 2}\n")
    main = write(tmp_path, "main.yaml", "base: [common.yaml, cb.yaml]\n")
    r = cli("fit", main, "--runs-dir", tmp_path / "runs")
    assert_clean_error(r, "cb.yaml line 2", "did you mean 'EarlyStopping'")
    assert not (tmp_path / "runs").exists()


def test_cli_error_in_a_set_value_names_the_option(tmp_path, common):
    main = write(tmp_path, "main.yaml", "base: common.yaml\n")
    r = cli("validate", main, "--set", "callbacks.1=TerminateOnNan")
    assert_clean_error(r, "(from --set callbacks.1=TerminateOnNan)", "did you mean 'TerminateOnNaN'")


def test_the_json_schema_knows_base():
    import jsonschema

    from trainrun.config.schema import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    assert validator.is_valid({"base": "common.yaml", "fit": {"epochs": 2}})  # model from the base
    assert validator.is_valid({"base": ["a.yaml", "b.yaml"], "callbacks": ["~TerminateOnNaN"]})
    assert not validator.is_valid({"base": 3})
    assert not validator.is_valid({"fit": {"epochs": 2}})  # no base: model is required


# ---------------------------------------------------------------- --explain


def test_explain_names_the_file_and_line_or_the_option_of_each_value(tmp_path, common):
    main = write(tmp_path, "main.yaml", "base: common.yaml\nfit: {epochs: 5}\n")
    loaded = load_config(main, ["fit.batch_size=8"])
    rows = {key: origin for key, _, origin in explain(loaded)}
    assert rows["fit.epochs"] == f"{main}:2"
    assert rows["fit.batch_size"] == "--set fit.batch_size=8"
    assert rows["compile.loss"] == f"{common}:7"
    assert rows["callbacks[0].EarlyStopping.patience"] == f"{common}:13"
    assert rows["fit.shuffle"] == "default"


def test_validate_explain_prints_origins_without_tensorflow(tmp_path, common):
    # A tensorflow that cannot be imported: --explain must not need it.
    write(
        tmp_path, "blocker/tensorflow.py", "raise ImportError('validate --explain imported TF')\n"
    )
    main = write(tmp_path, "main.yaml", "base: common.yaml\nfit: {epochs: 5}\n")
    import os

    from conftest import ROOT

    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "blocker"), str(ROOT)])}
    t0 = time.perf_counter()
    r = cli("validate", main, "--explain", "--set", "seed=4", env=env)
    assert time.perf_counter() - t0 < 10
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith("fit.epochs: 5") and line.endswith(f"{main}:2") for line in lines)
    assert any(line.startswith("seed: 4") and line.endswith("--set seed=4") for line in lines)
    assert any(line.startswith("compile.loss: mse") and "common.yaml:7" in line for line in lines)


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_fit_a_composed_config_writes_it_resolved_and_resumes_without_the_bases(tmp_path):
    write(
        tmp_path,
        "shared/common.yaml",
        "data: {source: mnist, flatten: true, scale: 255.0, limit: {train: 256, test: 64}}\n"
        "model: {layers: [{Input: {shape: [784]}}, {Dense: {units: 10, activation: softmax}}]}\n"
        "compile: {loss: sparse_categorical_crossentropy}\n"
        "fit: {epochs: 1, batch_size: 64}\n"
        "callbacks: [TerminateOnNaN, {EarlyStopping: {monitor: loss, patience: 3}}]\n",
    )
    main = write(
        tmp_path,
        "exp/main.yaml",
        "base: ../shared/common.yaml\nname: composed\nseed: 5\n"
        "callbacks: [~TerminateOnNaN, {EarlyStopping: {patience: 9}}]\n",
    )
    runs = tmp_path / "runs"
    r = cli("fit", main, "--runs-dir", runs, "--set", "fit.batch_size=32")
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(runs)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert "base" not in saved
    assert saved["name"] == "composed" and saved["fit"]["batch_size"] == 32
    assert saved["callbacks"] == [{"EarlyStopping": {"monitor": "loss", "patience": 9}}]
    shutil.rmtree(tmp_path / "shared")  # resume needs only the run directory
    r = cli("resume", run, "--epochs", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(read_history(run)) == 2
