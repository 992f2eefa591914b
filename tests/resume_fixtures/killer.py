import os
import signal

import keras


class KillAt(keras.callbacks.Callback):
    """Test helper: SIGKILLs this process at KILL_AT, a no-op when it is unset.

    KILL_AT='E:B' after batch B of epoch E, 'E:-1' as epoch E begins,
    'E:val' while epoch E validates.
    """

    def __init__(self):
        super().__init__()
        spec = os.environ.get("KILL_AT")
        self.at = tuple(spec.split(":")) if spec else None
        self.epoch = 0

    def _kill(self, epoch, where):
        if self.at == (str(epoch), str(where)):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._kill(epoch, -1)

    def on_train_batch_end(self, batch, logs=None):
        self._kill(self.epoch, batch)

    def on_test_begin(self, logs=None):
        self._kill(self.epoch, "val")
