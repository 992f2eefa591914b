"""trainrun.builders.callback_list: config -> Keras callbacks, files inside the run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainrun.config import load_config
from trainrun.errors import ConfigError

pytestmark = pytest.mark.slow  # builds Keras callbacks: imports TensorFlow

CONFIG = """\
data: {source: mnist}
model:
  layers:
    - Dense: 10
compile: {optimizer: adam, loss: mse}
callbacks:
"""


def loaded_with(tmp_path: Path, *items: str, sets: tuple[str, ...] = ()):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + "".join(f"  - {item}\n" for item in items))
    return load_config(path, list(sets))


def test_files_are_placed_in_the_run_dir_and_every_run_logs_history(tmp_path):
    import keras

    from trainrun.builders.callback_list import build_callbacks

    run = tmp_path / "run"
    loaded = loaded_with(
        tmp_path,
        "ModelCheckpoint: {filepath: 'ckpt/e{epoch:02d}.keras'}",
        "EarlyStopping: {monitor: loss, patience: 2}",
    )
    built = build_callbacks(loaded, run)
    kinds = (keras.callbacks.ModelCheckpoint, keras.callbacks.EarlyStopping)
    kinds += (keras.callbacks.CSVLogger, keras.callbacks.TensorBoard)
    assert len(built) == 4
    assert all(isinstance(cb, kind) for cb, kind in zip(built, kinds, strict=True))
    assert built[0].filepath == str(run / "ckpt" / "e{epoch:02d}.keras")
    assert (run / "ckpt").is_dir()
    assert built[2].filename == str(run / "history.csv") and not built[2].append
    assert isinstance(built[3], keras.callbacks.TensorBoard)
    assert built[3].log_dir == str(run / "tensorboard")
    assert built[1].patience == 2


def test_resuming_appends_to_history(tmp_path):
    from trainrun.builders.callback_list import build_callbacks

    built = build_callbacks(loaded_with(tmp_path, "CSVLogger"), tmp_path / "run", resuming=True)
    (csv,) = [cb for cb in built if type(cb).__name__ == "CSVLogger"]
    assert csv.filename == str(tmp_path / "run" / "history.csv") and csv.append


def test_yaml_schedule_is_built_for_learning_rate_scheduler(tmp_path):
    from trainrun.builders.callback_list import build_callbacks
    from trainrun.builders.schedules import Piecewise

    loaded = loaded_with(
        tmp_path,
        "LearningRateScheduler: {schedule: {piecewise: {boundaries: [2], values: [0.1, 0.01]}}}",
    )
    (sched, *_) = build_callbacks(loaded, tmp_path / "run")
    assert isinstance(sched.schedule, Piecewise)
    assert sched.get_state() == {"initial": None}


@pytest.mark.parametrize(
    ("item", "path", "detail"),
    [
        (
            "EarlyStopping: {patiense: 2}",
            "callbacks[0].EarlyStopping.patiense",
            "unknown parameter 'patiense' for callback 'EarlyStopping'; did you mean 'patience'?",
        ),
        (
            "LearningRateScheduler: {schedule: {piecewize: {boundaries: [2], values: [1, 2]}}}",
            "callbacks[0].LearningRateScheduler.schedule.piecewize",
            "unknown schedule 'piecewize'; did you mean 'piecewise'?",
        ),
    ],
)
def test_errors_carry_the_key_path_and_are_located_once(tmp_path, item, path, detail):
    from trainrun.builders.callback_list import build_callbacks

    loaded = loaded_with(tmp_path, item)
    with pytest.raises(ConfigError) as info:
        build_callbacks(loaded, tmp_path / "run")
    assert (info.value.path, info.value.detail) == (path, detail)
    located = loaded.locate(info.value)
    assert str(located) == f"{path} in {loaded.file} line 7: {detail}"
    assert not (tmp_path / "run").exists()  # nothing made before every callback is checked
