"""The YAML format, as typed pydantic models.

Every model forbids unknown keys, so a typo is an error with a key path, never
a silently ignored setting. Components (a layer, an optimizer, a callback...)
are written ``Name``, ``{Name: {args}}`` or ``module:attr``; they stay plain
YAML here and are resolved against the real Keras registries in
`trainrun.builders`, once Keras is imported.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from trainrun.sweep.spec import SweepSection
from trainrun.tracking.config import TrackingConfig


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


def _check_layer(value: Any) -> Any:
    """A layer component; `Name: value` (not a mapping) fills the first parameter."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, args),) = value.items()
        if isinstance(name, str) and args is not None and not isinstance(args, dict):
            from trainrun.registry import layer_kind, shorthand_args

            return {name: shorthand_args(layer_kind(name) or "layer", name, args)}
    return _check_component(value)


# What each kind of component is called in `trainrun schema`'s $defs, with the
# examples its description names. The names an editor completes are filled in by
# `json_schema`, from Keras' installed source (no TensorFlow import).
_COMPONENT_KINDS: dict[str, tuple[str, list[Any]]] = {
    "layer": (
        "LayerComponent",
        [
            "Dense",
            "Conv2D",
            {"Dense": {"units": 10, "activation": "relu"}},
            {"Dropout": 0.5},
            {"MobileNetV2": {"include_top": False, "weights": None, "trainable": False}},
        ],
    ),
    "optimizer": (
        "OptimizerComponent",
        ["rmsprop", "adam", "RMSprop", {"Adam": {"learning_rate": 0.001}}],
    ),
    "loss": (
        "LossComponent",
        ["sparse_categorical_crossentropy", "mse", {"BinaryCrossentropy": {"from_logits": True}}],
    ),
    "metric": (
        "MetricComponent",
        ["accuracy", "sparse_categorical_accuracy", "mae", {"AUC": {"num_thresholds": 100}}],
    ),
    "callback": (
        "CallbackComponent",
        ["EarlyStopping", "TerminateOnNaN", {"EarlyStopping": {"patience": 3}}],
    ),
}


def _example_text(kind: str) -> str:
    def show(value: Any) -> str:
        if isinstance(value, dict):
            inner = ", ".join(f"{k}: {show(v)}" for k, v in value.items())
            return f"{{{inner}}}"
        if value is None:
            return "null"
        return str(value).lower() if isinstance(value, bool) else str(value)

    return ", ".join(show(e) for e in _COMPONENT_KINDS[kind][1])


def _component(kind: str) -> Any:
    """A component field of one kind: validated alike, described for editors per kind."""
    # A placeholder: pydantic resolves a $ref itself, so `json_schema` puts it in.
    marker = {_MARKER: kind}
    check = _check_layer if kind == "layer" else _check_component
    return Annotated[Any, AfterValidator(check), WithJsonSchema(marker)]


_MARKER = "x-trainrun-component"


Component = Annotated[Any, AfterValidator(_check_component)]
"""``Name``, ``{Name: {args}}`` or ``module:attr``: normalised to str or a one-key dict."""
LayerSpec = _component("layer")
OptimizerSpec = _component("optimizer")
LossSpec = _component("loss")
MetricSpec = _component("metric")
CallbackSpec = _component("callback")


# ---------------------------------------------------------------- numbers
#
# Counts are whole numbers and nothing else: YAML's `true` is not 1 epoch, and
# 1e18 is not a batch size. Floats are finite: a NaN learning rate or scale
# would train on NaN. Each message names the range, so the fix is in the error.

MAX_COUNT = 2**31 - 1
"""Upper bound of counts (epochs, batch sizes, steps): TensorFlow indexes with int32."""


def _whole_number(low: int, high: int) -> Any:
    wanted = f"a whole number from {low} to {high}"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a valid integer, {wanted} (got {value!r})")
        if value < low:
            raise ValueError(f"must be greater than or equal to {low} ({wanted}; got {value!r})")
        if value > high:
            raise ValueError(f"must be less than or equal to {high} ({wanted}; got {value!r})")
        return value

    return check


def Count(low: int = 1, high: int = MAX_COUNT) -> Any:  # noqa: N802 - reads as a type
    """An int in [low, high]; bools and floats (even 3.0) are refused."""
    return Annotated[
        int,
        PlainValidator(_whole_number(low, high)),
        WithJsonSchema({"type": "integer", "minimum": low, "maximum": high}),
    ]


def _finite(ge: float | None, lt: float | None, wanted: str) -> Any:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be {wanted} (got {value!r})")
        if not math.isfinite(value):
            raise ValueError(f"must be {wanted} (got {value!r})")
        if ge is not None and value < ge:
            raise ValueError(f"must be greater than or equal to {ge:g} ({wanted}; got {value!r})")
        if lt is not None and value >= lt:
            raise ValueError(f"must be less than {lt:g} ({wanted}; got {value!r})")
        return float(value)

    return check


def Real(  # noqa: N802 - reads as a type
    *, ge: float | None = None, lt: float | None = None, wanted: str | None = None
) -> Any:
    """A finite float (ints accepted) in [ge, lt); NaN, infinities and bools are refused.

    `wanted` describes the range in messages when a model validator checks it.
    """
    if wanted is None:
        wanted = "a finite number"
        if ge is not None and lt is not None:
            wanted += f" from {ge:g} to below {lt:g}"
        elif ge is not None:
            wanted += f" >= {ge:g}"
    schema: dict[str, Any] = {"type": "number"}
    if ge is not None:
        schema["minimum"] = ge
    if lt is not None:
        schema["exclusiveMaximum"] = lt
    return Annotated[float, PlainValidator(_finite(ge, lt, wanted)), WithJsonSchema(schema)]


def _class_index(value: Any) -> int:
    # A class_weight key: 3, or '3' as a dumped config.yaml may hold it; never `true`.
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"class_weight keys must be a valid integer, a class index >= 0 (got {value!r})"
        )
    return value


def _finite_weights(value: Any) -> Any:
    # Checked before the dict | list union, whose error would only say "not a dict".
    items = value.items() if isinstance(value, dict) else enumerate(value or ())
    for key, weight in items if isinstance(value, dict | list) else ():
        if isinstance(weight, bool) or (isinstance(weight, float) and not math.isfinite(weight)):
            raise ValueError(f"loss_weights[{key!r}] must be a finite number (got {weight!r})")
    return value


ClassIndex = Annotated[
    int,
    PlainValidator(_class_index),
    WithJsonSchema({"type": "integer", "minimum": 0}),
]


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
    """Where one split (train / validation / test) of numpy, csv or tfdata data comes from."""

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
    # csv
    columns: list[str] | None = None


# Keras' image_dataset_from_directory / text_dataset_from_directory arguments that
# trainrun sets elsewhere: answered with where they went, not "unknown key".
_KERAS_ELSEWHERE = {
    "batch_size": "trainrun batches with fit.batch_size",
    "subset": "trainrun takes both subsets: 'training' is the train split and "
    "'validation' the validation split",
    "verbose": "trainrun reports what it found itself",
    "format": "trainrun reads the files into memory arrays",
}


class _Folder(Strict):
    """The arguments of Keras' *_dataset_from_directory that a config can copy as they are."""

    directory: str
    labels: Literal["inferred"] = "inferred"
    label_mode: Literal["int", "categorical", "binary"] = "int"
    class_names: list[str] | None = None
    shuffle: bool = True
    seed: Count(0, 2**32 - 1) | None = None
    validation_split: Real(ge=0, lt=1) = 0.0
    follow_links: bool = False
    validation_directory: str | None = None
    test_directory: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _keras_keys_elsewhere(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, where in _KERAS_ELSEWHERE.items():
                if key in value:
                    raise ValueError(f"'{key}' is not a key here: {where}; remove it")
        return value

    @model_validator(mode="after")
    def _one_validation(self) -> _Folder:
        if self.validation_split and self.validation_directory:
            raise ValueError("give either validation_split or validation_directory, not both")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names has a name twice")
        return self


def _image_size(value: Any) -> Any:
    # Keras takes an int for a square size, or (height, width).
    if isinstance(value, int) and not isinstance(value, bool):
        return [value, value]
    if isinstance(value, list | tuple) and len(value) != 2:
        raise ValueError(
            f"image_size is two numbers, height and width (or one number for both), got {list(value)!r}"
        )
    return value


class ImageFolder(_Folder):
    """`source: image_folder`: Keras' image_dataset_from_directory, read into memory."""

    image_size: Annotated[list[Count()], BeforeValidator(_image_size)] = Field(
        default_factory=lambda: [256, 256]
    )
    color_mode: Literal["rgb", "grayscale", "rgba"] = "rgb"
    interpolation: Literal[
        "bilinear",
        "nearest",
        "bicubic",
        "area",
        "lanczos3",
        "lanczos5",
        "gaussian",
        "mitchellcubic",
    ] = "bilinear"
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False
    data_format: Literal["channels_last", "channels_first"] | None = None

    @model_validator(mode="after")
    def _one_aspect(self) -> ImageFolder:
        if self.crop_to_aspect_ratio and self.pad_to_aspect_ratio:
            raise ValueError("set either crop_to_aspect_ratio or pad_to_aspect_ratio, not both")
        return self


class TextFolder(_Folder):
    """`source: text_folder`: Keras' text_dataset_from_directory, read into memory."""

    max_length: Count() | None = None


_FOLDERS = ("image_folder", "text_folder")
_CSV_KEYS = {"path", "label", "columns"}


class Limit(Strict):
    """Use only the first N samples of a split: for smoke tests and CI."""

    train: Count() | None = None
    validation: Count() | None = None
    test: Count() | None = None


def _scale(value: Any) -> float | list[float]:
    # One divisor, or one per feature of the last axis; never 0 (checked here, so a
    # list's message names the item).
    one = _finite(None, None, "a finite number")
    if isinstance(value, list):
        if not value:
            raise ValueError("a list of divisors needs at least one number (one per feature)")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(one(item))
            except ValueError as exc:
                raise ValueError(f"item {i} {exc}") from None
        if 0 in out:
            raise ValueError(f"'scale' divides the inputs and cannot be 0 (item {out.index(0)})")
        return out
    return one(value)


Scale = Annotated[
    float | list[float],
    PlainValidator(_scale),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number"},
                {"type": "array", "items": {"type": "number"}, "minItems": 1},
            ]
        }
    ),
]


class DataConfig(Strict):
    source: Literal["mnist", "numpy", "tfdata", "csv", "image_folder", "text_folder"] = "mnist"
    flatten: bool = False
    reshape: list[Count(-1)] | None = None
    scale: Scale | None = None
    one_hot: bool = False
    num_classes: Count() | None = None
    validation_split: Real(ge=0, lt=1) = 0.0
    train: Split | None = None
    validation: Split | None = None
    test: Split | None = None
    limit: Limit | None = None
    image_folder: ImageFolder | None = None
    text_folder: TextFolder | None = None
    # JAX: keep in-memory data on the device; 'auto' when it fits (data/device_feed.py).
    on_device: Literal["auto"] | bool = "auto"

    @model_validator(mode="after")
    def _fits_source(self) -> DataConfig:
        self._fits_folder_or_csv()
        if self.flatten and self.reshape:
            raise ValueError("set either 'flatten' or 'reshape', not both")
        if self.scale is not None and self.scale == 0:
            raise ValueError("'scale' divides the inputs and cannot be 0")
        if self.num_classes is not None and not self.one_hot:
            raise ValueError("'num_classes' is the width of one-hot labels: set one_hot: true too")
        if self.source in ("numpy", "tfdata", "csv") and self.train is None:
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

    def _fits_folder_or_csv(self) -> None:
        for key in _FOLDERS:
            if getattr(self, key) is not None and self.source != key:
                raise ValueError(
                    f"'{key}' is read only with source: {key}; remove it or set source: {key}"
                )
        if self.source in _FOLDERS:
            if getattr(self, self.source) is None:
                raise ValueError(
                    f"source '{self.source}' needs '{self.source}: {{directory: ...}}', "
                    "the folder with one subfolder per class"
                )
            for split in ("train", "validation", "test"):
                if getattr(self, split) is not None:
                    raise ValueError(
                        f"source '{self.source}' takes its splits from {self.source}.directory, "
                        f".validation_split or .validation_directory, and .test_directory; remove '{split}'"
                    )
            if self.validation_split:
                raise ValueError(
                    f"with source '{self.source}' write validation_split inside {self.source} "
                    "(Keras' semantics: the files are shuffled with seed, then split)"
                )
        if self.source == "text_folder" and (self.scale is not None or self.flatten):
            raise ValueError("text_folder data are strings: 'scale' and 'flatten' do not apply")
        if self.source == "csv":
            for split in ("train", "validation", "test"):
                given = getattr(self, split)
                if given is None:
                    continue
                # Set values, not model_fields_set: a resolved config.yaml writes every key.
                extra = sorted(
                    k
                    for k in Split.model_fields
                    if k not in _CSV_KEYS and getattr(given, k) not in (None, {})
                )
                if extra:
                    raise ValueError(
                        f"a csv split takes path, label and columns; '{split}' has {', '.join(extra)}"
                    )
                if given.path is None:
                    raise ValueError(f"the csv split '{split}' needs 'path: file.csv'")
            if self.train is not None and self.train.label is None:
                raise ValueError("the csv train split needs 'label: COLUMN', the column that is y")


class Factory(Strict):
    factory: str
    args: dict[str, Any] = Field(default_factory=dict)


class GraphNode(Strict):
    name: str
    layer: LayerSpec
    input: str | list[str]


class ModelConfig(Strict):
    name: str | None = None
    layers: list[LayerSpec] | None = None
    inputs: dict[str, dict[str, Any]] | None = None
    graph: list[GraphNode] | None = None
    outputs: str | list[str] | None = None
    builder: Factory | None = None
    path: str | None = None
    # Weights loaded into the built model before training: a .keras or .weights.h5 file
    # (an earlier run's model.keras, for fine-tuning in a second run).
    initial_weights: str | None = None

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
    optimizer: OptimizerSpec = "rmsprop"
    loss: LossSpec | dict[str, Any] | None = None
    metrics: list[MetricSpec] | dict[str, Any] | None = None
    loss_weights: Annotated[
        dict[str, Real()] | list[Real()] | None, BeforeValidator(_finite_weights)
    ] = None
    jit_compile: Literal["auto"] | bool = "auto"
    steps_per_execution: Literal["auto"] | Count() = "auto"
    # JAX: the steps of one execution as one lax.scan; 'auto' on accelerators (engine/jax_steps.py).
    scan_steps: Literal["auto"] | bool = "auto"


class FitConfig(Strict):
    epochs: Count() = 1
    batch_size: Count() = 32
    shuffle: bool = True
    class_weight: dict[ClassIndex, Real(wanted="a finite number >= 0")] | None = None
    steps_per_epoch: Count() | None = None
    validation_steps: Count() | None = None
    validation_freq: Count() = 1
    validation_batch_size: Literal["auto"] | Count() = "auto"

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
    state_every: Literal["auto", "epoch"] | Count() = "auto"


class RunConfig(Strict):
    name: Annotated[str, AfterValidator(_check_run_name)] = Field(
        "run", json_schema_extra={"pattern": RUN_NAME.pattern}
    )
    seed: Count(0, 2**32 - 1) | None = None
    # The Keras backend, set as KERAS_BACKEND before Keras is imported.
    backend: Literal["tensorflow", "jax", "torch"] = "tensorflow"
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
    callbacks: list[CallbackSpec] = Field(default_factory=list)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    # `trainrun sweep` reads it; a run's own config.yaml leaves it out.
    sweep: SweepSection | None = Field(None, exclude=True)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


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


def _names_for_editors(kind: str) -> tuple[list[str], bool]:
    """The names an editor offers for a kind, and whether trainrun accepts only those.

    Optimizer names are matched in any case by Keras, so they are offered (class
    names and the lower-case aliases) but any string passes the schema.
    """
    from trainrun import catalog

    if kind == "optimizer":
        classes = [n for n in catalog.names("optimizer") if n[:1].isupper()]
        return sorted({*classes, *(n.lower() for n in classes)}), False
    if kind in ("loss", "metric"):
        return list(catalog.loss_or_metric_names(kind)), True
    if kind == "callback":
        from trainrun.registry import callback_names

        return list(callback_names()), True
    if kind == "layer":  # keras.applications models are layers too
        return catalog.names("layer") + catalog.names("application"), True
    return catalog.names(kind), True


def _callback_arguments(name: str) -> dict[str, Any]:
    """{param: {description}} of a Keras callback, for completing its arguments."""
    from trainrun import catalog

    sig = catalog.signature("callback", name)
    if sig is None:
        return {}
    docs = catalog.param_docs("callback", name)
    out: dict[str, Any] = {}
    for p in sig.params:
        text = docs.get(p.name, "")
        default = "required" if p.required else f"default {p.default}"
        out[p.name] = {"description": f"{text} ({default})" if text else default}
    return out


def _component_def(kind: str) -> dict[str, Any]:
    """JSON Schema of one kind of component: a name, an import path, or {Name: {args}}."""
    examples = _COMPONENT_KINDS[kind][1]
    names, only_these = _names_for_editors(kind)
    import_path = {"type": "string", "pattern": ":", "description": "an import path module:attr"}
    if names:
        name = {"anyOf": [{"enum": names}, import_path]}
        if not only_these:
            name["anyOf"].append({"type": "string", "minLength": 1})
    else:  # Keras' layout unknown: any name passes, trainrun checks it
        name = {"type": "string", "minLength": 1}
    args_schema: dict[str, Any] = {"anyOf": [{"type": "object"}, {"type": "null"}]}
    if kind == "layer":  # `Dense: 10`, `Reshape: [28, 28, 1]`: the first parameter
        args_schema["anyOf"] += [{"type": t} for t in ("number", "string", "boolean", "array")]
    properties = {}
    for n in names:
        args = _callback_arguments(n) if kind == "callback" else {}
        properties[n] = (
            {"anyOf": [{"type": "object", "properties": args}, {"type": "null"}]}
            if args
            else args_schema
        )
    text = (
        f"{'An' if kind[0] in 'aeiou' else 'A'} {kind}: a Keras name, one {{Name: {{args}}}} entry, or an import path "
        f"module:attr; e.g. {_example_text(kind)}"
    )
    return {
        "description": text,
        "examples": examples,
        "anyOf": [
            name,
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": name,
                "properties": properties,
                "additionalProperties": args_schema,
            },
        ],
    }


def _link_components(node: Any) -> Any:
    """Replace each component placeholder with a $ref to its kind's definition."""
    if isinstance(node, list):
        return [_link_components(v) for v in node]
    if not isinstance(node, dict):
        return node
    if _MARKER in node:
        rest = {k: v for k, v in node.items() if k != _MARKER}
        return {"$ref": f"#/$defs/{_COMPONENT_KINDS[node[_MARKER]][0]}", **rest}
    return {k: _link_components(v) for k, v in node.items()}


def json_schema() -> dict[str, Any]:
    """The YAML format as a JSON Schema, for editors (`trainrun schema`).

    Component fields list the names Keras offers (read from its source, without
    TensorFlow), so an editor completes them.
    """
    schema = _link_components(RunConfig.model_json_schema())
    defs = schema.setdefault("$defs", {})
    for kind, (def_name, _) in _COMPONENT_KINDS.items():
        defs[def_name] = _component_def(kind)
    _allow_base(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "trainrun config",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _allow_base(schema: dict[str, Any]) -> None:
    """`base:` (config/compose.py) is read before validation, so RunConfig has no field for it.

    A config with a base may leave out what its base gives, `model` included.
    """
    name = {"type": "string", "minLength": 1}
    schema["properties"]["base"] = {
        "description": "Config file(s) this one starts from, deep-merged under it; "
        "relative to this file's folder",
        "anyOf": [name, {"type": "array", "items": name}],
    }
    callbacks = schema["properties"]["callbacks"]
    callbacks["items"] = {
        "anyOf": [
            callbacks["items"],
            {"type": "string", "pattern": "^~.", "description": "~Name drops a base's Name"},
        ]
    }
    required = schema.pop("required", [])
    if required:
        schema["if"] = {"required": ["base"]}
        schema["else"] = {"required": required}
