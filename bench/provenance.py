"""What recording a run's provenance costs, and that a large data file is hashed once.

1. A short MNIST run (`configs/mnist_mlp.yaml`, 1 epoch): the seconds recording took
   (run.json `provenance.seconds`) against the run's training time and whole process.
2. `trainrun resume`'s check of an unchanged run (in process, median of 20).
3. A large data file: hashed once (cold), then a new run on it (the user cache
   answers), then a resume (the run's record answers).

    TRAINRUN_DATA_DIR=DIR python bench/provenance.py [--repeats 3] [--large-mb 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainrun.runs import provenance  # noqa: E402
from trainrun.runs.rundir import RunDir  # noqa: E402


def short_run(runs: Path, env: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "trainrun", "fit", str(ROOT / "configs" / "mnist_mlp.yaml"),
         "--set", "fit.epochs=1", "--runs-dir", str(runs)],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    newest = max(runs.iterdir(), key=lambda p: p.stat().st_mtime)
    return wall, json.loads((newest / "run.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-mb", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        env = {**os.environ, "TRAINRUN_CACHE_DIR": str(tmp_path / "cache")}
        env.setdefault("TRAINRUN_DATA_DIR", str(ROOT / "tests" / "data"))
        os.environ["TRAINRUN_CACHE_DIR"] = env["TRAINRUN_CACHE_DIR"]
        rows = []
        for _ in range(args.repeats):
            wall, info = short_run(tmp_path / "runs", env)
            rows.append((info["provenance"]["seconds"], info["train_seconds"], wall))
        rec = statistics.median(r[0] for r in rows)
        train = statistics.median(r[1] for r in rows)
        wall = statistics.median(r[2] for r in rows)
        print(f"short MNIST run ({args.repeats} runs, medians, data {env['TRAINRUN_DATA_DIR']}):")
        print(f"  recording provenance {rec * 1000:.1f} ms")
        print(f"  training             {train:.2f} s   -> {100 * rec / train:.2f} % of it")
        print(f"  whole process        {wall:.2f} s   -> {100 * rec / wall:.2f} % of it")

        run = RunDir(max((tmp_path / "runs").iterdir(), key=lambda p: p.stat().st_mtime))
        record = run.read_record()
        times = []
        for _ in range(20):
            t = time.perf_counter()
            found = provenance.check_unchanged(run.path, record, run.config_file, allow=False)
            times.append(time.perf_counter() - t)
        assert found == []
        print(f"resume's check of the unchanged run: {statistics.median(times) * 1000:.1f} ms")

        big = tmp_path / "large.bin"
        with big.open("wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(args.large_mb):
                f.write(block)
        os.sync()
        cache = provenance.HashCache()
        t = time.perf_counter()
        first = provenance.file_entry(big, None, cache)
        cold = time.perf_counter() - t
        cache.save()
        fresh = provenance.HashCache()
        t = time.perf_counter()
        provenance.file_entry(big, None, fresh)
        cached = time.perf_counter() - t
        again = provenance.HashCache()
        t = time.perf_counter()
        provenance.file_entry(big, first, again)
        recorded = time.perf_counter() - t
        assert cache.hashed == [str(big)] and fresh.hashed == [] and again.hashed == []
        print(f"a {args.large_mb} MiB data file:")
        print(f"  first hash (read in full)     {cold:.2f} s ({args.large_mb / cold:.0f} MiB/s)")
        print(f"  a new run on it (user cache)  {cached * 1000:.2f} ms, not read")
        print(f"  a resume (the run's record)   {recorded * 1000:.2f} ms, not read")


if __name__ == "__main__":
    main()
