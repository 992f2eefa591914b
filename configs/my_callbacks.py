"""Custom callbacks for custom_callback.yaml (after Keras' "Writing your own callbacks")."""

import keras


class LossAndErrorPrintingCallback(keras.callbacks.Callback):
    """Prints the loss and accuracy at the end of every `every`-th epoch.

    Implements trainrun's optional get_state/set_state protocol, so a resumed
    run continues its count exactly.
    """

    def __init__(self, every=1):
        super().__init__()
        self.every = every
        self.epochs_seen = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_seen += 1
        if self.epochs_seen % self.every == 0:
            logs = logs or {}
            print(
                f"The average loss for epoch {epoch} is {logs.get('loss', float('nan')):7.2f} "
                f"and accuracy is {logs.get('sparse_categorical_accuracy', float('nan')):7.2f}."
            )

    def get_state(self):
        return {"epochs_seen": self.epochs_seen}

    def set_state(self, state):
        self.epochs_seen = state["epochs_seen"]
