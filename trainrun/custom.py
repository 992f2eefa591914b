"""Objects a config names by import path, made loadable wherever the model is saved.

A loss, metric, layer, activation or optimizer written as ``module:attr`` is a
Python object Keras cannot find again by itself: a saved model records only its
name, and Keras imports no module outside its own when it loads. So:

- while a run is built, each such object is registered with Keras under
  ``module>attr`` (what ``@keras.saving.register_keras_serializable(package="module")``
  would give), unless its module registered it already under a name of its own;
- when a model is loaded (``trainrun evaluate`` / ``predict``, `load_model`
  below), the import paths of the run's ``config.yaml`` are imported again, the
  run's ``base_dir`` first on ``sys.path``, registered the same way, and passed
  to Keras as ``custom_objects``.

Keras is imported inside the functions that need it, never at module level.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainrun.errors import ConfigError, RunDirError
from trainrun.registry import import_object

if TYPE_CHECKING:
    from trainrun.config import LoadedConfig

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# Sections of a config that end up inside a saved model.
MODEL_SECTIONS = {"model", "compile"}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def import_paths(loaded: LoadedConfig) -> list[str]:
    """Every `module:attr` of the model and compile sections, in order, once each."""
    sections = loaded.config.model_dump(include=MODEL_SECTIONS)
    return list(dict.fromkeys(s for s in _strings(sections) if IMPORT_PATH.match(s)))


def registered_name(spec: str) -> str:
    """'my_losses:my_sce' -> 'my_losses>my_sce', the name Keras saves it under."""
    module, _, attr = spec.partition(":")
    return f"{module}>{attr}"


def _serializable(obj: Any) -> bool:
    """A function, or a class Keras can save (it has get_config), that is not Keras' own."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj) and hasattr(obj, "get_config")):
        return False
    package = (getattr(obj, "__module__", "") or "").split(".")[0]
    return package not in ("keras", "tensorflow", "tf_keras")


def register(spec: str, obj: Any) -> str | None:
    """Register `obj` (imported from `spec`) with Keras; return the name it is saved under.

    An object its module registered already keeps that registration.
    """
    import keras

    if not _serializable(obj):
        return None
    current = keras.saving.get_registered_name(obj)
    if current != obj.__name__:
        return current
    module, _, attr = spec.partition(":")
    keras.saving.register_keras_serializable(package=module, name=attr)(obj)
    return registered_name(spec)


def register_config_objects(loaded: LoadedConfig) -> None:
    """Register every import-path object of the config before its model is built or saved.

    One that does not import is left alone here: the builder that uses it reports
    it, with its key path and line.
    """
    for spec in import_paths(loaded):
        try:
            obj = import_object(spec, base_dir=loaded.base_dir, what="object")
        except ConfigError:
            continue
        register(spec, obj)


def collect(loaded: LoadedConfig) -> tuple[dict[str, Any], list[str]]:
    """Import and register the config's import-path objects.

    Returns name -> object for Keras' `custom_objects`, and 'spec (why)' for each
    import path that failed (a module moved or renamed since training).
    """
    found: dict[str, Any] = {}
    failed: list[str] = []
    for spec in import_paths(loaded):
        try:
            obj = import_object(spec, base_dir=loaded.base_dir, what="object")
        except ConfigError as exc:
            failed.append(f"{spec} ({exc.detail})")
            continue
        name = register(spec, obj)
        if name:
            found[name] = obj
    return found, failed


def failed_imports(loaded: LoadedConfig, failed: list[str]) -> str:
    """What to say when a model does not load and some of its import paths failed."""
    return (
        "these objects the config names by import path failed to import (looked in "
        f"base_dir {loaded.base_dir}, then sys.path): " + "; ".join(failed) + "; restore the "
        "module there, or correct base_dir in the run's config.yaml"
    )


def custom_objects(loaded: LoadedConfig) -> dict[str, Any]:
    """`collect`'s objects; RunDirError if any import path failed."""
    found, failed = collect(loaded)
    if failed:
        raise RunDirError(f"cannot load the model: {failed_imports(loaded, failed)}")
    return found


# ---------------------------------------------------------------- loading


def _find_config(path: Path) -> Path | None:
    """The run's config.yaml for a run directory or a model file inside one."""
    for folder in (path, *path.parents) if path.is_dir() else path.parents:
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def _existing(run_or_path: str | Path) -> Path:
    path = Path(run_or_path).expanduser()
    if not path.exists():
        raise RunDirError(f"{path}: no such run directory or model file")
    return path


def custom_objects_of(run_or_path: str | Path) -> dict[str, Any]:
    """`custom_objects` for the run that `run_or_path` (its directory, or a file in it) is.

    A path outside any run (no config.yaml above it) has none: {}.
    """
    from trainrun.config import load_config

    config = _find_config(_existing(run_or_path))
    return custom_objects(load_config(config)) if config else {}


def load_model(run_or_path: str | Path, *, compile: bool = True) -> Any:  # noqa: A002
    """A run's keras.Model, with every object its config names by import path.

    `run_or_path` is a run directory (its model.keras is loaded) or a .keras file
    inside one (a checkpoint). The import paths of the run's config.yaml are
    imported with its base_dir first on sys.path and registered with Keras, so
    the model loads from any directory and process.
    """
    import keras

    path = _existing(run_or_path)
    model_file = path / "model.keras" if path.is_dir() else path
    if not model_file.is_file():
        raise RunDirError(
            f"{path} has no model.keras (the run has not finished, or outputs.final_model "
            "is off); give a checkpoint file of the run instead"
        )
    from trainrun.config import load_config

    config = _find_config(path)
    if config is None:
        return keras.saving.load_model(model_file, compile=compile)
    loaded = load_config(config)
    objects, failed = collect(loaded)
    try:
        return keras.saving.load_model(model_file, custom_objects=objects, compile=compile)
    except Exception as exc:
        if not failed:
            raise
        raise RunDirError(f"cannot load {model_file}: {failed_imports(loaded, failed)}") from exc
