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


# ---------------------------------------------------------------- what an editor offers


@pytest.fixture(scope="module")
def schema(validator) -> dict:
    return validator.schema


def resolve(schema: dict, node: dict) -> dict:
    """Follow a $ref ('#/$defs/X') to its definition."""
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def field(schema: dict, *path: str) -> dict:
    """The component definition of a field: ('compile', 'optimizer'), ('callbacks',), ..."""
    node = schema
    for part in path:
        node = resolve(schema, node)["properties"][part]

    def component(node: dict) -> dict | None:
        node = resolve(schema, node)
        if "examples" in node:
            return node
        options = node.get("anyOf", []) + ([node["items"]] if "items" in node else [])
        return next(filter(None, map(component, options)), None)

    found = component(node)
    assert found is not None, f"{path} has no component definition"
    return found


def offered(component: dict) -> set[str]:
    """Every name an editor offers for a component field (enum values, mapping keys)."""
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            names.update(v for v in node.get("enum", []) if isinstance(v, str))
            names.update(node.get("properties", {}))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(component)
    return names


@pytest.mark.parametrize(
    ("path", "names"),
    [
        (("callbacks",), {"EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau"}),
        (("compile", "optimizer"), {"RMSprop", "rmsprop", "Adam", "adam", "SGD"}),
        (("compile", "loss"), {"sparse_categorical_crossentropy", "mse", "BinaryCrossentropy"}),
        (("compile", "metrics"), {"accuracy", "sparse_categorical_accuracy", "AUC"}),
        (("model", "layers"), {"Dense", "Conv2D", "Dropout", "Input", "LSTM"}),
    ],
)
def test_component_fields_offer_keras_names(schema, path, names):
    assert names <= offered(field(schema, *path))


@pytest.mark.parametrize(
    ("path", "own", "foreign"),
    [
        (("callbacks",), "EarlyStopping", ["rmsprop", "Dense", "mse"]),
        (("compile", "optimizer"), "rmsprop", ["EarlyStopping", "Dense", "mse"]),
        (("compile", "loss"), "sparse_categorical_crossentropy", ["EarlyStopping", "rmsprop"]),
        (("compile", "metrics"), "accuracy", ["EarlyStopping", "rmsprop", "Dense"]),
        (("model", "layers"), "Dense", ["EarlyStopping", "rmsprop", "mse"]),
    ],
)
def test_each_description_names_examples_of_its_own_kind(schema, path, own, foreign):
    description = field(schema, *path)["description"]
    assert own in description
    assert not [f for f in foreign if f in description], description


def test_callback_arguments_are_offered_with_their_description(schema):
    component = field(schema, "callbacks")
    mapping = next(o for o in component["anyOf"] if o.get("type") == "object")
    args = mapping["properties"]["EarlyStopping"]["anyOf"][0]["properties"]
    assert "patience" in args
    assert "epochs" in args["patience"]["description"].lower()
    assert "default 0" in args["patience"]["description"]


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        (lambda c: c["compile"].update(optimizer="rmsprop"), True),
        (lambda c: c["compile"].update(optimizer={"Adam": {"learning_rate": 0.01}}), True),
        (lambda c: c["compile"].update(optimizer="my_opts:Fancy"), True),
        (
            lambda c: c.update(
                callbacks=["EarlyStopping", {"ModelCheckpoint": {"filepath": "m.keras"}}]
            ),
            True,
        ),
        (lambda c: c.update(callbacks=["my_callbacks:Custom"]), True),
        (lambda c: c.update(callbacks=["EarlyStoping"]), False),
        (lambda c: c.update(callbacks=[{"EarlyStoping": {"patience": 2}}]), False),
        (lambda c: c["model"]["layers"].append({"Dence": {"units": 1}}), False),
        (lambda c: c["model"]["layers"].append("my_layers:Mine"), True),
        (lambda c: c["compile"].update(loss="mean_squared_eror"), False),
        (lambda c: c["compile"].update(metrics=["acc", "AUC"]), True),
        (lambda c: c["fit"].update(epochs=True), False),
        (lambda c: c["fit"].update(batch_size=1.5), False),
        (lambda c: c["data"].update(validation_split=1.0), False),
    ],
)
def test_schema_checks_names_and_numbers_as_trainrun_does(validator, change, ok):
    config = yaml.safe_load((CONFIGS / "mnist_mlp.yaml").read_text())
    change(config)
    errors = [e.message for e in validator.iter_errors(as_json(config))]
    assert (errors == []) is ok, errors


def test_schema_is_computed_without_tensorflow():
    import subprocess
    import sys

    code = (
        "import sys; from trainrun.config.schema import json_schema; json_schema(); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
