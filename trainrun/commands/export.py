"""`trainrun export`: the checks that need no TensorFlow, and the report.

The format, its packages and `--out` are checked here, before TensorFlow is
imported, so a mistake is answered at once; the work is trainrun.engine.export.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console

from trainrun.errors import RunError, TrainrunError
from trainrun.runs.exports import Format, check_packages, get_format
from trainrun.runs.rundir import RunDir


def check_options(
    run: RunDir, format_name: str, out: Path | None, samples: int, atol: float, rtol: float
) -> Format:
    """The Format to write; raises TrainrunError (exit 2) for anything wrong with the options."""
    fmt = get_format(format_name)
    check_packages(fmt)
    if samples < 1:
        raise TrainrunError(f"--samples {samples}: give at least 1 sample to compare on")
    for name, value in (("--atol", atol), ("--rtol", rtol)):
        if not value >= 0:  # NaN too
            raise TrainrunError(f"{name} {value}: a tolerance is a number of 0 or more")
    if out is not None:
        check_out(run, fmt, out)
    return fmt


def check_out(run: RunDir, fmt: Format, out: Path) -> None:
    where = out.expanduser().resolve()
    try:
        where.relative_to(run.path.resolve())
        inside = True
    except ValueError:
        inside = False
    if inside:
        raise TrainrunError(
            f"--out {out} is inside the run directory {run.path}; without --out the artifact "
            "goes to the run's export/ folder, or give a path outside the run"
        )
    if fmt.suffix and not out.name.endswith(fmt.suffix):
        raise TrainrunError(f"--out {out}: a {fmt.name} file must end in {fmt.suffix}")
    if fmt.suffix and out.is_dir():
        raise TrainrunError(f"--out {out} is a directory; give the {fmt.suffix} file to write")
    if not fmt.suffix:
        if out.exists() and not out.is_dir():
            raise TrainrunError(f"--out {out} is a file; a SavedModel is a directory")
        if out.is_dir() and any(out.iterdir()) and not (out / "saved_model.pb").is_file():
            raise TrainrunError(
                f"--out {out} is a directory that holds other files (no saved_model.pb); "
                "give a new or empty directory, or an earlier SavedModel export to replace"
            )
    parent = where.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise TrainrunError(f"--out {out}: {parent} cannot be written")


def _fmt(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, int | float) else "-"


def report(result: Any, run: RunDir, out: Console) -> None:
    """Print what was written and the parity verdict; raise RunError (exit 1) if it failed."""
    parity = result.record["parity"]
    if result.note:
        out.print(f"note: {result.note}", markup=False)
    out.print(
        f"exported {result.format} of {result.checkpoint} -> {result.artifact}",
        markup=False,
        soft_wrap=True,
    )
    sizes = parity.get("batch_sizes") or []
    batches = f" (batches of {' and '.join(map(str, sizes))})" if sizes else ""
    tol = parity["tolerance"]
    verdict = "passed" if parity["passed"] else "FAILED"
    out.print(
        f"parity with Keras on {parity['samples']} {parity['split']} samples{batches}: "
        f"max abs diff {_fmt(parity['max_abs_diff'])}, max rel diff "
        f"{_fmt(parity['max_rel_diff'])} (atol {tol['atol']:g}, rtol {tol['rtol']:g}): {verdict}",
        markup=False,
        soft_wrap=True,
    )
    for problem in parity.get("problems", [])[1:]:
        out.print(f"  {problem}", markup=False, soft_wrap=True)
    record = result.folder / "export.json"
    out.print(f"written: {record}", markup=False, soft_wrap=True)
    if not parity["passed"]:
        first = parity["problems"][0] if parity.get("problems") else "outputs differ"
        raise RunError(
            f"{result.format} export of run {run.id} failed the parity check: {first}; "
            f"the artifact is kept at {result.artifact} and marked as failed "
            f"({result.folder / 'PARITY_FAILED.txt'}, export.json)"
        )
