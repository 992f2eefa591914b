"""docs/config.md documents every key of the YAML format; README.md points to it.

The pydantic models in trainrun/config/schema.py are the format: a key added
there without a line in docs/config.md fails here. Fast: no Keras import.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from trainrun.config.schema import RunConfig

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"
README = ROOT / "README.md"


def _models_in(annotation: typing.Any) -> list[type[BaseModel]]:
    """The BaseModel classes inside a field's type (X | None, list[X], dict[str, X], X)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _key_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path of `model`, top-level and nested: ('data',), ('data', 'limit', 'train')."""
    paths = []
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        paths.append(path)
        for sub in _models_in(field.annotation):
            paths += _key_paths(sub, path)
    return paths


def _documented(path: tuple[str, ...], text: str) -> bool:
    """Whether the doc names `path` in backticks: `fit` for a top-level key, and for a
    nested one its dotted path from the top-level key to the key itself, where the
    middle may be spelled generically (`data.<split>.path`, `model.graph[].name`)."""
    top, leaf = re.escape(path[0]), re.escape(path[-1])
    if len(path) == 1:
        pattern = rf"`{top}`"
    elif len(path) == 2:
        pattern = rf"`{top}\.{leaf}`"
    else:
        pattern = rf"`{top}\.[^`\s]+\.{leaf}`"
    return re.search(pattern, text) is not None


def test_key_walk_reaches_nested_models() -> None:
    # The walk itself must see the nested sections, or the doc check below proves nothing.
    paths = _key_paths(RunConfig)
    for expected in [
        ("data",),
        ("data", "limit", "train"),
        ("data", "train", "tfrecord"),
        ("model", "graph", "input"),
        ("model", "builder", "factory"),
        ("outputs", "state_every"),
    ]:
        assert expected in paths


def test_documented_matches_only_the_named_key() -> None:
    text = "`fit.epochs` and `data.<split>.path`"
    assert _documented(("fit", "epochs"), text)
    assert _documented(("data", "train", "path"), text)
    assert not _documented(("fit", "batch_size"), text)
    assert not _documented(("data", "train", "x"), text)


@pytest.mark.parametrize("path", _key_paths(RunConfig), ids=".".join)
def test_every_config_key_is_documented(path: tuple[str, ...]) -> None:
    assert DOC.is_file(), "docs/config.md is missing"
    text = DOC.read_text(encoding="utf-8")
    shown = ".".join(path)
    assert _documented(path, text), (
        f"docs/config.md does not document the key {shown}: add it (in backticks, as "
        f"`{shown}`) with its type, default and meaning"
    )


def test_readme_points_to_the_format_reference_not_spec() -> None:
    readme = README.read_text(encoding="utf-8")
    assert "SPEC.md" not in readme, "README.md refers to SPEC.md, which is not in the repo"
    assert "docs/config.md" in readme
    assert "SPEC.md" not in DOC.read_text(encoding="utf-8")
