"""The fast paths of the CLI: --help, callbacks, config errors, all without TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import ROOT, assert_clean_error, cli


def test_cli_import_does_not_pull_in_tensorflow():
    code = "import sys, trainrun.cli, trainrun.precheck, trainrun.commands.callback_help; print(any(m in sys.modules for m in ('tensorflow', 'keras')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"


def test_help_lists_commands():
    r = cli("--help")
    assert r.returncode == 0
    for command in ("fit", "resume", "validate", "callbacks"):
        assert command in r.stdout


def test_preloading_data_does_not_pull_in_tensorflow():
    # `fit` reads MNIST while TensorFlow imports; an import of TensorFlow before
    # import_tensorflow() escapes its capture of TensorFlow's native log lines.
    code = (
        "import sys; from trainrun.config import load_config; from trainrun.data import preload; "
        f"preload(load_config({str(ROOT / 'configs' / 'mnist_mlp.yaml')!r}, [])); "
        "print(any(m in sys.modules for m in ('tensorflow', 'keras')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_callbacks_lists_keras_callbacks_with_defaults():
    r = cli("callbacks")
    assert r.returncode == 0, r.stderr
    assert "EarlyStopping" in r.stdout and "patience=0" in r.stdout
    assert "ReduceLROnPlateau" in r.stdout


def test_callbacks_one_name_and_typo():
    r = cli("callbacks", "EarlyStopping")
    assert r.returncode == 0 and "restore_best_weights=False" in r.stdout
    assert_clean_error(cli("callbacks", "EarlyStoping"), "did you mean 'EarlyStopping'")


def test_config_error_is_fast_and_clean(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {layers: [{Input: {shape: [4]}}, {Dense: {units: 1}}]}\n"
        "compile: {loss: mse}\n"
        "callbacks:\n  - EarlyStopping: {patiance: 2}\n"
    )
    t0 = time.perf_counter()
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs")
    assert time.perf_counter() - t0 < 10  # no TensorFlow import: well under TF's start-up
    assert_clean_error(
        r, "callbacks[0].EarlyStopping.patiance", "line 4", "did you mean 'patience'?"
    )
    assert not (tmp_path / "runs").exists()


def test_version_names_trainrun_keras_and_tensorflow():
    import trainrun

    r = cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"trainrun {trainrun.__version__} (keras 3.")
    assert "tensorflow 2." in r.stdout and "python 3." in r.stdout


def test_error_messages_keep_square_brackets(tmp_path):
    """Messages are printed as text, not Rich markup: `[a,b]` in a value stays."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: {layers: [{Input: {shape: [4]}}, {Dense: {units: 1}}]}\ncompile: {loss: mse}\n"
    )
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", "--set", "fit.epochs=[a,b]")
    assert_clean_error(r, "fit.epochs", "[a,b]")
    r = cli("validate", tmp_path / "[x] missing.yaml")
    assert_clean_error(r, "[x] missing.yaml")
