"""trainrun vs the plain Keras script a user would write: same model, data, seed, epochs.

Runs both as separate processes, alternating, several times, and prints a table of
medians: whole-process wall time, time to first step, epoch time (first epoch,
which includes tracing/compilation, and the mean of the others), peak RSS and
final validation accuracy, with the ratio trainrun / Keras. Repeat i runs both
sides with seed i, so the accuracies compared are means over as many seeds:
one seed's result moves by a few tenths of a point with the shuffle order alone.

    TRAINRUN_DATA_DIR=DIR python bench/bench.py [--repeats 5] [--workloads mlp,cnn]
        [--long-epochs 300] [--backend tensorflow|jax|torch]

--backend runs both sides on that Keras backend: the plain script with
KERAS_BACKEND set, trainrun with `--set backend=...`. On JAX the MLP also gets
its floor: the same training written by hand in JAX (bench/jax_floor.py: data on
the device, one jitted scan an epoch, no validation), and trainrun's distance to
it. --keras-steps-per-execution N gives the plain script Keras'
steps_per_execution (default: Keras' default, 1).
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
WORKLOADS = {
    # name: (trainrun config, plain script kind, epochs)
    "mlp": ("configs/mnist_mlp.yaml", "mlp", 5),
    "cnn": ("configs/mnist_cnn.yaml", "cnn", 3),
}

# trainrun's own callbacks, timed in run.json's timing.callbacks_s; shares of training time.
PIECES = {
    "StateKeeper": "state saving",
    "CSVLogger": "CSV log",
    "TensorBoard": "TensorBoard",
    "ProgressBridge": "progress",
}


def run_measured(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit {proc.returncode}:\n{out}")
    return wall, usage.ru_maxrss // 1024, out


def keras_once(kind: str, epochs: int, seed: int, env: dict, spe: int = 1) -> dict:
    script = [str(ROOT / "bench" / "plain_keras.py"), kind, str(epochs), str(seed), str(spe)]
    wall, rss, out = run_measured([sys.executable, *script], env)
    result = json.loads(out.strip().splitlines()[-1])
    return {"wall": wall, "rss": rss, **result}


def trainrun_once(config: str, epochs: int, seed: int, env: dict, backend: str) -> dict:
    with tempfile.TemporaryDirectory() as runs:
        cmd = [
            sys.executable,
            "-m",
            "trainrun",
            "fit",
            str(ROOT / config),
            "--runs-dir",
            runs,
            "--set",
            f"fit.epochs={epochs}",
            "--set",
            f"seed={seed}",
            "--set",
            "outputs.tensorboard=true",
            "--set",
            f"backend={backend}",
        ]
        wall, rss, _ = run_measured(cmd, env)
        (run,) = Path(runs).iterdir()
        info = json.loads((run / "run.json").read_text())
        rows = (run / "history.csv").read_text().strip().splitlines()
        header = rows[0].split(",")
        last = dict(zip(header, rows[-1].split(","), strict=True))
        acc = next(k for k in ("val_sparse_categorical_accuracy", "val_accuracy") if k in last)
        t = info["timing"]
        return {
            "wall": wall,
            "rss": rss,
            "first_step_s": t["first_step_s"],
            "epoch_s": t["epoch_s"],
            "val_acc": float(last[acc]),
            "train_s": info["train_seconds"],
            "callbacks_s": t["callbacks_s"],
        }


def floor_once(epochs: int, env: dict) -> list[float]:
    """Epoch seconds of the hand-written JAX MLP (bench/jax_floor.py)."""
    _, _, out = run_measured(
        [sys.executable, str(ROOT / "bench" / "jax_floor.py"), str(epochs)], env
    )
    return json.loads(out.strip().splitlines()[-1])["epoch_s"]


def summarize(results: list[dict]) -> dict:
    med = lambda key: statistics.median(r[key] for r in results)  # noqa: E731
    return {
        "wall": med("wall"),
        "first_step_s": med("first_step_s"),
        "epoch1": statistics.median(r["epoch_s"][0] for r in results),
        "epoch_rest": statistics.median(statistics.mean(r["epoch_s"][1:]) for r in results),
        "rss": med("rss"),
        "val_acc": statistics.mean(r["val_acc"] for r in results),
        "shares": {  # a piece that did not run (TensorBoard without TensorFlow) is left out
            piece: statistics.median(r["callbacks_s"][piece] / r["train_s"] for r in results)
            for piece in PIECES
            if all(piece in r["callbacks_s"] for r in results)
        }
        if "callbacks_s" in results[0]
        else None,
    }


def device_name(env: dict, backend: str) -> str:
    """The device the backend computes on, as a reader names it."""
    probe = {
        "jax": "import jax; d = jax.devices()[0]; print(getattr(d, 'device_kind', d))",
        "torch": "import torch; c = torch.cuda.is_available(); "
        "print(torch.cuda.get_device_name(0) if c else 'cpu')",
        "tensorflow": "import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); "
        "print(g[0].name if g else 'cpu')",
    }[backend]
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else "?"


def startup(env: dict, repeats: int) -> None:
    """Commands that must not import TensorFlow: their whole-process wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.yaml"
        bad.write_text("model: {layers: [Dense]}\ncallbacks: [{EarlyStopping: {patiance: 2}}]\n")
        commands = {
            "trainrun --help": ["--help"],
            "trainrun callbacks": ["callbacks"],
            "trainrun runs": ["runs", "--runs-dir", tmp],
            "config error": ["fit", str(bad), "--runs-dir", tmp],
        }
        print(f"{'startup (no TensorFlow)':31} {'median (s)':>10}")
        for label, args in commands.items():
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "trainrun", *args], env=env, capture_output=True
                )
                times.append(time.perf_counter() - t0)
            print(f"{label:31} {statistics.median(times):10.3f}")
        print()


def long_run(env: dict, epochs: int) -> None:
    """Many tiny epochs: logs, history and resume state grow; epochs must not slow down."""
    window = max(1, epochs // 6)
    with tempfile.TemporaryDirectory() as runs:
        cmd = [
            *(sys.executable, "-m", "trainrun", "fit", str(ROOT / "configs/mnist_mlp.yaml")),
            *("--runs-dir", runs, "--set", f"fit.epochs={epochs}"),
            *("--set", "data.limit.train=640", "--set", "outputs.state_every=2"),
        ]
        wall, _, _ = run_measured(cmd, env)
        (run,) = Path(runs).iterdir()
        info = json.loads((run / "run.json").read_text())
        times = info["timing"]["epoch_s"][1:]  # the first one traces
        early = statistics.median(times[:window])
        late = statistics.median(times[-window:])
        rows = len((run / "history.csv").read_text().splitlines()) - 1
        state = sum(f.stat().st_size for f in (run / "state").rglob("*") if f.is_file())
        print(
            f"long run: {epochs} epochs of 8 steps, state saved every 2 steps, "
            f"{wall:.1f} s; history.csv {rows} rows, run.json "
            f"{(run / 'run.json').stat().st_size / 1024:.0f} KiB, state/ {state / 1024:.0f} KiB"
        )
        print(
            f"long run: median epoch, epochs 2-{window + 1}: {1000 * early:.1f} ms; "
            f"last {window}: {1000 * late:.1f} ms; ratio {late / early:.2f}\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument(
        "--long-epochs", type=int, default=300, help="epochs of the long-run check (0: skip)"
    )
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax", "torch"))
    parser.add_argument("--keras-steps-per-execution", type=int, default=1, metavar="N")
    args = parser.parse_args()
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["KERAS_BACKEND"] = args.backend  # the plain script's backend; trainrun's is --set
    # Both sides read the full MNIST: $TRAINRUN_DATA_DIR/mnist.npz, else Keras' cache.
    cached = Path.home() / ".keras" / "datasets"
    if not env.get("TRAINRUN_DATA_DIR") and (cached / "mnist.npz").is_file():
        env["TRAINRUN_DATA_DIR"] = str(cached)
    if not (Path(env.get("TRAINRUN_DATA_DIR", "")) / "mnist.npz").is_file():
        sys.exit("bench: set TRAINRUN_DATA_DIR to a folder with the full mnist.npz")
    env["TRAINRUN_DATA_DIR"] = str(Path(env["TRAINRUN_DATA_DIR"]).resolve())
    print(
        f"backend {args.backend}, {device_name(env, args.backend)}, "
        f"plain Keras steps_per_execution {args.keras_steps_per_execution}, {os.cpu_count()} CPUs, {args.repeats} alternating repeats (seeds 1-{args.repeats}), "
        "medians; accuracy: mean over the seeds\n"
    )
    startup(env, max(args.repeats, 3))
    if args.long_epochs:
        long_run(env, args.long_epochs)
    header = f"{'workload':8} {'measure':22} {'keras':>10} {'trainrun':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name in args.workloads.split(","):
        config, kind, epochs = WORKLOADS[name]
        keras_runs, trainrun_runs, floors = [], [], []
        for seed in range(1, args.repeats + 1):
            keras_runs.append(keras_once(kind, epochs, seed, env, args.keras_steps_per_execution))
            trainrun_runs.append(trainrun_once(config, epochs, seed, env, args.backend))
            if args.backend == "jax" and name == "mlp":
                floors.append(floor_once(epochs, env))
        k, t = summarize(keras_runs), summarize(trainrun_runs)
        rows = [
            ("whole process (s)", "wall", "{:.2f}"),
            ("time to first step (s)", "first_step_s", "{:.2f}"),
            ("epoch 1 (s)", "epoch1", "{:.2f}"),
            (f"epochs 2-{epochs} mean (s)", "epoch_rest", "{:.2f}"),
            ("peak RSS (MiB)", "rss", "{:.0f}"),
            ("val accuracy (mean)", "val_acc", "{:.4f}"),
        ]
        for label, key, fmt in rows:
            ratio = t[key] / k[key] if k[key] else float("nan")
            print(
                f"{name:8} {label:22} {fmt.format(k[key]):>10} {fmt.format(t[key]):>10} {ratio:7.2f}"
            )
        for piece, share in t["shares"].items():
            print(f"{name:8} {PIECES[piece] + ' share':22} {'':>10} {share:10.1%}")
        print(
            f"{name:8} {'accuracy gap (points)':22} {'':>10} {100 * (t['val_acc'] - k['val_acc']):+10.2f}"
        )
        if floors:
            floor = statistics.median(statistics.mean(f[1:]) for f in floors)
            print(
                f"{name:8} {'floor, epochs 2+ (s)':22} {'hand-written JAX':>21} {floor:7.3f}\n"
                f"{name:8} {'trainrun / floor':22} {'':>10} {t['epoch_rest'] / floor:10.1f}x"
            )
        print()


if __name__ == "__main__":
    main()
