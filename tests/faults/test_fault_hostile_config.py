"""Hostile config files: each gets one clean `error:` line (exit 2), quickly, in bounded memory.

Every case runs `trainrun validate` in a subprocess with a memory cap and a
timeout, so that a regression fails the test instead of hanging the suite or
eating the machine's memory. None of these reach TensorFlow.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, assert_clean_error

OK = """\
name: t
model:
  layers:
    - Input: {shape: [4]}
    - Dense: {units: 2}
compile:
  loss: mse
"""

MEMORY_CAP = 1024**3  # bytes of address space: far above what a config error needs
TIMEOUT = 30  # seconds; each answer takes well under one


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def trainrun(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """`trainrun ARGS` with a memory cap; a hang fails the test instead of the suite."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "trainrun", *map(str, args)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            preexec_fn=_cap_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"trainrun {' '.join(map(str, args))} still running after {TIMEOUT} s")
    assert time.monotonic() - started < 10, "a hostile config must be refused quickly"
    return result


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """'Billion laughs': each level is `width` aliases of the one before."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n" + OK


def test_alias_bomb(tmp_path):
    (tmp_path / "bomb.yaml").write_text(alias_bomb())
    result = trainrun("validate", "bomb.yaml", cwd=tmp_path)
    assert_clean_error(result, "bomb.yaml line ", "alias")


def test_alias_bomb_in_a_set_value(tmp_path):
    (tmp_path / "ok.yaml").write_text(OK)
    levels = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    value = "[" + ", ".join(levels) + "]"
    result = trainrun("validate", "ok.yaml", "--set", f"compile.loss={value}", cwd=tmp_path)
    assert_clean_error(result, "--set compile.loss=", "alias")


def test_alias_to_itself(tmp_path):
    (tmp_path / "loop.yaml").write_text(OK + "fit: &f {epochs: *f}\n")
    result = trainrun("validate", "loop.yaml", cwd=tmp_path)
    assert_clean_error(result, "loop.yaml line 8", "*f")


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 900 + "]" * 900,
        "{a: " * 900 + "1" + "}" * 900,
        "\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(900)) + "  " * 900 + "x: 1",
    ],
    ids=["sequences", "flow-mappings", "block-mappings"],
)
def test_deep_nesting(tmp_path, nested):
    (tmp_path / "deep.yaml").write_text(OK + f"extra: {nested}\n")
    result = trainrun("validate", "deep.yaml", cwd=tmp_path)
    assert_clean_error(result, "deep.yaml line ", "nested")


def test_deep_nesting_in_a_set_value(tmp_path):
    (tmp_path / "ok.yaml").write_text(OK)
    result = trainrun("validate", "ok.yaml", "--set", "fit.epochs=" + "[" * 900, cwd=tmp_path)
    assert_clean_error(result, "--set fit.epochs=", "nested")


def test_dev_zero(tmp_path):
    result = trainrun("validate", "/dev/zero", cwd=tmp_path)
    assert_clean_error(result, "/dev/zero", "not a regular file")


def test_fifo(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    result = trainrun("validate", "pipe.yaml", cwd=tmp_path)
    assert_clean_error(result, "pipe.yaml", "not a regular file")


def test_symlink_loop(tmp_path):
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    result = trainrun("validate", "a.yaml", cwd=tmp_path)
    assert_clean_error(result, "a.yaml", "symbolic links")


def test_directory(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    result = trainrun("validate", "dir.yaml", cwd=tmp_path)
    assert_clean_error(result, "dir.yaml is a directory")


def test_huge_file(tmp_path):
    # Valid YAML all the way (comments), so only its size can stop it quickly.
    line = "# " + "x" * 1021 + "\n"
    with (tmp_path / "huge.yaml").open("w") as f:
        f.write(OK)
        f.writelines([line] * 40 * 1024)  # 40 MiB
    result = trainrun("validate", "huge.yaml", cwd=tmp_path)
    assert_clean_error(result, "huge.yaml", "MiB")


def test_huge_sparse_file(tmp_path):
    with (tmp_path / "sparse.yaml").open("w") as f:
        f.write(OK)
        f.truncate(8 * 1024**3)  # 8 GiB of holes: reading it whole would not fit the cap
    result = trainrun("validate", "sparse.yaml", cwd=tmp_path)
    assert_clean_error(result, "sparse.yaml", "MiB")


def test_name_option_is_named_as_the_source(tmp_path):
    (tmp_path / "ok.yaml").write_text(OK)
    result = trainrun("fit", "ok.yaml", "--name", "../../x", "--runs-dir", "runs", cwd=tmp_path)
    assert_clean_error(result, "(from --name ../../x)")
    assert " line " not in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_set_option_is_named_as_the_source(tmp_path):
    (tmp_path / "ok.yaml").write_text(OK)
    result = trainrun("validate", "ok.yaml", "--set", "name=../../x", cwd=tmp_path)
    assert_clean_error(result, "(from --set name=../../x)")
    assert " line " not in result.stderr, result.stderr
