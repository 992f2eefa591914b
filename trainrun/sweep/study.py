"""Optuna's side of a sweep: samplers, pruners, distributions and the RDB storage.

optuna is imported inside these functions: `trainrun --help`, `runs` and config
errors never pay for it, and a missing install is one line naming the extra.
"""

from __future__ import annotations

import inspect
from typing import Any

from trainrun.errors import ConfigError, TrainrunError
from trainrun.sweep.spec import PRUNERS, Param, Spec


def optuna() -> Any:
    """The optuna module, quietened; a one-line error when it is not installed."""
    try:
        import optuna as module
    except ImportError:
        raise TrainrunError(
            "trainrun sweep needs optuna, which is not installed: pip install 'trainrun[sweep]'"
        ) from None
    module.logging.set_verbosity(module.logging.WARNING)
    return module


def distributions(params: list[Param]) -> dict[str, Any]:
    """Optuna distributions of the parameters, by their dotted path."""
    dist = optuna().distributions
    out: dict[str, Any] = {}
    for p in params:
        if p.is_grid:
            out[p.name] = dist.CategoricalDistribution(list(p.values))
        elif p.kind in ("uniform", "loguniform"):
            out[p.name] = dist.FloatDistribution(
                float(p.low), float(p.high), log=p.kind == "loguniform"
            )
        else:
            out[p.name] = dist.IntDistribution(
                int(p.low), int(p.high), log=p.kind == "logint", step=int(p.step or 1)
            )
    return out


def _construct(cls: Any, args: dict[str, Any], what: str, name: str) -> Any:
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepted = {}
    for key in args:
        if key not in accepted or key in ("seed", "search_space"):
            known = [k for k in accepted if k not in ("self", "seed", "search_space")]
            raise ConfigError(
                f"sweep.{what}: {name} takes no argument '{key}'; it takes {', '.join(known)}"
            )
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sweep.{what}: {name}: {exc}") from None


def make_sampler(spec: Spec, seed: int | None) -> Any:
    """The sampler the spec names, seeded (the config's seed unless the sweep gives one)."""
    samplers = optuna().samplers
    if spec.sampler == "grid":
        if spec.sampler_args:
            raise ConfigError("sweep.sampler: grid takes no arguments; its grid is the parameters")
        return samplers.GridSampler({p.name: list(p.values) for p in spec.params}, seed=seed)
    cls = samplers.RandomSampler if spec.sampler == "random" else samplers.TPESampler
    _construct(cls, spec.sampler_args, "sampler", spec.sampler)  # checks the arguments
    return cls(**spec.sampler_args, seed=seed)


def make_pruner(spec: Spec) -> Any:
    pruners = optuna().pruners
    cls = getattr(pruners, PRUNERS[spec.pruner])
    return _construct(cls, spec.pruner_args, "pruner", spec.pruner)


def storage_url_shown(url: str) -> str:
    """The URL without its password, for messages and sweep.json readers."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def open_storage(url: str, *, option: str = "--storage") -> Any:
    """Optuna's RDB storage at `url`, connected now: an unreachable one is one line."""
    module = optuna()
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several workers write one file: wait for the lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        return module.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except ImportError as exc:
        raise TrainrunError(
            f"{option} {storage_url_shown(url)}: its database driver is not installed "
            f"({exc.name or exc}); pip install 'trainrun[sweep]' brings the PostgreSQL one"
        ) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors are many; each is one line here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainrunError(
            f"{option} {storage_url_shown(url)}: cannot open the study storage ({first}); "
            "check the URL, that the database server runs and that it can be reached"
        ) from None
