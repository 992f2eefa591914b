"""The YAML format, as typed pydantic models.

Every model forbids unknown keys, so a typo is an error with a key path, never
a silently ignored setting. Components (a layer, an optimizer, a callback...)
are written ``Name``, ``{Name: {args}}`` or ``module:attr``; they stay plain
YAML here and are resolved against the real Keras registries in
`trainrun.build`, once Keras is imported.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator


def _check_component(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must be a name, not an empty string")
        return value
    if isinstance(value, dict):
        if len(value) != 1:
            keys = ", ".join(map(str, value)) or "nothing"
            raise ValueError(
                f"must be one 'Name: {{args}}' entry, got {len(value)} keys ({keys}); "
                "write each component as its own list item"
            )
        ((name, args),) = value.items()
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {name!r}")
        if args is not None and not isinstance(args, dict):
            raise ValueError(
                f"arguments of '{name}' must be a mapping like {{units: 10}}, got {args!r}"
            )
        return {name: args or {}}
    raise ValueError(f"must be a name or 'Name: {{args}}', got {value!r}")


# How a component looks in `trainrun schema`: a name, or one `Name: {args}` entry.
_COMPONENT_JSON = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": {"anyOf": [{"type": "object"}, {"type": "null"}]},
        },
    ],
    "description": "A name (EarlyStopping, rmsprop, module:attr) or one {Name: {args}} entry",
}

Component = Annotated[Any, AfterValidator(_check_component), WithJsonSchema(_COMPONENT_JSON)]
"""``Name``, ``{Name: {args}}`` or ``module:attr``: normalised to str or a one-key dict."""


RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_run_name(value: str) -> str:
    if not RUN_NAME.match(value):
        raise ValueError(
            f"a run name starts with a letter or digit and has only letters, digits, "
            f"'_', '.' and '-' (it names the run directory); got {value!r}"
        )
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Split(Strict):
    """Where one split (train / validation / test) of numpy or tfdata data comes from."""

    # numpy
    path: str | None = None
    x: str | dict[str, str] | None = None
    y: str | dict[str, str] | None = None
    sample_weight: str | None = None
    # tfdata
    factory: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    csv: str | None = None
    label: str | None = None
    tfrecord: str | list[str] | None = None
    features: dict[str, Any] | None = None


class Limit(Strict):
    """Use only the first N samples of a split: for smoke tests and CI."""

    train: int | None = Field(None, ge=1)
    validation: int | None = Field(None, ge=1)
    test: int | None = Field(None, ge=1)


class DataConfig(Strict):
    source: Literal["mnist", "numpy", "tfdata"] = "mnist"
    flatten: bool = False
    reshape: list[int] | None = None
    scale: float | None = None
    validation_split: float = Field(0.0, ge=0.0, lt=1.0)
    train: Split | None = None
    validation: Split | None = None
    test: Split | None = None
    limit: Limit | None = None

    @model_validator(mode="after")
    def _fits_source(self) -> DataConfig:
        if self.flatten and self.reshape:
            raise ValueError("set either 'flatten' or 'reshape', not both")
        if self.scale is not None and self.scale == 0:
            raise ValueError("'scale' divides the inputs and cannot be 0")
        if self.source in ("numpy", "tfdata") and self.train is None:
            raise ValueError(f"source '{self.source}' needs a 'train' split")
        if self.source == "mnist":
            for split in ("train", "validation", "test"):
                if getattr(self, split) is not None:
                    raise ValueError(
                        f"source 'mnist' has its own splits; remove '{split}' "
                        "(use validation_split for validation data)"
                    )
        if self.source == "tfdata" and self.validation_split:
            raise ValueError(
                "validation_split needs in-memory data; with source 'tfdata' give a "
                "'validation' split instead"
            )
        return self


class Factory(Strict):
    factory: str
    args: dict[str, Any] = Field(default_factory=dict)


class GraphNode(Strict):
    name: str
    layer: Component
    input: str | list[str]


class ModelConfig(Strict):
    name: str | None = None
    layers: list[Component] | None = None
    inputs: dict[str, dict[str, Any]] | None = None
    graph: list[GraphNode] | None = None
    outputs: str | list[str] | None = None
    builder: Factory | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        kinds = [
            k
            for k, present in (
                ("layers", self.layers is not None),
                (
                    "inputs/graph/outputs",
                    any(v is not None for v in (self.inputs, self.graph, self.outputs)),
                ),
                ("builder", self.builder is not None),
                ("path", self.path is not None),
            )
            if present
        ]
        if not kinds:
            raise ValueError(
                "describe the model with one of: layers (Sequential), inputs + graph + "
                "outputs (functional), builder (a factory), or path (a saved .keras file)"
            )
        if len(kinds) > 1:
            raise ValueError(f"give one way to build the model, not several: {', '.join(kinds)}")
        if kinds == ["inputs/graph/outputs"]:
            missing = [k for k in ("inputs", "graph", "outputs") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a functional model needs {', '.join(missing)} as well")
        if self.layers is not None and not self.layers:
            raise ValueError("'layers' is empty; list at least one layer")
        return self


class CompileConfig(Strict):
    optimizer: Component = "rmsprop"
    loss: Component | dict[str, Any] | None = None
    metrics: list[Component] | dict[str, Any] | None = None
    loss_weights: dict[str, float] | list[float] | None = None
    jit_compile: Literal["auto"] | bool = "auto"
    steps_per_execution: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"


class FitConfig(Strict):
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    shuffle: bool = True
    class_weight: dict[int, float] | None = None
    steps_per_epoch: int | None = Field(None, ge=1)
    validation_steps: int | None = Field(None, ge=1)
    validation_freq: int = Field(1, ge=1)
    validation_batch_size: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"

    @model_validator(mode="after")
    def _weights(self) -> FitConfig:
        for cls, weight in (self.class_weight or {}).items():
            if cls < 0:
                raise ValueError(f"class_weight keys are class indices >= 0, got {cls}")
            if weight < 0:
                raise ValueError(f"class_weight[{cls}] must be >= 0, got {weight}")
        return self

    def eval_batch_size(self) -> int:
        """The batch for validating and evaluating in-memory data.

        'auto' is 4x batch_size, up to 1024 (never below batch_size): evaluation
        keeps no activations for a backward pass, and fewer, larger batches cut its
        per-step overhead (MNIST validation: 2-3x faster). With validation_steps
        set it stays batch_size, so the steps cover the samples they did.
        """
        if self.validation_batch_size != "auto":
            return int(self.validation_batch_size)
        if self.validation_steps:
            return self.batch_size
        return max(self.batch_size, min(4 * self.batch_size, 1024))


class OutputsConfig(Strict):
    """What every run writes without being asked; each can be turned off."""

    history: bool = True  # history.csv (a CSVLogger)
    tensorboard: bool = True  # tensorboard/ (a TensorBoard callback)
    final_model: bool = True  # model.keras
    state: bool = True  # state/ for `trainrun resume`
    # Save resume state every N optimizer steps, or 'auto' (time-based, kept
    # under ~2% of training time), or 'epoch' (epoch ends only).
    state_every: Literal["auto", "epoch"] | Annotated[int, Field(ge=1)] = "auto"


class RunConfig(Strict):
    name: Annotated[str, AfterValidator(_check_run_name)] = Field(
        "run", json_schema_extra={"pattern": RUN_NAME.pattern}
    )
    seed: int | None = Field(None, ge=0, lt=2**32)
    deterministic: bool = False
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    distribute: Literal["auto", "none", "mirrored", "multi_worker"] = "auto"
    # Directory that relative paths and import paths resolve against; defaults to
    # the config file's own directory and is written out absolute in config.yaml.
    base_dir: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig
    compile: CompileConfig = Field(default_factory=CompileConfig)
    fit: FitConfig = Field(default_factory=FitConfig)
    callbacks: list[Component] = Field(default_factory=list)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)


_MISSING = object()


def _annotation_at(path: tuple[str | int, ...]) -> Any:
    """The type of the field at `path` (list indices skipped); _MISSING if there is none."""
    annotation: Any = RunConfig
    for part in path:
        if isinstance(part, int):
            continue
        fields = getattr(_model_in(annotation), "model_fields", None)
        if not fields or part not in fields:
            return _MISSING
        annotation = fields[part].annotation
    return annotation


def known_keys(path: tuple[str | int, ...]) -> list[str]:
    """The keys a section at `path` accepts, for 'did you mean' answers."""
    annotation = _annotation_at(path)
    model = None if annotation is _MISSING else _model_in(annotation)
    return list(getattr(model, "model_fields", {}))


def takes_only_lists(path: tuple[str | int, ...]) -> bool:
    """Whether the field at `path` is a list and never a mapping (callbacks, model.layers)."""
    import types
    import typing

    annotation = _annotation_at(path)
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    kinds = {
        typing.get_origin(a) or a for a in (typing.get_args(annotation) if union else (annotation,))
    }
    kinds.discard(type(None))
    return kinds == {list}


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside `X | None`, `list[X]`, or X itself."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def json_schema() -> dict[str, Any]:
    """The YAML format as a JSON Schema, for editors (`trainrun schema`)."""
    schema = RunConfig.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "trainrun config",
        **{k: v for k, v in schema.items() if k != "title"},
    }
