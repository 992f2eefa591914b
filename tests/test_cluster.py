"""A process's place in a cluster (TF_CONFIG, or Keras' KERAS_DISTRIBUTION_* on JAX),
and the NumPy feed's share of each batch under multi-process JAX training.

The two-process runs themselves are in test_distribute.py (TensorFlow) and
test_backends.py (JAX).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainrun import cluster
from trainrun.errors import TrainrunError

KERAS_ENV = cluster.ENV


@pytest.fixture
def no_cluster(monkeypatch):
    for name in (*KERAS_ENV, "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_tf_config_task(no_cluster):
    monkeypatch = no_cluster
    assert cluster.tf_config_task() is None

    def task(jobs: dict, kind: str, index: int):
        monkeypatch.setenv(
            "TF_CONFIG", json.dumps({"cluster": jobs, "task": {"type": kind, "index": index}})
        )
        return cluster.tf_config_task()

    workers = {"worker": ["h1:1", "h2:1", "h3:1"]}
    t0, t2 = task(workers, "worker", 0), task(workers, "worker", 2)
    assert (t0.is_chief, t0.num_workers) == (True, 3)
    assert (t2.is_chief, t2.name) == (False, "worker-2")
    assert cluster.worker_subdir(t0) is None and cluster.worker_subdir(t2) == "worker-2"
    # With a separate chief job, worker 0 is not the chief.
    with_chief = {"chief": ["c:1"], "worker": ["h1:1"]}
    assert task(with_chief, "chief", 0).is_chief
    assert not task(with_chief, "worker", 0).is_chief
    assert task(with_chief, "worker", 0).num_workers == 2

    for bad, needle in (
        ("{not json", "not valid JSON"),
        (json.dumps({"cluster": workers}), "needs a 'cluster' and a 'task'"),
        (json.dumps({"cluster": workers, "task": {"type": "ps", "index": 0}}), "'ps'"),
        (json.dumps({"cluster": workers, "task": {"type": "worker", "index": 3}}), "out of range"),
    ):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(TrainrunError, match=needle):
            cluster.tf_config_task()


def test_jax_cluster_from_keras_variables(no_cluster):
    monkeypatch = no_cluster
    assert cluster.cluster() is None and not cluster.is_set()
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:2345")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    place = cluster.cluster()
    assert cluster.is_set()
    assert place.coordinator == "10.0.0.1:1234" and place.process_id == 1
    assert place.task.name == "worker-1" and not place.task.is_chief
    assert place.task.num_workers == 2
    # Keras' variables win over a TF_CONFIG also set.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["x:1"]}, "task": {}}))
    assert cluster.cluster().coordinator == "10.0.0.1:1234"


def test_jax_cluster_from_tf_config(no_cluster):
    """One launch script for both backends: the chief (else worker 0) is JAX's process 0."""
    monkeypatch = no_cluster
    jobs = {"chief": ["c:1"], "worker": ["w0:1", "w1:1"]}
    places = {}
    for kind, index in (("chief", 0), ("worker", 0), ("worker", 1)):
        monkeypatch.setenv(
            "TF_CONFIG", json.dumps({"cluster": jobs, "task": {"type": kind, "index": index}})
        )
        places[kind, index] = cluster.cluster()
    assert {k: p.process_id for k, p in places.items()} == {
        ("chief", 0): 0,
        ("worker", 0): 1,
        ("worker", 1): 2,
    }
    assert {p.coordinator for p in places.values()} == {"c:1"}
    assert places["worker", 1].task.name == "worker-1"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"},
            "KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_PROCESS_ID not set",
        ),
        (
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": "h:1",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "two",
                "KERAS_DISTRIBUTION_PROCESS_ID": "0",
            },
            "expected whole numbers",
        ),
        (
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": "h:1",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                "KERAS_DISTRIBUTION_PROCESS_ID": "2",
            },
            "expected 0 to 1",
        ),
    ],
)
def test_bad_keras_variables_are_one_line(no_cluster, env, needle):
    for name, value in env.items():
        no_cluster.setenv(name, value)
    with pytest.raises(TrainrunError, match=needle):
        cluster.cluster()


def test_process_shares_make_the_batch():
    """Each process's part of a batch, in process order, is the batch one process feeds."""
    from trainrun.data.numpy_feed import Share

    def gather(index: np.ndarray) -> tuple:
        return (index * 10,)

    index = np.array([7, 3, 5, 1, 0, 2])
    parts = [Share(gather, k, 3)(index)[0] for k in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    np.testing.assert_array_equal(np.concatenate(parts), gather(index)[0])


def test_a_coordinator_port_in_use_is_refused_in_one_line():
    """JAX's coordination service crashes (a segmentation fault) on a port in use."""
    import socket

    from trainrun.engine.jax_cluster import check_port_free

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TrainrunError, match=f"port {port} of the coordinator .* is in use"):
            check_port_free(f"127.0.0.1:{port}")
    check_port_free(f"127.0.0.1:{port}")  # free again
    with pytest.raises(TrainrunError, match="has no port"):
        check_port_free("somehost")
