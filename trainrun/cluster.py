"""This process's place in a cluster of training processes, from the environment,
read without Keras or TensorFlow (so that `fit` and `resume` can place a
non-chief worker's files before anything else happens).

TensorFlow's MultiWorkerMirroredStrategy reads TF_CONFIG; JAX (engine/jax_cluster.py)
reads Keras' KERAS_DISTRIBUTION_* variables, or TF_CONFIG when they are unset.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from trainrun.errors import TrainrunError


@dataclass(frozen=True)
class Task:
    """This process's place in a multi-worker cluster (TF_CONFIG; on JAX also Keras' variables)."""

    type: str
    index: int
    num_workers: int
    is_chief: bool

    @property
    def name(self) -> str:
        return f"{self.type}-{self.index}"


def tf_config_task() -> Task | None:
    """This process's task from $TF_CONFIG, or None when it is unset.

    Read without TensorFlow, so `fit` and `resume` can place a non-chief
    worker's files before anything else happens.
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    example = (
        '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TrainrunError(
            f"TF_CONFIG is not valid JSON ({exc}); expected e.g. {example}"
        ) from None
    cluster = conf.get("cluster") if isinstance(conf, dict) else None
    task = conf.get("task") if isinstance(conf, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TrainrunError(
            f"TF_CONFIG needs a 'cluster' and a 'task' mapping, got {raw!r}; expected e.g. {example}"
        )
    kind, index = task.get("type"), task.get("index", 0)
    jobs = {k: v for k, v in cluster.items() if k in ("chief", "worker")}
    if kind not in jobs:
        raise TrainrunError(
            f"TF_CONFIG task type {kind!r} is not a job of its cluster ({', '.join(cluster) or 'none'}); "
            "MultiWorkerMirroredStrategy runs 'chief' and 'worker' tasks"
        )
    if not isinstance(index, int) or not 0 <= index < len(jobs[kind]):
        raise TrainrunError(
            f"TF_CONFIG task index {index!r} is out of range: the cluster has "
            f"{len(jobs[kind])} {kind} address(es)"
        )
    num_workers = sum(len(v) for v in jobs.values())
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in jobs)
    return Task(kind, index, num_workers, is_chief)


def worker_subdir(task: Task | None) -> str | None:
    """Where a non-chief worker writes, relative to the chief's run directory."""
    if task is None or task.is_chief or task.num_workers < 2:
        return None
    return task.name


def own_run_ref(ref: str | Path, runs_dir: Path) -> str | Path:
    """On a non-chief worker, `trainrun resume runs/<id>` means its own runs/<id>/<task>/."""
    with contextlib.suppress(TrainrunError):  # a bad cluster is reported by setup, if used
        place = cluster()
        sub = worker_subdir(place.task if place else None)
        if sub:
            for base in (Path(ref), Path(runs_dir) / str(ref)):
                if (base / sub / "run.json").is_file():
                    return base / sub
    return ref


# ---------------------------------------------------------------- JAX

ENV = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def is_set() -> bool:
    """Whether this process's environment describes a cluster (Keras' variables or TF_CONFIG)."""
    return any(os.environ.get(name, "").strip() for name in (*ENV, "TF_CONFIG"))


@dataclass(frozen=True)
class Cluster:
    task: Task  # this process's place: its directory (worker-<i>), whether it is the chief
    coordinator: str  # host:port of process 0
    process_id: int  # JAX's process index: the chief first, then the workers in order


def cluster() -> Cluster | None:
    """This process's place in the cluster the environment describes; None when
    nothing describes one (one process)."""
    values = {name: os.environ.get(name, "").strip() for name in ENV}
    if any(values.values()):
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise TrainrunError(
                f"{', '.join(missing)} not set: a JAX cluster needs all of {', '.join(ENV)} "
                "on every process (or TF_CONFIG)"
            )
        addresses, count, index = values.values()
        try:
            num, pid = int(count), int(index)
        except ValueError:
            raise TrainrunError(
                f"KERAS_DISTRIBUTION_NUM_PROCESSES={count!r}, KERAS_DISTRIBUTION_PROCESS_ID="
                f"{index!r}: expected whole numbers"
            ) from None
        if num < 1 or not 0 <= pid < num:
            raise TrainrunError(
                f"KERAS_DISTRIBUTION_PROCESS_ID={pid} is out of range for "
                f"KERAS_DISTRIBUTION_NUM_PROCESSES={num}: expected 0 to {num - 1}"
            )
        coordinator = addresses.split(",")[0].strip()
        return Cluster(Task("worker", pid, num, pid == 0), coordinator, pid)
    task = tf_config_task()
    if task is None:
        return None
    jobs = json.loads(os.environ["TF_CONFIG"])["cluster"]
    coordinator = (jobs.get("chief") or jobs["worker"])[0]
    pid = 0 if task.type == "chief" else task.index + (1 if jobs.get("chief") else 0)
    return Cluster(task, coordinator, pid)
