"""The Keras callback that logs each epoch to a run's tracker."""

from __future__ import annotations

from typing import Any

import keras

from trainrun.tracking.mlflow import MlflowTracker


class TrackingCallback(keras.callbacks.Callback):
    """Logs the epochs the run's history holds and the tracker has not logged yet.

    Placed after StateKeeper: an epoch is logged only once its state is saved, so a
    run killed in between and resumed does not train, and log, that epoch twice.
    An epoch whose log was missed (a kill, Ctrl-C at the epoch's end, a store that
    did not answer) is logged at the next epoch end or when the run finishes.
    """

    def __init__(self, tracker: MlflowTracker, history: list[dict[str, Any]]) -> None:
        super().__init__()
        self.tracker = tracker
        self.history = history

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.tracker.log_epochs(self.history)
