"""Epoch -> learning rate functions written in YAML, for LearningRateScheduler.

Epochs count from 0. Each schedule is a small picklable callable
``fn(epoch, lr) -> lr`` built from ``{kind: {args}}``::

    piecewise:   {boundaries: [10, 20], values: [1e-3, 1e-4, 1e-5]}
                 a boundary is the first epoch of the next value
    exponential: {initial: 1e-3, rate: 0.9, every: 1, staircase: false}
    step:        {initial: 1e-3, factor: 0.5, every: 10}
    cosine:      {initial: 1e-3, epochs: 50, alpha: 0.0, warmup: 0}
    constant:    {value: 1e-3}

``initial`` may be left out: the optimizer's learning rate at the first call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainrun.errors import UnknownNameError


@dataclass
class _Schedule:
    initial: float | None = None

    def _start(self, lr: float) -> float:
        if self.initial is None:
            self.initial = float(lr)
        return self.initial


@dataclass
class Piecewise:
    boundaries: list[int]
    values: list[float]

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError(
                f"piecewise needs one more value than boundaries: got {len(self.boundaries)} "
                f"boundaries and {len(self.values)} values"
            )
        if list(self.boundaries) != sorted(self.boundaries):
            raise ValueError(f"piecewise boundaries must be increasing, got {self.boundaries}")

    def __call__(self, epoch: int, lr: float) -> float:
        return float(self.values[sum(1 for b in self.boundaries if epoch >= b)])


@dataclass
class Exponential(_Schedule):
    rate: float = 0.9
    every: int = 1
    staircase: bool = False

    def __call__(self, epoch: int, lr: float) -> float:
        p = epoch // self.every if self.staircase else epoch / self.every
        return float(self._start(lr) * self.rate**p)


@dataclass
class Step(_Schedule):
    factor: float = 0.5
    every: int = 10

    def __call__(self, epoch: int, lr: float) -> float:
        return float(self._start(lr) * self.factor ** (epoch // self.every))


@dataclass
class Cosine(_Schedule):
    epochs: int = 10
    alpha: float = 0.0
    warmup: int = 0

    def __call__(self, epoch: int, lr: float) -> float:
        start = self._start(lr)
        if epoch < self.warmup:
            return float(start * (epoch + 1) / self.warmup)
        t = min(epoch - self.warmup, self.epochs) / max(self.epochs, 1)
        return float(start * (self.alpha + (1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * t))))


@dataclass
class Constant:
    value: float

    def __call__(self, epoch: int, lr: float) -> float:
        return float(self.value)


SCHEDULES = {
    "piecewise": Piecewise,
    "exponential": Exponential,
    "step": Step,
    "cosine": Cosine,
    "constant": Constant,
}


def unknown_schedule(kind: str, *, path: str | None = None) -> UnknownNameError:
    """The error for a `{kind: {args}}` schedule that is not one of SCHEDULES."""
    return UnknownNameError(
        "schedule", kind, SCHEDULES, path=path, hint=f"known: {', '.join(SCHEDULES)}"
    )
