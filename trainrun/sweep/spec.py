"""The sweep's spec: the `sweep:` section of a config and the command line's --param.

No optuna and no TensorFlow here: a spec is parsed and its shape checked in a
fraction of a second. Checks that need optuna (sampler and pruner arguments,
the storage) live in `trainrun.sweep.study`; checks against the config
(does each path exist, does each value fit) in `trainrun.sweep.runner.check`.

    sweep:
      parameters:
        fit.batch_size: [32, 64]                                   # a grid (categorical)
        compile.optimizer.Adam.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
        model.layers.1.Dense.units: {int: [16, 128, 16]}           # low, high, step
      sampler: grid            # grid | random | tpe, or {tpe: {n_startup_trials: 5}}
      pruner: none             # none | median | percentile | hyperband | threshold | ...
      trials: 8
      metric: val_loss         # default: the run's monitored value
      direction: minimize      # default: the metric's own direction
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trainrun.errors import ConfigError, did_you_mean

DISTRIBUTIONS = ("uniform", "loguniform", "int", "logint", "choice")
SAMPLERS = ("grid", "random", "tpe")
# Optuna's pruners by the name a config gives them.
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "hyperband": "HyperbandPruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "wilcoxon": "WilcoxonPruner",
}
DIRECTIONS = {"minimize": "minimize", "min": "minimize", "maximize": "maximize", "max": "maximize"}


class SweepSection(BaseModel):
    """The `sweep:` section of a config. `trainrun fit` ignores it; `trainrun sweep` reads it."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, Any] = Field(default_factory=dict)
    sampler: str | dict[str, dict[str, Any] | None] = "auto"
    pruner: str | dict[str, dict[str, Any] | None] = "none"
    trials: int | None = Field(None, ge=1, le=1_000_000)
    metric: str | None = None
    direction: Literal["minimize", "maximize", "min", "max"] | None = None
    workers: int = Field(1, ge=1, le=256)
    storage: str | None = None


@dataclass(frozen=True)
class Param:
    """One swept config path: a list of values, or a range with a distribution."""

    name: str  # the dotted path, as --set takes it
    kind: str  # choice | uniform | loguniform | int | logint
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None

    @property
    def is_grid(self) -> bool:
        return self.kind == "choice"

    def probe_values(self) -> list[Any]:
        """Values that stand for the whole range when the config is checked."""
        if self.is_grid:
            return list(self.values)
        if self.kind in ("int", "logint"):
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    def to_json(self) -> dict[str, Any]:
        if self.is_grid:
            return {"choice": list(self.values)}
        bounds = [self.low, self.high] + ([self.step] if self.step is not None else [])
        return {self.kind: bounds}


def set_arg(name: str, value: Any) -> str:
    """`--set` text for one parameter value: JSON is YAML, and JSON floats round-trip."""
    return f"{name}={json.dumps(value)}"


@dataclass
class Spec:
    """A sweep, resolved: parameters, sampler, pruner, trials, metric and direction."""

    params: list[Param]
    sampler: str
    sampler_args: dict[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_args: dict[str, Any] = field(default_factory=dict)
    trials: int | None = None
    metric: str | None = None
    direction: str | None = None  # minimize | maximize
    workers: int = 1
    storage: str | None = None

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.params if p.is_grid)

    def to_json(self) -> dict[str, Any]:
        return {
            "parameters": {p.name: p.to_json() for p in self.params},
            "sampler": {self.sampler: self.sampler_args},
            "pruner": {self.pruner: self.pruner_args},
            "trials": self.trials,
            "metric": self.metric,
            "direction": self.direction,
        }


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def parse_param(name: str, raw: Any, where: str) -> Param:
    """A parameter from its YAML value; ConfigError naming `where` for anything odd."""

    def bad(message: str) -> ConfigError:
        return ConfigError(f"sweep parameter {name} {where}: {message}")

    if not name or any(not part for part in name.split(".")):
        raise bad("expected a dotted config path like fit.batch_size")
    if isinstance(raw, list):
        raw = {"choice": raw}
    if not isinstance(raw, dict) or len(raw) != 1:
        raise bad(
            f"expected a list of values ([32, 64]) or one distribution "
            f"({{loguniform: [1.0e-4, 1.0e-2]}}); got {raw!r}"
        )
    ((kind, args),) = raw.items()
    if kind not in DISTRIBUTIONS:
        raise bad(
            f"unknown distribution '{kind}'"
            + (did_you_mean(str(kind), DISTRIBUTIONS) or f"; use one of {', '.join(DISTRIBUTIONS)}")
        )
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise bad("a list of values needs at least one value")
        odd = [v for v in args if not _scalar(v) or (isinstance(v, float) and not math.isfinite(v))]
        if odd:
            raise bad(f"values must be numbers, strings, true/false or null; got {odd[0]!r}")
        if len({json.dumps(v) for v in args}) != len(args):
            raise bad(f"a value is listed twice in {args!r}")
        return Param(name, "choice", values=tuple(args))
    if not isinstance(args, list) or len(args) not in (2, 3) or not all(map(_number, args)):
        raise bad(
            f"{kind} takes [low, high] (int also [low, high, step]) of finite numbers; got {args!r}"
        )
    low, high, *rest = args
    step = rest[0] if rest else None
    if step is not None and kind != "int":
        raise bad(f"only int takes a step; {kind} takes [low, high]")
    if kind in ("int", "logint") and not all(float(v) == int(v) for v in args):
        raise bad(f"{kind} bounds must be whole numbers; got {args!r}")
    if not low < high:
        raise bad(f"low must be below high; got [{low}, {high}]")
    if kind in ("loguniform", "logint") and low <= 0:
        raise bad(f"{kind} needs low > 0 (a log scale); got {low}")
    if step is not None and step <= 0:
        raise bad(f"step must be > 0; got {step}")
    return Param(name, kind, low=low, high=high, step=step)


def _component(
    value: str | dict[str, Any], what: str, known: tuple[str, ...], where: str
) -> tuple[str, dict[str, Any]]:
    if isinstance(value, dict):
        if len(value) != 1:
            raise ConfigError(
                f"sweep.{what} {where}: expected one name, like {{{known[-1]}: {{...}}}}"
            )
        ((name, args),) = value.items()
    else:
        name, args = value, None
    if name not in known:
        raise ConfigError(
            f"sweep.{what} {where}: unknown {what} '{name}'"
            + (did_you_mean(str(name), known) or "")
            + f"; use one of {', '.join(known)}"
        )
    if args is not None and not isinstance(args, dict):
        raise ConfigError(f"sweep.{what} {where}: arguments of {name} must be a mapping")
    return name, dict(args or {})


def resolve(section: SweepSection | None, *, file: str, cli: dict[str, Any]) -> Spec:
    """The sweep from the config's section and the command line (which wins, key by key).

    `cli` holds parsed options: params (name -> raw YAML value, with where it came
    from), sampler, pruner, trials, metric, direction, workers, storage.
    """
    section = section or SweepSection()
    params: dict[str, Param] = {}
    for name, raw in section.parameters.items():
        params[name] = parse_param(name, raw, f"(sweep.parameters in {file})")
    for name, raw in cli.get("params", {}).items():
        params[name] = parse_param(name, raw, f"(from --param {name})")
    if not params:
        raise ConfigError(
            f"{file} has no sweep parameters: give a sweep: section with parameters, "
            "or --param PATH=VALUES (e.g. --param 'fit.batch_size=[32, 64]')"
        )
    cli_sampler = cli.get("sampler")
    sampler_value = cli_sampler or section.sampler
    where = "(from --sampler)" if cli_sampler else f"in {file}"
    if sampler_value == "auto":
        sampler_value = "grid" if all(p.is_grid for p in params.values()) else "tpe"
    sampler, sampler_args = _component(sampler_value, "sampler", SAMPLERS, where)
    if sampler == "grid":
        ranged = [p.name for p in params.values() if not p.is_grid]
        if ranged:
            raise ConfigError(
                f"sweep.sampler {where}: the grid sampler needs a list of values for every "
                f"parameter, but {', '.join(ranged)} is a range; list its values, or use "
                "sampler random or tpe"
            )
    cli_pruner = cli.get("pruner")
    pruner, pruner_args = _component(
        cli_pruner or section.pruner,
        "pruner",
        tuple(PRUNERS),
        "(from --pruner)" if cli_pruner else f"in {file}",
    )
    spec = Spec(
        params=list(params.values()),
        sampler=sampler,
        sampler_args=sampler_args,
        pruner=pruner,
        pruner_args=pruner_args,
        trials=cli.get("trials") or section.trials,
        metric=cli.get("metric") or section.metric,
        direction=DIRECTIONS.get(cli.get("direction") or section.direction or ""),
        workers=cli.get("workers") or section.workers,
        storage=cli.get("storage") or section.storage,
    )
    if spec.trials is None:
        if sampler != "grid":
            raise ConfigError(
                f"sweep.trials in {file}: sampler {sampler} needs a number of trials "
                "(sweep: {trials: 20}, or --trials 20)"
            )
        spec.trials = spec.grid_size
    return spec
