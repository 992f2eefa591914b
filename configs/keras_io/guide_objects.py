"""The custom loss and metric of keras.io's "Training & evaluation with the built-in methods".

Used by custom_loss_metric.yaml as `guide_objects:CustomMSE` and
`guide_objects:CategoricalTruePositives`; written with `keras.ops` so they run on
any backend.
"""

from __future__ import annotations

import keras
from keras import ops


class CustomMSE(keras.losses.Loss):
    """Mean squared error plus a term that pulls predictions towards 0.5."""

    def __init__(self, regularization_factor=0.1, name="custom_mse", **kwargs):
        super().__init__(name=name, **kwargs)
        self.regularization_factor = regularization_factor

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred))
        reg = ops.mean(ops.square(0.5 - y_pred))
        return mse + reg * self.regularization_factor

    def get_config(self):
        # keras.io's version has no get_config; saving model.keras needs the factor.
        return {**super().get_config(), "regularization_factor": self.regularization_factor}


class CategoricalTruePositives(keras.metrics.Metric):
    """How many samples were classified correctly (a count, not a rate)."""

    def __init__(self, name="categorical_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="ctp")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.argmax(y_pred, axis=-1)
        # keras.io's labels are class indices; one-hot rows (CustomMSE needs them) are
        # turned back into indices.
        if len(y_true.shape) > 1 and y_true.shape[-1] != 1:
            y_true = ops.argmax(y_true, axis=-1)
        y_true = ops.reshape(y_true, (-1,))
        values = ops.cast(
            ops.equal(ops.cast(y_true, "int32"), ops.cast(y_pred, "int32")), "float32"
        )
        if sample_weight is not None:
            values = values * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        self.true_positives.assign_add(ops.sum(values))

    def result(self):
        # A copy of the variable's value, not the variable itself as keras.io returns:
        # Keras 3 keeps result() in the training logs while validation resets and
        # refills the variable, so the training count would show validation's. (Not a
        # cast either: on torch, a cast to the same dtype is the variable's own tensor.)
        return ops.copy(self.true_positives)

    def reset_state(self):
        self.true_positives.assign(0.0)
