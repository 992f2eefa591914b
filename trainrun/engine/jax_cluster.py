"""`distribute: multi_worker` on JAX: several processes (machines) train one model.

Keras' own multi-process set-up for JAX, `keras.distribution.initialize`, joins
the processes through `jax.distributed` (process 0 is the coordinator); then
`keras.distribution.DataParallel` over every process's devices makes each step
one program across all of them. Each process feeds its own share of every
global batch (`NumpyFeed.share`): Keras' `auto_shard_dataset` is for tf.data only.

Where the cluster is described: Keras' variables, on every process

    KERAS_DISTRIBUTION_JOB_ADDRESSES=10.0.0.1:1234   (the coordinator, process 0)
    KERAS_DISTRIBUTION_NUM_PROCESSES=2
    KERAS_DISTRIBUTION_PROCESS_ID=0 | 1

or, when they are unset, the TF_CONFIG that the TensorFlow backend reads: the
chief (or worker 0) is the coordinator, at its address. So one launch script
serves both backends.

On a CPU, JAX's collectives across processes are gloo's (TCP); on GPUs, NCCL's.
"""

from __future__ import annotations

import atexit
import os
import socket
from typing import Any

import numpy as np

from trainrun.cluster import Cluster
from trainrun.errors import TrainrunError


def join(place: Cluster) -> None:
    """Join the cluster (Keras' `keras.distribution.initialize`): before JAX starts its
    backend, so the first call into JAX in this process."""
    import jax
    import keras

    if place.process_id == 0:
        check_port_free(place.coordinator)
    # Collectives between processes on CPU devices (NCCL's serve GPUs).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize(place.coordinator, place.task.num_workers, place.process_id)
    except Exception as exc:  # noqa: BLE001 - JAX's errors here are its runtime's, of any type
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainrunError(
            f"cannot join the JAX cluster at {place.coordinator} as process {place.process_id} "
            f"of {place.task.num_workers} ({first}); start every process with the same "
            "KERAS_DISTRIBUTION_JOB_ADDRESSES (process 0's host:port) and NUM_PROCESSES"
        ) from None
    atexit.register(_leave)


def check_port_free(coordinator: str) -> None:
    """Process 0 serves JAX's coordination service on the coordinator's port, on every
    interface. A port in use crashes JAX (a segmentation fault): refuse it in one line."""
    port_text = coordinator.rsplit(":", 1)[-1]
    if not port_text.isdigit():
        raise TrainrunError(
            f"the coordinator address {coordinator!r} has no port; expected host:port"
        )
    port = int(port_text)
    for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this machine
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise TrainrunError(
                    f"port {port} of the coordinator {coordinator} is in use on this machine "
                    f"({exc.strerror or exc}); process 0 serves the cluster there: give every "
                    "process a free one (KERAS_DISTRIBUTION_JOB_ADDRESSES, or TF_CONFIG's chief)"
                ) from None
        return


_failed: list[int] = []


def abandon(code: int) -> None:
    """This process leaves with `code` != 0: skip JAX's shutdown of the cluster at exit.

    That shutdown is a barrier with every other process; one that died (or failed)
    never reaches it, and JAX then aborts this process with a C++ stack trace.
    """
    _failed.append(code)


def _leave() -> None:
    """At exit, before JAX's own clean-up (atexit runs the last registered first)."""
    if not _failed:
        return
    from trainrun.fast_exit import flush_files

    flush_files()
    os._exit(_failed[-1])


def gather_text(text: str, *, is_chief: bool) -> list[tuple[bool, str]]:
    """Every process's (is_chief, text): a collective that all processes must join."""
    from jax.experimental import multihost_utils

    from trainrun.keras_compat import text_row, text_rows

    rows: Any = multihost_utils.process_allgather(text_row(text, is_chief=is_chief))
    return text_rows(np.asarray(rows).reshape(-1, rows.shape[-1]))
