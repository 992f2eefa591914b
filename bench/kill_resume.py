"""Exact resume after kill -9, on whatever device this machine has: a check to run
where the test suite cannot (a GPU machine).

Trains CONFIG once uninterrupted, then again killed with SIGKILL at a random
instant of its training (after its first saved state), resumes it with
`trainrun resume`, and compares the two runs: history.csv and every weight of
model.keras, bitwise. Prints one JSON line; exits 1 when they differ.

    python bench/kill_resume.py [--backend jax] [--config configs/mnist_mlp.yaml]
        [--seed 1] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def trainrun(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trainrun", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def weights(run: Path) -> dict[str, np.ndarray]:
    import h5py

    with zipfile.ZipFile(run / "model.keras") as archive:
        data = archive.read("model.weights.h5")
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(
            lambda name, obj: arrays.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None
        )
    return arrays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--config", default="configs/mnist_mlp.yaml")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    sets = [f"backend={args.backend}", "deterministic=true", "outputs.state_every=1", *args.sets]
    common = [str(ROOT / args.config), *(x for s in sets for x in ("--set", s))]
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp)
        p = trainrun("fit", *common, "--runs-dir", str(runs / "a"), env=env)
        _, err = p.communicate()
        if p.returncode != 0:
            print(json.dumps({"error": f"baseline failed: {err[-2000:]}"}))
            return 1
        (baseline,) = (runs / "a").iterdir()
        # Kill at a random instant after the first saved state, before the run's end.
        p = trainrun("fit", *common, "--runs-dir", str(runs / "b"), env=env)
        while p.poll() is None and not any((runs / "b").glob("*/state/*")):
            time.sleep(0.05)
        (run,) = (runs / "b").iterdir()
        train_s = json.loads((baseline / "run.json").read_text())["train_seconds"]
        wait = rng.uniform(0, 0.8 * train_s)
        time.sleep(wait)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.wait()
        info = json.loads((run / "run.json").read_text())
        at = {"epochs_done": info.get("epochs_done"), "after_s": round(wait, 2)}
        if not killed or info.get("status") == "completed":
            print(json.dumps({"error": "the run ended before the kill; try another --seed"}))
            return 2
        r = trainrun("resume", str(run), env=env)
        _, err = r.communicate()
        if r.returncode != 0:
            print(json.dumps({"error": f"resume failed: {err[-2000:]}", "killed_at": at}))
            return 1
        same_history = (run / "history.csv").read_text() == (baseline / "history.csv").read_text()
        a, b = weights(baseline), weights(run)
        differ = [k for k in a if k not in b or not np.array_equal(a[k], b[k])]
        devices = json.loads((run / "run.json").read_text()).get("devices", {})
        print(
            json.dumps(
                {
                    "bitwise_equal": same_history and not differ and a.keys() == b.keys(),
                    "history_equal": same_history,
                    "weights_differing": differ[:5],
                    "killed_at": at,
                    "device": devices.get("gpus") or devices.get("used"),
                    "data_on_device": devices.get("data_on_device"),
                    "scan_steps": devices.get("scan_steps"),
                }
            )
        )
        return 0 if same_history and not differ else 1


if __name__ == "__main__":
    sys.exit(main())
