"""A run's exports (`trainrun export`): the formats, where each export lives, and reading them.

No TensorFlow here: `trainrun runs` and `show` list exports by reading their
export.json files, and `trainrun export` checks its options with this module
before TensorFlow is imported.

Layout: one folder per format and checkpoint under the run's ``export/``,

    runs/<id>/export/<format>[-<checkpoint>]/export.json
                                           /<artifact>

``<checkpoint>`` is left out for ``last`` (model.keras), ``best`` for the best
checkpoint, and the file's name (without .keras / .weights.h5) for a PATH. The
artifact is ``1/`` for a SavedModel (a version folder, so that the format
folder is a TF Serving ``model_base_path``), ``model.tflite`` or ``model.onnx``.
With ``--out`` the artifact goes there instead, and export.json names it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainrun.errors import TrainrunError
from trainrun.runs.rundir import RunDir

EXPORT_DIR = "export"
RECORD = "export.json"
FAILED_MARK = "PARITY_FAILED.txt"
EXTRA = "export"


@dataclass(frozen=True)
class Format:
    name: str  # the folder name and the name export.json records
    aliases: tuple[str, ...]
    artifact: str  # inside the export folder
    suffix: str  # what --out must end with ("" for a directory)
    keras_format: str  # model.export(format=...)
    runtime: str  # what the parity check loads it with
    modules: tuple[tuple[str, str], ...]  # (module, PyPI package) it needs beyond TensorFlow

    def describe(self) -> str:
        return f"{self.name} ({', '.join(self.aliases)})" if self.aliases else self.name


FORMATS = {
    f.name: f
    for f in (
        Format(
            "saved_model",
            ("tf_saved_model", "savedmodel"),
            "1",
            "",
            "tf_saved_model",
            "tensorflow (tf.saved_model.load, serving_default)",
            (),
        ),
        Format(
            "tflite",
            ("litert",),
            "model.tflite",
            ".tflite",
            "litert",
            "LiteRT interpreter (ai_edge_litert)",
            (("ai_edge_litert", "ai-edge-litert"),),
        ),
        Format(
            "onnx",
            (),
            "model.onnx",
            ".onnx",
            "onnx",
            "onnxruntime (CPUExecutionProvider)",
            (("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
        ),
    )
}


def get_format(name: str) -> Format:
    """`--format NAME` -> its Format (aliases accepted); a clean error otherwise."""
    key = name.strip().lower().replace("-", "_")
    for fmt in FORMATS.values():
        if key == fmt.name or key in fmt.aliases:
            return fmt
    known = ", ".join(f.describe() for f in FORMATS.values())
    raise TrainrunError(f"--format {name}: unknown export format; expected one of: {known}")


def missing_packages(fmt: Format) -> list[str]:
    """The PyPI packages `fmt` needs that are not installed (found without importing them)."""
    missing = []
    for module, package in fmt.modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing


def check_packages(fmt: Format) -> None:
    missing = missing_packages(fmt)
    if missing:
        raise TrainrunError(
            f"--format {fmt.name} needs {', '.join(missing)} (not installed); "
            f"install the export extra: pip install 'trainrun[{EXTRA}]'"
        )


def checkpoint_label(choice: str, path: Path) -> str:
    """'' for last, 'best', or a PATH's file name made safe for a folder name."""
    if choice == "last":
        return ""
    if choice == "best":
        return "best"
    stem = path.name
    for suffix in (".weights.h5", ".keras"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "checkpoint"


def export_dir(run: RunDir, fmt: Format, label: str) -> Path:
    return run.path / EXPORT_DIR / (f"{fmt.name}-{label}" if label else fmt.name)


@dataclass
class ExportEntry:
    """One export of a run, as `runs` and `show` list it."""

    folder: str  # relative to the run: export/onnx
    record: dict[str, Any] | None  # export.json; None when unreadable
    problem: str = ""

    @property
    def format(self) -> str:
        value = (self.record or {}).get("format")
        return value if isinstance(value, str) else self.folder.rsplit("/", 1)[-1]

    @property
    def passed(self) -> bool | None:
        parity = (self.record or {}).get("parity")
        value = parity.get("passed") if isinstance(parity, dict) else None
        return value if isinstance(value, bool) else None

    def short(self) -> str:
        """'onnx', 'tflite-best', 'onnx (parity failed)' for the runs table."""
        name = self.folder.rsplit("/", 1)[-1]
        if self.record is None:
            return f"{name} (unreadable)"
        if self.passed is False:
            return f"{name} (parity failed)"
        return name


def read_exports(run: RunDir) -> list[ExportEntry]:
    """Every export folder of the run with its export.json, in name order. Never raises."""
    root = run.path / EXPORT_DIR
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    entries = []
    for folder in folders:
        rel = f"{EXPORT_DIR}/{folder.name}"
        path = folder / RECORD
        if not path.is_file():
            continue  # not an export (or one whose writing never finished)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            entries.append(ExportEntry(rel, None, f"{path.name} unreadable: {exc}"))
            continue
        if not isinstance(record, dict):
            entries.append(ExportEntry(rel, None, f"{path.name} is not a JSON object"))
            continue
        entries.append(ExportEntry(rel, record))
    return entries


def exports_cell(run: RunDir) -> str:
    """The `runs` table's exports column: 'onnx, tflite' or '-'."""
    entries = read_exports(run)
    return ", ".join(e.short() for e in entries) if entries else "-"


def _num(value: Any) -> str:
    return f"{value:.2g}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def describe_export(entry: ExportEntry) -> tuple[str, str]:
    """(folder, one line) for `trainrun show`."""
    if entry.record is None:
        return entry.folder, entry.problem
    r = entry.record
    parity = r.get("parity") if isinstance(r.get("parity"), dict) else {}
    verdict = {True: "parity passed", False: "PARITY FAILED"}.get(entry.passed, "parity unknown")
    line = (
        f"{r.get('format', '?')} of {r.get('checkpoint', '?')} -> {r.get('file', '?')}; "
        f"{verdict} (max abs diff {_num(parity.get('max_abs_diff'))}, "
        f"{parity.get('samples', '?')} {parity.get('split', '?')} samples); "
        f"{r.get('exported', '?')}"
    )
    return entry.folder, line
