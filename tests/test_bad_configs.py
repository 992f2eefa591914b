"""A corpus of bad configs: each answered before training with exit 2, one clean message.

Every file in tests/bad_configs/ ends with what trainrun must answer:

    # expect: a text the message must contain (key path, line, suggestion...)
    # set: KEY=VALUE      a --set override to pass
    # light               answered without importing TensorFlow

The cases run through the real CLI (`trainrun fit`), the light ones in one
subprocess that records whether TensorFlow was imported, the others in a second
one that imports TensorFlow once; those are marked slow, so the fast set
(`-m "not slow"`) never imports TensorFlow here.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "bad_configs"
MARK = "@@trainrun-case@@"


@dataclass
class Case:
    file: Path
    expect: list[str]
    sets: list[str]
    light: bool

    @classmethod
    def read(cls, file: Path) -> Case:
        expect, sets, light = [], [], False
        for line in file.read_text().splitlines():
            if line.startswith("# expect: "):
                expect.append(line.removeprefix("# expect: "))
            elif line.startswith("# set: "):
                sets.append(line.removeprefix("# set: "))
            elif line.strip() == "# light":
                light = True
        return cls(file, expect, sets, light)


CASES = sorted((Case.read(f) for f in CORPUS.glob("*.yaml")), key=lambda c: c.file.name)


def _drive(names: list[str]) -> None:
    """Run in a subprocess: `trainrun fit` on each case, one JSON line per case."""
    from typer.testing import CliRunner

    from trainrun.cli import app

    runner = CliRunner()
    for name in names:
        case = Case.read(CORPUS / name)
        with tempfile.TemporaryDirectory() as tmp:
            os.chdir(tmp)
            args = ["fit", str(case.file), "--runs-dir", "runs"]
            for text in case.sets:
                args += ["--set", text]
            result = runner.invoke(app, args)
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
            report = {
                "name": name,
                "exit_code": result.exit_code,
                "stdout": result.stdout,
                "stderr": result.stderr,
                "crashed": repr(result.exception) if crashed else None,
                "tensorflow": "tensorflow" in sys.modules,
                "left_behind": sorted(str(p) for p in Path(tmp).rglob("*") if not p.is_dir()),
            }
        print(MARK + json.dumps(report), flush=True)


@functools.cache
def answers(light: bool) -> dict[str, dict]:
    """The CLI's answer to every light case, or to every other case: one subprocess each."""
    cases = [c for c in CASES if c.light == light]
    proc = subprocess.run(
        [sys.executable, __file__, *(c.file.name for c in cases)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            report = json.loads(line.removeprefix(MARK))
            found[report["name"]] = report
    assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
    return found


def test_corpus_is_large_and_every_case_says_what_it_expects():
    assert len(CASES) >= 30
    for case in CASES:
        assert case.expect, f"{case.file.name} has no '# expect:' line"


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=() if c.light else pytest.mark.slow) for c in CASES],
    ids=lambda c: c.file.stem,
)
def test_bad_config_is_one_clean_message(case: Case):
    got = answers(case.light).get(case.file.name)
    assert got is not None, f"{case.file.name} did not run (driver stopped early?)"
    out = got["stdout"] + got["stderr"]
    assert got["crashed"] is None, f"uncaught {got['crashed']}:\n{out}"
    assert got["exit_code"] == 2, out
    assert "Traceback" not in out, out
    errors = [line for line in got["stderr"].splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for needle in case.expect:
        assert needle in errors[0], f"{needle!r} not in:\n{errors[0]}"
    # Found before training: no run directory (no file at all) written.
    assert got["left_behind"] == [], got["left_behind"]
    if case.light:
        assert not got["tensorflow"], "TensorFlow was imported for a light case"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    _drive(sys.argv[1:])
