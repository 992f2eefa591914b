"""Config -> keras callbacks, with their files placed inside the run directory.

Errors are raised with their key path; `Trainer.prepare` gives them their file and
line once, with `LoadedConfig.locate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras

from trainrun import keras_compat
from trainrun.backend_check import tensorflow_installed
from trainrun.builders.schedules import SCHEDULES, unknown_schedule
from trainrun.config import LoadedConfig, check_callback_paths, format_path
from trainrun.config.loader import CALLBACK_DIR_ARGS, CALLBACK_FILE_ARGS
from trainrun.errors import ConfigError
from trainrun.registry import check_params, import_object, resolve_callback_class, split_component

DEFAULT_PATHS = {
    "CSVLogger": ("filename", "history.csv"),
    "TensorBoard": ("log_dir", "tensorboard"),
}


def _lr_schedule(value: Any, loaded: LoadedConfig, path: tuple) -> Any:
    """LearningRateScheduler's schedule: {piecewise: {...}} or an import path."""
    if isinstance(value, str):
        if ":" not in value:
            raise loaded.error(
                f"schedule '{value}' is neither a YAML schedule ({', '.join(SCHEDULES)}) nor an "
                "import path module:function",
                path,
            )
        return import_object(
            value, base_dir=loaded.base_dir, what="schedule function", path=format_path(path)
        )
    if not isinstance(value, dict) or len(value) != 1:
        raise loaded.error(
            f"schedule must be one of {', '.join(SCHEDULES)} with its arguments, e.g. "
            "{piecewise: {boundaries: [10], values: [0.001, 0.0001]}}, or module:function",
            path,
        )
    ((kind, args),) = value.items()
    if kind not in SCHEDULES:
        raise unknown_schedule(kind, path=format_path((*path, kind)))
    check_params(
        SCHEDULES[kind], args or {}, what=f"schedule '{kind}'", path=format_path((*path, kind))
    )
    try:
        return SCHEDULES[kind](**(args or {}))
    except (TypeError, ValueError) as exc:
        raise loaded.error(f"invalid schedule '{kind}': {exc}", (*path, kind)) from None


def _place(args: dict[str, Any], run_dir: Path) -> list[Path]:
    """Put relative paths inside the run dir; return the directories they need.

    Absolute paths (checked by check_callback_paths) are left as the user wrote
    them, and nothing is created outside the run directory.
    """
    needed = []
    for key in (*CALLBACK_FILE_ARGS, *CALLBACK_DIR_ARGS):
        value = args.get(key)
        if not isinstance(value, str) or not value:
            continue
        expanded = os.path.expanduser(value)
        if os.path.isabs(expanded):
            args[key] = expanded
            continue
        target = run_dir / os.path.normpath(value)
        args[key] = str(target)
        needed.append(target if key in CALLBACK_DIR_ARGS else target.parent)
    return needed


def callback_specs(loaded: LoadedConfig) -> list[tuple[str, dict[str, Any], tuple]]:
    """(name, args, key path) for every listed callback, in order."""
    return [
        (*split_component(item), ("callbacks", i)) for i, item in enumerate(loaded.config.callbacks)
    ]


class LearningRateScheduler(keras.callbacks.LearningRateScheduler):
    """Keras' LearningRateScheduler whose YAML schedule's starting rate is resume state.

    A schedule written without ``initial`` takes the optimizer's rate at the first
    epoch; a resumed run must go on from that rate, not from the lowered one the
    optimizer was restored with.
    """

    def get_state(self) -> dict[str, Any]:
        return {"initial": getattr(self.schedule, "initial", None)}

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("initial") is not None and hasattr(self.schedule, "initial"):
            self.schedule.initial = float(state["initial"])


def build_callbacks(
    loaded: LoadedConfig, run_dir: Path, *, resuming: bool = False
) -> list[keras.callbacks.Callback]:
    """The user's callbacks in order, plus the CSV log and TensorBoard every run gets.

    Directories for their files are made inside `run_dir` only once every
    callback has been checked and built.
    """
    # A resumed run finds its own files at its absolute paths: not a reason to refuse.
    check_callback_paths(loaded, existing=not resuming)
    out: list[keras.callbacks.Callback] = []
    listed: set[str] = set()
    dirs: list[Path] = []
    for name, args, path in callback_specs(loaded):
        where = format_path(path)
        cls = resolve_callback_class(name, base_dir=loaded.base_dir, path=where)
        if cls is keras.callbacks.TensorBoard:
            cls = keras_compat.TensorBoard
        elif cls is keras.callbacks.LearningRateScheduler:
            cls = LearningRateScheduler
        short = cls.__name__
        listed.add(short)
        if short in DEFAULT_PATHS:
            key, default = DEFAULT_PATHS[short]
            args.setdefault(key, default)
        if short == "CSVLogger" and resuming:
            args["append"] = True
        if short == "LearningRateScheduler" and "schedule" in args:
            args["schedule"] = _lr_schedule(args["schedule"], loaded, (*path, name, "schedule"))
        check_params(cls, args, what=f"callback '{name}'", path=format_path((*path, name)))
        dirs += _place(args, run_dir)
        try:
            out.append(cls(**args))
        except ConfigError:
            raise
        except Exception as exc:
            raise loaded.error(
                f"callback '{name}' rejected its arguments: {type(exc).__name__}: {exc}",
                (*path, name),
            ) from None
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
    outputs = loaded.config.outputs
    history = str(run_dir / "history.csv")
    writes_history = any(getattr(cb, "filename", None) == history for cb in out)
    if outputs.history and not writes_history:
        # history.csv is the run's record (show, runs, resume read it), so it is
        # written even when a listed CSVLogger logs to another file as well.
        out.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resuming))
    # TensorBoard's writer is TensorFlow's (tf.summary): on another backend without
    # TensorFlow installed, outputs.tensorboard writes nothing (README, Backends).
    if outputs.tensorboard and "TensorBoard" not in listed and tensorflow_installed():
        out.append(keras_compat.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    return out
