"""JAX: the steps of one execution as one XLA program, not a Python loop of steps.

Keras' JAX trainer runs the `steps_per_execution` steps of a call as a Python
loop over its jitted step: every step is a dispatch from Python, and on a GPU
that dispatch, not the math, bounds a small model's speed. `ScanSteps` stacks
the batches of one execution and runs Keras' own `train_step` (`test_step`)
over them with `jax.lax.scan`, in one jitted call. The steps and their order
are Keras': on the CPU the weights are bitwise those of Keras' loop (tested).

Batches of another shape (an epoch's short last batch) start a new group; each
group is one call, and a group of one batch is Keras' single jitted step. The
groups of an epoch depend only on where its executions start, which a resumed
run shares with the uninterrupted one (state is saved at execution ends).
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import jax.numpy as jnp
import keras

from trainrun import keras_compat


class ScanSteps:
    """A trainer step function ``(state, iterator) -> (logs, state)`` running up to
    `steps` batches of `iterator` as scans over `step` (Keras' train or test step)."""

    def __init__(self, step: Any, steps: int) -> None:
        self.steps = steps
        self.single = jax.jit(step, donate_argnums=0)

        def scanned(state: Any, stacked: Any) -> tuple[Any, Any]:
            def body(carry: Any, data: Any) -> tuple[Any, Any]:
                logs, carry = step(carry, data)
                return carry, logs

            state, logs = jax.lax.scan(body, state, stacked)
            return jax.tree.map(lambda t: t[-1], logs), state

        self.scanned = jax.jit(scanned, donate_argnums=0)

    def __call__(self, state: Any, iterator: Any) -> tuple[Any, Any]:
        batches = list(itertools.islice(iterator, self.steps))
        if not batches:
            raise StopIteration  # the epoch's data is done: Keras ends the epoch
        logs = None
        for _, group in itertools.groupby(batches, key=_signature):
            group = list(group)
            if len(group) == 1:
                logs, state = self.single(state, group[0])
            else:
                stacked = jax.tree.map(lambda *parts: jnp.stack(parts), *group)
                logs, state = self.scanned(state, stacked)
        return logs, state


def _signature(batch: Any) -> tuple:
    leaves, structure = jax.tree.flatten(batch)
    return structure, tuple((tuple(a.shape), str(a.dtype)) for a in leaves)


def install(model: Any, steps_per_execution: int, setting: str | bool = True) -> bool:
    """Use `ScanSteps` for `model`'s fit and evaluate where Keras would loop in
    Python: more than one step per execution, compiled, one device; with
    `setting` 'auto' (compile.scan_steps) only on an accelerator. Returns whether
    it did. (Under keras.distribution Keras' own steps keep their shardings.)"""
    if setting == "auto":
        # Measured on the 2-core CPU (MNIST MLP, 93 steps an execution): epochs the
        # same as Keras' loop, the first one 0.4 s (cache warm) to 1.9 s longer.
        setting = jax.devices()[0].platform != "cpu"
    if (
        not setting
        or steps_per_execution <= 1
        or model.run_eagerly
        or not model.jit_compile
        or keras.distribution.distribution() is not None
        or keras.config.is_nnx_enabled()
    ):
        return False
    keras_compat.use_step_functions(
        model,
        train=ScanSteps(model.train_step, steps_per_execution),
        test=ScanSteps(model.test_step, steps_per_execution),
    )
    return True
