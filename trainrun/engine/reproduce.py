"""`trainrun reproduce`: train a run's recorded config again, with its saved code, and compare.

The new run trains from the run's own config.yaml, with the copies of the user's
modules under the run's `code/` imported first (so a file changed since is not
what runs), into a new run directory beside the original. Then its history.csv
and model.keras are compared with the original's: bitwise when the original was
`deterministic: true` and nothing it records has changed (versions, machine,
config, data); otherwise within a stated tolerance.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainrun.config import load_config, with_seed
from trainrun.engine.events import Events
from trainrun.errors import RunDirError
from trainrun.runs import provenance
from trainrun.runs.provenance import Change
from trainrun.runs.record import RunRecord
from trainrun.runs.rundir import RunDir


@dataclass
class Verdict:
    original: RunDir
    reproduction: RunDir | None
    equal: bool
    mode: str  # "bitwise" or "within rtol ..., atol ..."
    first_difference: str | None = None
    why_not_bitwise: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.equal else 1


@contextlib.contextmanager
def code_first(run: RunDir, code: dict[str, Any]) -> Iterator[None]:
    """The run's copies of the user's modules, imported before anything else can import
    the user's present files (trainrun's import paths then find them in sys.modules)."""
    folder = run.path / provenance.CODE_DIR
    if not code or not folder.is_dir():
        yield
        return
    sys.path.insert(0, str(folder))
    try:
        for module in code:
            sys.modules.pop(module, None)
            importlib.import_module(module)
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def check_finished(run: RunDir, record: RunRecord) -> None:
    """A run to reproduce has trained to its end: there is a whole result to compare."""
    if not record.status.finished:
        raise RunDirError(
            f"run {run.id} is {record.status_text}: reproduce compares a finished run; "
            f"finish it first with trainrun resume {run.path}"
        )


def reproduce(
    ref: str | Path,
    *,
    runs_dir: Path,
    out_dir: Path | None,
    rtol: float,
    atol: float,
    events: Events,
) -> Verdict:
    from trainrun.engine.fit import fit

    original = RunDir.open(ref, runs_dir)
    record = original.read_record()
    check_finished(original, record)
    prov = record.provenance
    text = original.config_file.read_text(encoding="utf-8")
    # The code copies are what runs, so the user's present files do not matter here.
    changes = [
        c for c in provenance.changes(original.path, record, text) if not c.what.startswith("code ")
    ]
    loaded = with_seed(load_config(original.config_file))
    why = []
    if not loaded.config.deterministic:
        why.append("the run is not deterministic: true")
    if not prov:
        why.append("the run has no provenance record (trained before trainrun recorded it)")
    if changes:
        why.append(f"{len(changes)} recorded thing(s) changed since")
    mode = "bitwise" if not why else f"within rtol {rtol:g}, atol {atol:g}"
    for change in changes:
        events.warn(f"changed since the run: {change.what}: {change.then} -> {change.now}")
    loaded.config.name = f"{loaded.config.name}-reproduce"  # the new run's id says what it is
    code = prov.get("code") if isinstance(prov.get("code"), dict) else {}
    with code_first(original, code):
        outcome, new = fit(
            original.config_file,
            [],
            runs_dir=out_dir or original.path.parent,
            name=None,
            device=None,
            events=events,
            loaded=loaded,
        )
    verdict = Verdict(original, new, False, mode, why_not_bitwise=why, changes=changes)
    if outcome.exit_code != 0:
        verdict.first_difference = (
            f"the reproduction ended {outcome.status.value}: {outcome.error or ''}".rstrip(": ")
        )
        return verdict
    exact = mode == "bitwise"
    verdict.first_difference = _history_difference(
        original, new, exact, rtol, atol
    ) or _weights_difference(original, new, exact, rtol, atol)
    verdict.equal = verdict.first_difference is None
    return verdict


def _rows(run: RunDir) -> list[dict[str, str]]:
    try:
        with run.history_csv.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _close(a: str, b: str, exact: bool, rtol: float, atol: float) -> bool:
    if a == b:
        return True
    if exact:
        return False
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return bool(np.isclose(x, y, rtol=rtol, atol=atol, equal_nan=True))


def _history_difference(a: RunDir, b: RunDir, exact: bool, rtol: float, atol: float) -> str | None:
    then, now = _rows(a), _rows(b)
    for then_row, now_row in zip(then, now, strict=False):
        for key in then_row.keys() | now_row.keys():
            x, y = then_row.get(key), now_row.get(key)
            if x is None or y is None or not _close(x, y, exact, rtol, atol):
                return (
                    f"history.csv epoch {then_row.get('epoch', '?')}, {key}: {x} (original) vs {y}"
                )
    if len(then) != len(now):
        return f"history.csv: {len(then)} epochs (original) vs {len(now)}"
    return None


def weight_arrays(keras_file: Path) -> dict[str, np.ndarray]:
    """Every array of a .keras file's weights (model and optimizer), by its path in the file."""
    import h5py

    with zipfile.ZipFile(keras_file) as archive:
        data = archive.read("model.weights.h5")
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(
            lambda name, obj: (
                arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
        )
    return arrays


def _weights_difference(a: RunDir, b: RunDir, exact: bool, rtol: float, atol: float) -> str | None:
    if not a.model_file.is_file() or not b.model_file.is_file():
        missing = a if not a.model_file.is_file() else b
        return f"{missing.model_file} is missing: the weights cannot be compared"
    try:
        then, now = weight_arrays(a.model_file), weight_arrays(b.model_file)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        return f"model.keras cannot be read ({exc})"
    if then.keys() != now.keys():
        odd = sorted(then.keys() ^ now.keys())
        return f"model.keras holds other arrays: {', '.join(odd[:3])}"
    for key, x in then.items():
        y = now[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            return f"model.keras {key}: {x.dtype}{list(x.shape)} (original) vs {y.dtype}{list(y.shape)}"
        numeric = x.dtype.kind in "biufc"
        same = (
            np.array_equal(x, y)
            if exact or not numeric
            else np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True)
        )
        if not same:
            if not numeric or not x.size:
                return f"model.keras {key}: the values differ"
            gap = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
            return f"model.keras {key}: largest difference {gap:.3g}"
    return None
