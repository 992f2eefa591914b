"""A run's saved models: which file `--checkpoint best|last|PATH` means, and loading it.

`last` is model.keras, the final model fit writes (best weights when
EarlyStopping restored them). `best` is the best file a ModelCheckpoint of the
run's config wrote, chosen by the first rule that applies:

1. ``save_best_only: true``: every file was an improvement when it was written,
   so the newest one (highest ``{epoch}`` in its name, else latest mtime);
2. the monitored value is in the file name (``{val_loss:.2f}``): the best value
   (lowest, or highest for accuracy-like monitors or ``mode: max``), the later
   epoch on a tie;
3. the epoch is in the file name and history.csv has the monitor: the file of
   the best epoch in history.csv;
4. otherwise the newest file, with a note that it may not be the best.

Without a ModelCheckpoint file, `best` falls back to model.keras with a note.
Weights-only checkpoints (``.weights.h5``) are loaded into model.keras'
architecture.
"""

from __future__ import annotations

import glob
import math
import re
import string
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainrun import custom, keras_compat
from trainrun.config import LoadedConfig
from trainrun.engine.checks import monitor_mode
from trainrun.errors import RunDirError, TrainrunError
from trainrun.registry import config_dir_on_path, split_component
from trainrun.runs.history import read_history
from trainrun.runs.record import Status
from trainrun.runs.rundir import RunDir


@dataclass
class Checkpoint:
    path: Path
    choice: str  # best | last | path
    note: str = ""

    def shown(self, run: RunDir) -> str:
        try:
            return str(self.path.resolve().relative_to(run.path.resolve()))
        except ValueError:
            return str(self.path)


# ---------------------------------------------------------------- choosing a file


def _template_regex(template: str) -> tuple[str, re.Pattern[str], list[str]]:
    """'ck/e{epoch:02d}-{val_loss:.2f}.keras' -> (glob, regex with groups, field names)."""
    pattern, globbed, fields = "", "", []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        pattern += re.escape(literal)
        globbed += glob.escape(literal)
        if field is not None:
            pattern += f"(?P<f{len(fields)}>.+?)"
            globbed += "*"
            fields.append(field)
    return globbed, re.compile(pattern + r"\Z"), fields


def _history_values(run: RunDir, monitor: str) -> dict[int, float]:
    """1-based epoch -> monitored value, from history.csv (epoch column is 0-based)."""
    try:
        _, rows, _ = read_history(run.history_csv)
    except RunDirError:
        return {}  # unreadable: the checkpoint is chosen without it
    return {int(row["epoch"]) + 1: row[monitor] for row in rows if monitor in row}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _direction(run: RunDir, monitor: str, mode: str) -> str:
    """How `monitor` improves: the callback's own mode, else what training found
    (run.json's best, from Keras' metric directions), else a guess from the name
    (runs from before run.json recorded it)."""
    if mode in ("min", "max"):
        return mode
    try:
        best = run.read_record().best
    except TrainrunError:
        best = None
    if best is not None and best.monitor == monitor and best.mode is not None:
        return best.mode
    return monitor_mode(monitor)


def _pick_from_callback(run: RunDir, args: dict[str, Any]) -> tuple[Path, str] | None:
    """The best file one ModelCheckpoint wrote, and how it was chosen; None if it wrote none."""
    template = str(args.get("filepath", ""))
    if not template:
        return None
    if not Path(template).is_absolute():
        template = str(run.path / template)
    globbed, regex, fields = _template_regex(template)
    matches = []
    for name in glob.glob(globbed):
        m = regex.match(name)
        if m and Path(name).is_file():
            matches.append((Path(name), {fields[i]: v for i, v in enumerate(m.groups())}))
    if not matches:
        return None
    monitor = str(args.get("monitor", "val_loss"))
    sign = 1.0 if _direction(run, monitor, str(args.get("mode", "auto"))) == "min" else -1.0

    def epoch_of(values: dict[str, str]) -> float:
        return _number(values.get("epoch", "")) or 0.0

    def newest(item: tuple[Path, dict[str, str]]) -> tuple[float, float]:
        return (epoch_of(item[1]), item[0].stat().st_mtime)

    if args.get("save_best_only"):
        return max(matches, key=newest)[0], "newest file of a save_best_only ModelCheckpoint"
    scored = [(p, _number(v[monitor])) for p, v in matches if monitor in v]
    scored = [(p, s) for p, s in scored if s is not None]
    if scored:
        path = min(scored, key=lambda ps: (sign * ps[1], -ps[0].stat().st_mtime))[0]
        return path, f"best {monitor} in the file names"
    history = _history_values(run, monitor)
    by_epoch = [(p, history.get(int(epoch_of(v)))) for p, v in matches if "epoch" in v]
    by_epoch = [(p, s) for p, s in by_epoch if s is not None and math.isfinite(s)]
    if by_epoch:
        path = min(by_epoch, key=lambda ps: sign * ps[1])[0]
        return path, f"the file of the best {monitor} epoch in history.csv"
    return (
        max(matches, key=newest)[0],
        f"newest file; its name has no {monitor} or epoch to compare, so it may not be the best",
    )


def _checkpoint_callbacks(loaded: LoadedConfig) -> list[dict[str, Any]]:
    out = []
    for item in loaded.config.callbacks:
        name, args = split_component(item)
        if name.rsplit(":", 1)[-1].rsplit(".", 1)[-1] == "ModelCheckpoint":
            out.append(args)
    return out


def best_checkpoint(run: RunDir, loaded: LoadedConfig) -> Checkpoint:
    for args in _checkpoint_callbacks(loaded):
        picked = _pick_from_callback(run, args)
        if picked is not None:
            return Checkpoint(picked[0], "best", f"best checkpoint: {picked[1]}")
    reason = (
        "its ModelCheckpoint wrote no file yet"
        if _checkpoint_callbacks(loaded)
        else "its config has no ModelCheckpoint"
    )
    if not run.model_file.is_file():
        raise RunDirError(
            f"run {run.id} has no checkpoint ({reason}) and no model.keras "
            f"(status {_status(run)}){_without_model(run)}"
        )
    return Checkpoint(run.model_file, "best", f"no best checkpoint ({reason}); using model.keras")


def _status(run: RunDir) -> Status:
    try:
        return run.read_record().status
    except RunDirError:
        return Status.UNKNOWN


def _without_model(run: RunDir) -> str:
    """What gives a run without model.keras something to evaluate: `resume` where
    it would be accepted (an unfinished run), else a file or a new run."""
    try:
        run.check_resumable(run.read_record(), None)
    except TrainrunError:
        return (
            "; it cannot be resumed to write one, so give a model file: --checkpoint PATH "
            "(a .keras file of this model), or train "
            f"it again: trainrun fit {run.config_file}"
        )
    return f"; `trainrun resume {run.path}` finishes it and writes model.keras"


def choose_checkpoint(run: RunDir, loaded: LoadedConfig, which: str) -> Checkpoint:
    """`--checkpoint best|last|PATH` -> the file to load. Raises RunDirError if missing."""
    if which == "best":
        return best_checkpoint(run, loaded)
    if which == "last":
        if not run.model_file.is_file():
            others = sorted(p.name for p in run.checkpoints.glob("*") if p.is_file())
            hint = (
                f"; its checkpoints: {', '.join(others[:5])} (--checkpoint best)"
                if others
                else _without_model(run)
            )
            raise RunDirError(
                f"run {run.id} has no model.keras (status {_status(run)}, or outputs.final_model "
                f"is off){hint}"
            )
        return Checkpoint(run.model_file, "last")
    given = Path(which).expanduser()
    candidates = [given] if given.is_absolute() else [run.path / given, Path.cwd() / given]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        looked = " or ".join(str(p) for p in candidates)
        raise RunDirError(
            f"--checkpoint {which}: no such file (looked for {looked}); "
            "give best, last or a .keras file"
        )
    if not (found.name.endswith(".keras") or found.name.endswith(".weights.h5")):
        raise RunDirError(
            f"--checkpoint {which}: expected a .keras model file (or a .weights.h5 file of "
            f"this run's model), got {found.name}"
        )
    return Checkpoint(found, "path")


# ---------------------------------------------------------------- loading


def load_model(run: RunDir, loaded: LoadedConfig, checkpoint: Checkpoint) -> Any:
    """The keras.Model saved in `checkpoint`, compiled as it was trained."""
    import keras

    # The objects the config names by import path, imported and registered again.
    objects, failed = custom.collect(loaded)
    with config_dir_on_path(loaded.base_dir), keras.saving.custom_object_scope(objects):
        try:
            if checkpoint.path.name.endswith(".weights.h5"):
                if not run.model_file.is_file():
                    raise RunDirError(
                        f"{checkpoint.shown(run)} holds weights only, and the run has no "
                        "model.keras to load them into"
                    )
                model = keras.saving.load_model(run.model_file)
                model.load_weights(checkpoint.path)
            else:
                model = keras.saving.load_model(checkpoint.path)
        except RunDirError:
            raise
        except Exception as exc:  # a damaged file, a custom object that is gone
            loading = run.model_file if checkpoint.path.name.endswith(".weights.h5") else None
            path = loading or checkpoint.path
            damage = _damage(path)
            if damage:
                raise RunDirError(f"cannot load {path}: {damage}") from exc
            if failed:
                raise RunDirError(
                    f"cannot load {checkpoint.path}: {custom.failed_imports(loaded, failed)}"
                ) from exc
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise RunDirError(
                f"cannot load {checkpoint.path}: {type(exc).__name__}: {text}"
            ) from exc
    if keras.backend.backend() == "torch":
        keras_compat.one_step_per_execution(model)  # trained with more, on another backend
    return model


def _damage(path: Path) -> str:
    """Why a .keras file that failed to load is damaged, or '' if it looks whole.

    Keras answers a .keras file that is not a complete zip archive with "File
    not found", which sends a user looking for a file that is right there.
    """
    if not path.name.endswith(".keras") or not path.is_file():
        return ""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return (
            f"the file is damaged or truncated ({size:,} bytes, not a complete .keras zip "
            "archive: a copy or a write that was cut short?); restore it from a backup, or "
            "use another checkpoint: --checkpoint best|PATH"
        )
    if bad is not None:
        return (
            f"the file is damaged: its member {bad} fails its checksum; restore it from a "
            "backup, or use another checkpoint: --checkpoint best|PATH"
        )
    return ""


def model_inputs(model: Any) -> list[tuple[str, tuple]]:
    """(name, shape with None for the batch) of each model input, in the model's order."""
    return [(t.name, tuple(t.shape)) for t in model.inputs]
