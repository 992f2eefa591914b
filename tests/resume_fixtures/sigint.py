import os
import signal

import keras


class InterruptAt(keras.callbacks.Callback):
    """Test helper: sends this process SIGINT, like Ctrl-C, at INT_AT='E:B[:times]'."""

    def __init__(self):
        super().__init__()
        spec = os.environ.get("INT_AT")
        parts = [int(v) for v in spec.split(":")] if spec else None
        self.at = tuple(parts[:2]) if parts else None
        self.times = parts[2] if parts and len(parts) > 2 else 1
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.at and (self.epoch, batch) == self.at:
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)
