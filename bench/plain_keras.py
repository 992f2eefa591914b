"""The plain Keras script a user would otherwise write: same model, data, seed, epochs.

Keras defaults throughout (no steps_per_execution, no jit_compile argument).
Prints one JSON line with its own timings; the benchmark measures wall time and
peak memory from outside.

    python bench/plain_keras.py {mlp|cnn} EPOCHS [SEED] [STEPS_PER_EXECUTION]
"""

import json
import os
import sys
import time

T0 = time.time()

import keras  # noqa: E402
import numpy as np  # noqa: E402

kind, epochs = sys.argv[1], int(sys.argv[2])
spe = int(sys.argv[4]) if len(sys.argv) > 4 else 1  # Keras' default
keras.utils.set_random_seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)

path = os.path.join(
    os.environ.get("TRAINRUN_DATA_DIR", os.path.expanduser("~/.keras/datasets")), "mnist.npz"
)
with np.load(path) as f:
    x_train, y_train = f["x_train"], f["y_train"]

if kind == "mlp":
    x = x_train.reshape(60000, 784).astype("float32") / 255
    model = keras.Sequential(
        [
            keras.Input(shape=(784,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=0.001),
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
        steps_per_execution=spe,
    )
    batch_size, split, acc = 64, 0.2, "val_sparse_categorical_accuracy"
else:
    x = x_train.reshape(60000, 28, 28, 1).astype("float32") / 255
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=spe,
    )
    batch_size, split, acc = 128, 0.1, "val_accuracy"


class Timing(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.first_step = None
        self.epochs = []

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step is None:
            self.first_step = time.time() - T0

    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(time.time() - self.t)


timing = Timing()
history = model.fit(
    x,
    y_train,
    batch_size=batch_size,
    epochs=epochs,
    validation_split=split,
    callbacks=[timing],
    verbose=0,
)
print(
    json.dumps(
        {
            "first_step_s": timing.first_step,
            "epoch_s": timing.epochs,
            "val_acc": history.history[acc][-1],
        }
    )
)
