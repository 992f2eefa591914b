"""trainrun.errors: how a ConfigError says where, suggestions, the exit codes (no Keras)."""

from __future__ import annotations

import pytest

from trainrun.config import load_config
from trainrun.errors import (
    ConfigError,
    DataError,
    RunDirError,
    RunError,
    TrainrunError,
    UnknownNameError,
    did_you_mean,
)


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({}, "bad value"),
        ({"path": "fit.epochs"}, "fit.epochs: bad value"),
        ({"file": "c.yaml"}, "in c.yaml: bad value"),
        (
            {"path": "fit.epochs", "file": "c.yaml", "line": 3},
            "fit.epochs in c.yaml line 3: bad value",
        ),
        ({"path": "fit.epochs", "line": 3}, "fit.epochs: bad value"),  # a line needs its file
    ],
)
def test_config_error_renders_key_path_file_and_line(kwargs, text):
    exc = ConfigError("bad value", **kwargs)
    assert str(exc) == text
    assert exc.detail == "bad value"
    assert exc.args == (text,)


def test_locate_fills_only_what_is_unknown():
    exc = ConfigError("bad value", path="fit.epochs", line=9)
    assert exc.locate(path="other", file="c.yaml", line=3) is exc
    assert (exc.path, exc.file, exc.line) == ("fit.epochs", "c.yaml", 9)
    assert str(exc) == "fit.epochs in c.yaml line 9: bad value"
    assert exc.args == (str(exc),)


def test_exit_codes():
    assert ConfigError("x").exit_code == 2
    assert DataError("x").exit_code == 2
    assert RunDirError("x").exit_code == 2
    assert RunError("x").exit_code == 1
    assert issubclass(UnknownNameError, ConfigError)
    assert all(
        issubclass(c, TrainrunError) for c in (ConfigError, DataError, RunDirError, RunError)
    )


def test_did_you_mean_close_names_case_and_underscores_ignored():
    assert did_you_mean("Dnse", ["Dense", "Dropout"]) == "; did you mean 'Dense'?"
    assert did_you_mean("earlystopping", ["EarlyStopping"]) == "; did you mean 'EarlyStopping'?"
    # 'accuracy' and 'Accuracy' differ only in case: offered once, written like the name given.
    assert did_you_mean("acuracy", ["Accuracy", "accuracy"]) == "; did you mean 'accuracy'?"
    assert did_you_mean("Acuracy", ["accuracy", "Accuracy"]) == "; did you mean 'Accuracy'?"
    assert did_you_mean("Conv", ["Conv1D", "Conv2D", "Dense"]) == (
        "; did you mean 'Conv2D' or 'Conv1D'?"  # difflib's order: best first, ties by name, descending
    )


def test_did_you_mean_falls_back_to_the_hint_or_nothing():
    assert did_you_mean("zzz", ["Dense"], hint="see the list") == "; see the list"
    assert did_you_mean("zzz", ["Dense"]) == ""
    assert did_you_mean("zzz", []) == ""


def test_unknown_name_error_message():
    exc = UnknownNameError("layer", "Dnse", ["Dense", "Dropout"], path="model.layers[1]")
    assert str(exc) == "model.layers[1]: unknown layer 'Dnse'; did you mean 'Dense'?"
    assert (exc.kind, exc.name) == ("layer", "Dnse")
    hinted = UnknownNameError("callback", "Zzz", ["EarlyStopping"], hint="give module:Class")
    assert str(hinted) == "unknown callback 'Zzz'; give module:Class"


# ---------------------------------------------------------------- LoadedConfig.locate

CONFIG = """\
data: {source: mnist}
model:
  layers:
    - Dense: 10
compile: {optimizer: adam, loss: mse}
"""


def test_loaded_locate_gives_file_and_line_of_the_deepest_known_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    loaded = load_config(path)
    exc = loaded.locate(ConfigError("no", path="model.layers[0].Dense.unitz"))
    assert (exc.file, exc.line) == (str(path), 4), str(exc)
    assert str(exc) == f"model.layers[0].Dense.unitz in {path} line 4: no"
    # Located already, or nowhere to look: left as it is.
    done = ConfigError("no", path="model", file="other.yaml", line=1)
    assert loaded.locate(done) is done and str(done) == "model in other.yaml line 1: no"
    bare = ConfigError("no")
    assert loaded.locate(bare) is bare and str(bare) == "no"


def test_loaded_locate_names_the_set_option_and_keeps_the_error_class(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    loaded = load_config(path, ["compile.optimizer=adamx"])
    exc = loaded.locate(UnknownNameError("optimizer", "adamx", ["Adam"], path="compile.optimizer"))
    assert isinstance(exc, UnknownNameError)
    assert exc.file is None
    assert str(exc) == (
        "compile.optimizer: unknown optimizer 'adamx'; did you mean 'Adam'? "
        "(from --set compile.optimizer=adamx)"
    )
