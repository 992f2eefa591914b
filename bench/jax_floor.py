"""The floor for an MNIST MLP epoch on JAX: what no runner on top of Keras can beat.

The bench's MLP (784-64-64-10, RMSprop lr 0.001, batch 64, the first 48,000
training images, as with validation_split 0.2) written by hand in JAX: the data
on the device, a whole epoch one jitted `lax.scan` over its batches, no
validation, no callbacks, no metrics. bench.py prints trainrun's epoch time
against it ("distance to the floor").

    python bench/jax_floor.py [EPOCHS]    # prints one JSON line: {"epoch_s": [...]}
"""

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 4
path = os.path.join(os.environ["TRAINRUN_DATA_DIR"], "mnist.npz")
with np.load(path) as f:
    x_train, y_train = f["x_train"][:48000], f["y_train"][:48000]
BATCH = 64
steps = len(x_train) // BATCH
x = jax.device_put(x_train.reshape(-1, 784))
y = jax.device_put(y_train.astype(np.int32))


def init(key):
    sizes = [784, 64, 64, 10]
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        key, sub = jax.random.split(key)
        limit = np.sqrt(6 / (n_in + n_out))  # Glorot uniform, as Keras' Dense
        params.append(
            (jax.random.uniform(sub, (n_in, n_out), minval=-limit, maxval=limit), jnp.zeros(n_out))
        )
    return params


def loss_fn(params, xb, yb):
    h = xb.astype(jnp.float32) / 255.0
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    logp = jax.nn.log_softmax(h)
    return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))


@jax.jit
def epoch(params, avg, perm):
    def step(carry, idx):
        params, avg = carry
        grads = jax.grad(loss_fn)(params, x[idx], y[idx])
        avg = jax.tree.map(lambda a, g: 0.9 * a + 0.1 * g * g, avg, grads)
        params = jax.tree.map(
            lambda p, g, a: p - 0.001 * g / (jnp.sqrt(a) + 1e-7), params, grads, avg
        )
        return (params, avg), None

    (params, avg), _ = jax.lax.scan(step, (params, avg), perm.reshape(steps, BATCH))
    return params, avg


params = init(jax.random.PRNGKey(1))
avg = jax.tree.map(jnp.zeros_like, params)
times = []
for e in range(epochs):
    perm = jax.random.permutation(jax.random.PRNGKey(e), steps * BATCH)
    t0 = time.perf_counter()
    params, avg = epoch(params, avg, perm)
    jax.block_until_ready(params)
    times.append(time.perf_counter() - t0)
print(json.dumps({"epoch_s": times, "device": str(jax.devices()[0])}))
