"""Shared fixtures: the CLI as a user runs it, the small MNIST in tests/data, small slices."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TEST_DATA = ROOT / "tests" / "data"
RESUME_FIXTURES = ROOT / "tests" / "resume_fixtures"

# Small slices keep a training test to a few seconds.
SMALL = ["--set", "data.limit.train=2000", "--set", "fit.epochs=2"]


def data_dir() -> str:
    """The folder tests read mnist.npz from, as an absolute path.

    tests/data holds a small MNIST (4,000 train / 1,000 test images), so the suite
    runs offline in any clone; TRAINRUN_TEST_DATA_DIR points the tests elsewhere
    (the full data set, say). A relative path is taken from the current directory,
    once: the tests run trainrun from temporary directories.
    """
    chosen = os.environ.get("TRAINRUN_TEST_DATA_DIR") or str(TEST_DATA)
    return str(Path(chosen).resolve())


def pytest_configure(config: pytest.Config) -> None:
    # Set before collection, so that every test and every trainrun it starts reads it.
    os.environ["TRAINRUN_DATA_DIR"] = data_dir()
    # The cache of data file hashes (runs/provenance.py): never the user's ~/.cache.
    os.environ.setdefault(
        "TRAINRUN_CACHE_DIR", str(Path(tempfile.gettempdir()) / "trainrun-test-cache")
    )
    # JAX's compiled programs (engine/backend_runtime.py): not in the user's ~/.cache either.
    os.environ.setdefault(
        "TRAINRUN_JAX_CACHE", str(Path(tempfile.gettempdir()) / "trainrun-test-cache" / "jax")
    )


# A module of custom objects (loss, metric, layer, activation) that tests write beside
# a config and name by import path: my_objs:MyDense, my_objs:my_relu, my_objs:my_sce, ...
CUSTOM_OBJECTS = """\
import keras


def my_sce(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


def my_acc(y_true, y_pred):
    return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)


def my_relu(x):
    return keras.activations.relu(x)


class MyDense(keras.layers.Dense):
    def __init__(self, units, scale=1.0, **kwargs):
        super().__init__(units, **kwargs)
        self.scale = scale

    def call(self, inputs):
        return super().call(inputs) * self.scale

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}
"""


def trained_project(root: Path, config: str) -> Path:
    """`root`/proj with CUSTOM_OBJECTS as my_objs.py and `config` as cfg.yaml beside it,
    trained once into proj/runs."""
    proj = root / "proj"
    proj.mkdir()
    (proj / "my_objs.py").write_text(CUSTOM_OBJECTS)
    (proj / "cfg.yaml").write_text(config)
    result = cli("fit", "cfg.yaml", "--runs-dir", "runs", cwd=proj)
    assert result.returncode == 0, result.stdout + result.stderr
    return proj


def cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run `trainrun ARGS` in a subprocess, as a user would, from this checkout."""
    full_env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    full_env.setdefault("COLUMNS", "200")
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "trainrun", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def cli_processes(
    *args: str, envs: list[dict], extra: list[list[str]] | None = None, timeout: int = 240
) -> list[subprocess.CompletedProcess]:
    """`trainrun ARGS` in one process per entry of `envs` at once (the workers of a
    cluster), each with those variables added (and its `extra` arguments); all killed
    on timeout."""
    procs = []
    for i, env in enumerate(envs):
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "COLUMNS": "200",
            **env,
        }
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trainrun",
                    *map(str, args),
                    *map(str, extra[i] if extra else []),
                ],
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def only_run(runs_dir: Path) -> Path:
    runs = [p for p in Path(runs_dir).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def run_info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def read_history(run: Path) -> list[dict[str, str]]:
    import csv

    with (run / "history.csv").open() as f:
        return list(csv.DictReader(f))


def resume_workdir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A temporary folder holding tests/resume_fixtures (tiny.yaml and its callbacks)."""
    d = tmp_path_factory.mktemp(name)
    for f in RESUME_FIXTURES.iterdir():
        if f.is_file():
            shutil.copy(f, d / f.name)
    return d


def keras_arrays(keras_file: Path) -> dict:
    """Every array of a .keras file's weights (model and optimizer), by its path in the
    file. Read from the archive directly: loading the model would import TensorFlow."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(keras_file) as archive:
        data = archive.read("model.weights.h5")
    arrays: dict = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def assert_same_model(run: Path, baseline: Path) -> None:
    """The same history.csv and bitwise the same model.keras arrays as `baseline`."""
    import numpy as np

    assert read_history(run) == read_history(baseline)
    got, want = keras_arrays(run / "model.keras"), keras_arrays(baseline / "model.keras")
    assert got.keys() == want.keys()
    assert any(key.startswith("layers/") for key in want), sorted(want)
    for key, b in want.items():
        a = got[key]
        assert a.dtype == b.dtype, key
        assert np.array_equal(a, b), (key, float(np.max(np.abs(a - b))))


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str, code: int = 2) -> None:
    """Exit code, one 'error:' message, no traceback, and each needle in the message."""
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    assert "error:" in result.stderr, out
    for needle in needles:
        assert needle in out, f"{needle!r} not in:\n{out}"


# The fast set (`-m "not slow"`) has a budget: under a minute on the 2-core CI
# machine, and no TensorFlow import in the test process (TensorFlow's import
# alone takes seconds). Tests that train or import TensorFlow are marked slow.
FAST_BUDGET_S = 60.0


def _fast_set(config: pytest.Config) -> bool:
    return config.getoption("markexpr", "").replace(" ", "") == "notslow"


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config._trainrun_started = time.monotonic()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _fast_set(session.config) and "tensorflow" in sys.modules and exitstatus == 0:
        culprits = sorted(m for m in sys.modules if m.startswith("trainrun.engine"))
        print(
            "\nerror: the fast set imported TensorFlow in the test process "
            f"(trainrun modules loaded: {', '.join(culprits) or 'none'}); mark that test slow"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if not _fast_set(config):
        return
    took = time.monotonic() - config._trainrun_started  # type: ignore[attr-defined]
    verdict = "within" if took <= FAST_BUDGET_S else "OVER"
    terminalreporter.write_line(
        f"fast set: {took:.1f} s, {verdict} its budget of {FAST_BUDGET_S:.0f} s"
    )
