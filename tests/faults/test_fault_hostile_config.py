"""Hostile config files: each gets one clean `error:` line (exit 2), quickly, in bounded memory.

Every case is loaded in a subprocess with a memory cap and a timeout, so that a
regression fails the test instead of hanging the suite or eating the machine's
memory: all cases in one process (`answers`, one start-up for all), and a few
through `trainrun` itself for the exit code and the one-line message. None of
these reach TensorFlow.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, assert_clean_error

from trainrun.config import load_config
from trainrun.errors import ConfigError

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


def _flow_bomb() -> str:
    levels = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "[" + ", ".join(levels) + "]"


def _huge(path: Path) -> None:
    # Valid YAML all the way (comments), so only its size can stop it quickly.
    line = "# " + "x" * 1021 + "\n"
    with path.open("w") as f:
        f.write(OK)
        f.writelines([line] * 40 * 1024)  # 40 MiB


def _sparse(path: Path) -> None:
    with path.open("w") as f:
        f.write(OK)
        f.truncate(8 * 1024**3)  # 8 GiB of holes: reading it whole would not fit the cap


def _symlink_loop(path: Path) -> None:
    path.symlink_to(path.parent / "loop-b.yaml")
    (path.parent / "loop-b.yaml").symlink_to(path)


DEEP = {
    "sequences": "[" * 900 + "]" * 900,
    "flow-mappings": "{a: " * 900 + "1" + "}" * 900,
    "block-mappings": "\n"
    + "".join(f"{'  ' * i}k{i}:\n" for i in range(900))
    + "  " * 900
    + "x: 1",
}

# case -> (how to make the file, --set values, needles the error must hold)
CASES = {
    "alias-bomb": (alias_bomb(), [], ["alias-bomb.yaml line 6", "alias *a4", "alias bomb"]),
    "alias-bomb-in-set": (OK, [f"compile.loss={_flow_bomb()}"], ["--set compile.loss=", "alias"]),
    "alias-to-itself": (OK + "fit: &f {epochs: *f}\n", [], ["line 8", "*f", "itself"]),
    **{
        f"deep-{kind}": (OK + f"extra: {nested}\n", [], [f"deep-{kind}.yaml line ", "nested"])
        for kind, nested in DEEP.items()
    },
    "deep-in-set": (OK, ["fit.epochs=" + "[" * 900], ["--set fit.epochs=", "nested more"]),
    "dev-zero": ("/dev/zero", [], ["/dev/zero", "not a regular file (a character device)"]),
    "fifo": (os.mkfifo, [], ["fifo.yaml", "not a regular file (a named pipe)"]),
    "symlink-loop": (_symlink_loop, [], ["symlink-loop.yaml", "symbolic links"]),
    "directory": (Path.mkdir, [], ["directory.yaml is a directory"]),
    "huge": (_huge, [], ["huge.yaml is 40.0 MiB", "at most 1 MiB"]),
    "sparse": (_sparse, [], ["sparse.yaml is 8192.0 MiB"]),
}

_LOAD_EACH = """
import json, signal, sys
from trainrun.config import load_config
from trainrun.errors import ConfigError

def alarm(*_):
    raise TimeoutError("still loading after 10 s")

signal.signal(signal.SIGALRM, alarm)
answers = {}
for case, file, sets in json.loads(sys.argv[1]):
    signal.alarm(10)
    try:
        load_config(file, sets)
        answers[case] = "loaded without an error"
    except ConfigError as exc:
        answers[case] = str(exc)
    except BaseException as exc:
        answers[case] = f"not a ConfigError: {type(exc).__name__}: {str(exc)[:200]}"
    finally:
        signal.alarm(0)
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, str]:
    """Each case's error message, all loaded by one capped process."""
    here = tmp_path_factory.mktemp("hostile")
    todo = []
    for case, (make, sets, _) in CASES.items():
        if isinstance(make, str) and make.startswith("/"):
            file = make
        else:
            path = here / f"{case}.yaml"
            make(path) if callable(make) else path.write_text(make)
            file = str(path)
        todo.append((case, file, sets))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        out = subprocess.run(
            [sys.executable, "-c", _LOAD_EACH, json.dumps(todo)],
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT * 2,
            preexec_fn=_cap_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loading the hostile configs hung")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("case", CASES)
def test_hostile_config_is_refused(answers, case):
    message = answers[case]
    for needle in CASES[case][2]:
        assert needle in message, f"{case}: {needle!r} not in: {message}"


# Through the CLI: the exit code and one `error:` line, for one case of each kind.


def test_fifo_cli(tmp_path):
    os.mkfifo(tmp_path / "pipe.yaml")
    result = trainrun("validate", "pipe.yaml", cwd=tmp_path)
    assert_clean_error(result, "pipe.yaml", "not a regular file")


def test_name_option_is_named_as_the_source(tmp_path):
    (tmp_path / "ok.yaml").write_text(OK)
    result = trainrun("fit", "ok.yaml", "--name", "../../x", "--runs-dir", "runs", cwd=tmp_path)
    assert_clean_error(result, "(from --name ../../x)")
    assert " line " not in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


def test_set_option_is_named_as_the_source(tmp_path):
    (tmp_path / "ok.yaml").write_text(OK)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "ok.yaml", ["name=../../x"])
    assert "(from --set name=../../x)" in str(e.value) and " line " not in str(e.value)
