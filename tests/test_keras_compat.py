"""Canaries for trainrun/keras_compat.py: each fails when Keras changes what a function
there relies on, so an upgrade breaks a test here rather than a user's run.

(The multi-worker shim's canary is tests/test_distribute.py::test_keras_still_needs_the_compat_shim.)
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # imports Keras and TensorFlow


@pytest.fixture(scope="module")
def keras():
    import keras

    return keras


@pytest.fixture(scope="module")
def compat():
    from trainrun import keras_compat

    return keras_compat


def _tiny_model(keras):
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(3, name="hidden")(inputs)
    outputs = keras.layers.Dense(2, name="out")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 4)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")


def test_timed_hooks_are_every_hook_fit_calls(keras, compat):
    hooks = {h for h in dir(keras.callbacks.Callback) if h.startswith("on_")}
    fit_hooks = {h for h in hooks if not h.startswith(("on_predict", "on_batch_"))}
    assert set(compat.TIMED_HOOKS) == fit_hooks, "Keras' callback hooks changed"


def test_timed_hooks_see_each_call_of_fit(keras, compat):
    calls = []

    class Counter(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append(batch)

    counter = Counter()
    seconds: dict[str, float] = {}
    errors = []
    compat.time_callback_hooks(counter, seconds, errors.append)
    x, y = _data()
    _tiny_model(keras).fit(x, y, batch_size=8, epochs=1, callbacks=[counter], verbose=0)
    assert calls == [0, 1]
    assert seconds["Counter"] > 0 and not errors


def test_timed_hook_reports_an_error(keras, compat):
    class Broken(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise OSError("disk")

    broken = Broken()
    errors = []
    compat.time_callback_hooks(broken, {}, errors.append)
    x, y = _data()
    with pytest.raises(OSError, match="disk"):
        _tiny_model(keras).fit(x, y, batch_size=8, epochs=1, callbacks=[broken], verbose=0)
    assert [str(e) for e in errors] == ["disk"]


def test_tensorboard_writers_and_quiet_batches(keras, compat, tmp_path):
    board = compat.TensorBoard(log_dir=str(tmp_path))
    assert isinstance(board, keras.callbacks.TensorBoard)
    # Saved states and run.json's timing name callbacks by class: it stays Keras' name.
    assert type(board).__name__ == "TensorBoard"
    x, y = _data()
    _tiny_model(keras).fit(x, y, batch_size=8, epochs=1, callbacks=[board], verbose=0)
    writers = list(compat.tensorboard_writers(board))
    assert writers, "TensorBoard no longer keeps its writers in _writers"
    for writer in writers:
        writer.flush()
    assert list(tmp_path.rglob("events.out.tfevents.*"))
    assert list(compat.tensorboard_writers(keras.callbacks.History())) == []


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("EarlyStopping", {"monitor": "loss"}),
        ("ReduceLROnPlateau", {"monitor": "loss"}),
        ("ModelCheckpoint", {"filepath": "{tmp}/m.keras"}),
        ("TensorBoard", {"log_dir": "{tmp}/tb"}),
    ],
)
def test_callback_state_attributes_exist_once_training_began(keras, compat, tmp_path, name, args):
    args = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in args.items()}
    callback = getattr(keras.callbacks, name)(**args)
    attributes = compat.callback_state_attributes(callback)
    assert attributes == compat.CALLBACK_STATE_ATTRIBUTES[name]
    x, y = _data()
    _tiny_model(keras).fit(x, y, batch_size=8, epochs=1, callbacks=[callback], verbose=0)
    missing = [a for a in attributes if not hasattr(callback, a)]
    assert not missing, f"Keras' {name} no longer has {missing}: update CALLBACK_STATE_ATTRIBUTES"


def test_callback_state_attributes_follow_subclasses(keras, compat):
    class Mine(keras.callbacks.EarlyStopping):
        pass

    assert compat.callback_state_attributes(Mine()) == compat.CALLBACK_STATE_ATTRIBUTES[
        "EarlyStopping"
    ]
    assert compat.callback_state_attributes(keras.callbacks.History()) == ()


def test_atomic_saves_write_the_file_and_leave_no_temp(keras, compat, tmp_path):
    model = _tiny_model(keras)
    compat.make_saves_atomic(model)
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "w.weights.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "w.weights.h5"]
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x, _ = _data()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_functional_graph_accessors(keras, compat):
    model = _tiny_model(keras)
    out = model.get_layer("out")
    (source,) = compat.inbound_tensors(out)
    assert compat.producing_layer(source) is model.get_layer("hidden")
    assert compat.producing_layer(model.inputs[0]).name == "x"
    assert compat.producing_layer(np.zeros(2)) is None


def test_vocabulary_layer_accessors(keras, compat):
    given = keras.layers.StringLookup(vocabulary=["a", "b"])
    adapted = keras.layers.StringLookup()
    text = keras.layers.TextVectorization(vocabulary=["a", "b"])
    assert compat.has_input_vocabulary(given) and not compat.has_input_vocabulary(adapted)
    assert compat.has_input_vocabulary(text)
    assert compat.lookup_layer(given) is given
    assert isinstance(compat.lookup_layer(text), keras.layers.StringLookup)


def test_registered_objects_hold_aliases(compat):
    assert "normal" in compat.registered_objects("initializer")


def test_symbolic_build_builds_a_compiled_model(keras, compat):
    model = keras.Sequential([keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = _data()
    assert not compat.fully_built(model)
    compat.symbolic_build(model, (x[:4], y[:4]))
    assert model.built and compat.fully_built(model)  # layers, loss, metrics and optimizer


def test_monitor_callback_rule(compat):
    probe = compat.MonitorCallback(monitor="val_accuracy")
    assert probe.monitor == "val_accuracy"
