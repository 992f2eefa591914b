"""`trainrun schema`: the JSON Schema of the YAML format, checked against configs/."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import CONFIGS, ROOT, cli


def as_json(value):
    """YAML -> what an editor's JSON Schema check sees: mapping keys are strings."""
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    r = cli("schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


CONFIG_FILES = sorted(CONFIGS.glob("*.yaml")) + [ROOT / "tests" / "resume_fixtures" / "tiny.yaml"]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(validator, path: Path):
    errors = [e.message for e in validator.iter_errors(as_json(yaml.safe_load(path.read_text())))]
    assert errors == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda c: c.update(optimiser="adam"), "optimiser"),
        (lambda c: c["fit"].update(epochs=0), "epochs"),
        (lambda c: c["fit"].update(epoch=3), "epoch"),
        (lambda c: c.update(precision="float8"), "precision"),
        (lambda c: c.update(name="my run/1"), "name"),
        (lambda c: c["model"]["layers"].append({"Dense": {"units": 1}, "Dropout": {}}), "layers"),
        (lambda c: c.pop("model"), "model"),
    ],
)
def test_schema_rejects_what_trainrun_rejects(validator, change, where):
    config = yaml.safe_load((CONFIGS / "mnist_mlp.yaml").read_text())
    change(config)
    errors = list(validator.iter_errors(as_json(config)))
    assert errors, f"the schema accepted a config with a bad {where}"
    assert any(where in json.dumps(list(e.absolute_path) + [e.message]) for e in errors), [
        e.message for e in errors
    ]


def test_schema_out_file(tmp_path):
    out = tmp_path / "trainrun.schema.json"
    r = cli("schema", "--out", out)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["title"] == "trainrun config"
    bad = cli("schema", "--out", tmp_path / "no" / "such" / "dir.json")
    assert bad.returncode == 2 and "cannot write the schema" in bad.stderr
