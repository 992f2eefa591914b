"""`trainrun sweep`: bad input before any trial, a sweep's trials as runs, workers,
pruning, PostgreSQL storage, and a sweep killed with kill -9 and resumed."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_clean_error, cli, run_info

pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")

# Two epochs of a small MLP; state saved at each step so a kill lands mid-epoch.
CONFIG = """\
name: tiny
seed: 7
deterministic: true
data: {source: mnist, flatten: true, scale: 255.0, validation_split: 0.2, limit: {train: 512}}
model:
  layers:
    - Input: {shape: [784]}
    - Dense: {units: 16, activation: relu}
    - Dense: {units: 10, activation: softmax}
compile:
  optimizer: {Adam: {learning_rate: 0.001}}
  loss: sparse_categorical_crossentropy
fit: {epochs: 2, batch_size: 32}
outputs: {tensorboard: false, state_every: 1}
"""

GRID = """\
sweep:
  parameters:
    compile.optimizer.Adam.learning_rate: [0.01, 0.000001]
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "cfg.yaml").write_text(CONFIG + GRID)
    return tmp_path


def sweep_dirs(runs: Path) -> list[Path]:
    return (
        sorted(p for p in runs.iterdir() if (p / "sweep.json").is_file()) if runs.exists() else []
    )


def trial_table(runs: Path, sweep: Path) -> list[list[str]]:
    """The rows of `trainrun runs --sweep`, without the run column (ids hold a time)."""
    result = cli("runs", "--sweep", sweep.name, "--runs-dir", runs)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in result.stdout.splitlines()
        if line.startswith("│")
    ]
    assert rows, result.stdout
    return [row[:-1] for row in rows]


# ---------------------------------------------------------------- bad input (fast)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--param", "fit.batch_sise=[32, 64]"], ["fit.batch_sise", "did you mean 'batch_size'"]),
        (
            ["--param", "compile.optimizer.learning_rate={loguniform: [0, 0.1]}"],
            ["loguniform needs low > 0"],
        ),
        (["--sampler", "grd"], ["unknown sampler 'grd'", "did you mean 'grid'"]),
        (
            ["--storage", "postgresql://nobody@127.0.0.1:1/none"],
            ["--storage postgresql://nobody@127.0.0.1:1/none", "cannot open the study storage"],
        ),
    ],
)
def test_bad_input_is_one_line_before_any_trial(
    work: Path, args: list[str], needles: list[str]
) -> None:
    result = cli("sweep", "cfg.yaml", "--runs-dir", "runs", *args, cwd=work)
    assert_clean_error(result, *needles)
    assert not (work / "runs").exists() or not any((work / "runs").iterdir())
    assert "checking" not in result.stdout  # refused before the model is built


@pytest.mark.parametrize(
    ("section", "needles"),
    [
        (
            {"parameters": {"a.b": {"uniform": [0.1, 0.01]}}, "trials": 3},
            ["low must be below high"],
        ),
        ({"parameters": {"a.b": {"int": [1, 2.5]}}, "trials": 3}, ["whole numbers"]),
        ({"parameters": {"a.b": {"logint": [1, 8, 2]}}, "trials": 3}, ["only int takes a step"]),
        (
            {"parameters": {"a.b": {"normal": [0, 1]}}, "trials": 3},
            ["unknown distribution 'normal'"],
        ),
        ({"parameters": {"a.b": [1, 1]}}, ["listed twice"]),
        ({"parameters": {"a.b": {"uniform": [0, 1]}}, "sampler": "grid"}, ["grid sampler needs"]),
        ({"parameters": {"a.b": {"uniform": [0, 1]}}}, ["needs a number of trials"]),
        ({"parameters": {"a.b": [1]}, "pruner": "medain"}, ["did you mean 'median'"]),
        ({}, ["no sweep parameters"]),
    ],
)
def test_spec_refusals(section: dict, needles: list[str]) -> None:
    from trainrun.errors import ConfigError
    from trainrun.sweep.spec import SweepSection, resolve

    with pytest.raises(ConfigError) as caught:
        resolve(SweepSection(**section), file="cfg.yaml", cli={})
    for needle in needles:
        assert needle in caught.value.message


def test_spec_defaults() -> None:
    from trainrun.sweep.spec import SweepSection, resolve

    grid = resolve(SweepSection(parameters={"a": [1, 2], "b": ["x", "y", "z"]}), file="f", cli={})
    assert (grid.sampler, grid.trials, grid.pruner) == ("grid", 6, "none")
    ranged = resolve(
        SweepSection(parameters={"a": {"loguniform": [1e-4, 1e-2]}}, trials=5), file="f", cli={}
    )
    assert (ranged.sampler, ranged.trials) == ("tpe", 5)
    cli_wins = resolve(
        SweepSection(parameters={"a": [1, 2]}),
        file="f",
        cli={"params": {"a": [3]}, "sampler": "random", "trials": 2},
    )
    assert cli_wins.params[0].values == (3,) and cli_wins.sampler == "random"


def test_config_sweep_section_is_checked(tmp_path: Path) -> None:
    from trainrun.config import load_config
    from trainrun.errors import ConfigError

    (tmp_path / "cfg.yaml").write_text(CONFIG + "sweep:\n  trails: 3\n")
    with pytest.raises(ConfigError, match=r"sweep.trails.*did you mean 'trials'"):
        load_config(tmp_path / "cfg.yaml")


def test_resume_of_a_sweep_takes_no_epochs(tmp_path: Path) -> None:
    sweep = tmp_path / "runs" / "s"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"kind": "trainrun-sweep"}))
    assert_clean_error(cli("resume", sweep, "--epochs", "3"), "--epochs is for a run")


# ---------------------------------------------------------------- sweeps (slow)


@pytest.mark.slow
def test_two_workers_prune_and_compare(work: Path) -> None:
    """Two workers on one SQLite study; the 1e-6 trial is pruned after epoch 1."""
    result = cli(
        "sweep", "cfg.yaml", "--runs-dir", "runs", "--workers", "2",
        "--pruner", "{threshold: {upper: 2.0}}", cwd=work,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (sweep,) = sweep_dirs(work / "runs")
    record = json.loads((sweep / "sweep.json").read_text())
    trials = {
        t["params"]["compile.optimizer.Adam.learning_rate"]: t for t in record["trials"].values()
    }
    assert trials[0.01]["state"] == "COMPLETE", trials
    assert trials[1e-06]["state"] == "PRUNED", trials
    assert "pruned after epoch 1: val_loss" in trials[1e-06]["reason"]
    pruned_run, done_run = sweep / trials[1e-06]["run"], sweep / trials[0.01]["run"]
    assert run_info(pruned_run)["status"] == "interrupted"  # stopped cleanly, resumable
    assert run_info(done_run)["best"]["value"] == trials[0.01]["value"]
    # the two trials trained at the same time
    started = [os.path.getctime(p / "config.yaml") for p in (pruned_run, done_run)]
    ended = [os.path.getmtime(p / "run.json") for p in (pruned_run, done_run)]
    assert max(started) < min(ended)
    # a trial's config.yaml is a plain run's: no sweep section, the swept value set
    assert "sweep" not in (done_run / "config.yaml").read_text().split("base_dir")[0]
    table = trial_table(work / "runs", sweep)
    assert [row[1] for row in table] == ["complete", "pruned"]  # best first
    assert (sweep / "compare.png").stat().st_size > 0
    listing = cli("runs", "--runs-dir", work / "runs")
    assert "sweep completed" in listing.stdout and "1/2 trials" not in listing.stdout
    compared = cli("compare", sweep, "--out", work / "c.png", cwd=work)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    lines = [line for line in compared.stdout.splitlines() if line.startswith("│")]
    assert done_run.name in lines[0] and pruned_run.name in lines[1]  # best first
    assert "learning_rate" in compared.stdout and "batch_size" not in compared.stdout
    assert (work / "c.png").stat().st_size > 0


def _kill_at(proc: subprocess.Popen, delay: float) -> int:
    try:
        return proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        return proc.wait()


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "trainrun", *args], cwd=cwd, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
def test_killed_sweep_resumes_to_the_same_table(work: Path) -> None:
    """kill -9 of the sweep at a random instant; `trainrun resume` ends with the same table."""
    baseline = cli("sweep", "cfg.yaml", "--runs-dir", "base", cwd=work)
    assert baseline.returncode == 0, baseline.stdout + baseline.stderr
    (base_sweep,) = sweep_dirs(work / "base")
    want = trial_table(work / "base", base_sweep)
    assert [row[1] for row in want] == ["complete", "complete"]

    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    runs = work / "runs"
    while not sweep_dirs(runs):  # a kill before the sweep directory exists leaves nothing
        _kill_at(_start("sweep", "cfg.yaml", "--runs-dir", "runs", cwd=work), rng.uniform(8, 20))
    (sweep,) = sweep_dirs(runs)
    done = cli("resume", sweep, cwd=work)
    assert done.returncode == 0, f"seed {seed}\n" + done.stdout + done.stderr
    assert trial_table(runs, sweep) == want, f"seed {seed}"
    # No trial process outlived its sweep: every run's lock is free, and no trial ran twice.
    trials = [p for p in sweep.iterdir() if (p / "run.json").is_file()]
    assert len(trials) == 2, (seed, trials)
    for run in trials:
        info = run_info(run)
        assert info["status"] == "completed", (seed, info)


# ---------------------------------------------------------------- PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url() -> str:
    """A throwaway PostgreSQL server on a free port, for the test only."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL's initdb/pg_ctl are not on PATH")
    pytest.importorskip("psycopg", reason="psycopg is not installed (the sweep extra)")
    prefix: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="trainrun-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            runuser = None
        if runuser is None:
            pytest.skip("running as root, and no 'postgres' user for PostgreSQL to run as")
        shutil.chown(home, "postgres")
        prefix = [runuser, "-u", "postgres", "--"]
    data, port = home / "data", _free_port()
    try:
        subprocess.run([*prefix, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(
            [*prefix, pg_ctl, "-D", data, "-l", home / "log", "-w", "start",
             "-o", f"-p {port} -k {home} -c listen_addresses=127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    """A study in PostgreSQL: the trials land there, and a second machine could join it."""
    (tmp_path / "cfg.yaml").write_text(CONFIG.replace("epochs: 2", "epochs: 1"))
    args = ["--param", "fit.batch_size=[64]", "--storage", postgres_url, "--study", "shared"]
    result = cli("sweep", "cfg.yaml", "--runs-dir", "runs", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (first,) = sweep_dirs(tmp_path / "runs")
    assert [row[1:3] for row in trial_table(tmp_path / "runs", first)] == [["complete", "64"]]
    # the same study from another sweep directory (another machine): it sees the trial
    # in PostgreSQL, whose one grid point is done, so nothing more runs
    again = cli("sweep", "cfg.yaml", "--runs-dir", "other", *args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "trial 0 started" not in again.stdout
    (second,) = sweep_dirs(tmp_path / "other")
    assert trial_table(tmp_path / "other", second) == trial_table(tmp_path / "runs", first)
    # a different sweep may not join it
    other = cli("sweep", "cfg.yaml", "--runs-dir", "x", *args[2:], "--param", "fit.batch_size=[8]",
                cwd=tmp_path)  # fmt: skip
    assert_clean_error(other, "study 'shared'", "different sweep")
