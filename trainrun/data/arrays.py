"""In-memory datasets: nests of NumPy arrays, and their preprocessing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Nest = Any  # an array, or a dict of arrays keyed by model input/output name


def _leaves(nest: Nest) -> list[np.ndarray]:
    if isinstance(nest, dict):
        return [v for v in nest.values()]
    return [nest]


def _map(fn, nest: Nest) -> Nest:
    if isinstance(nest, dict):
        return {k: fn(v) for k, v in nest.items()}
    return fn(nest)


@dataclass
class ArraySplit:
    """One split held in memory. `x`/`y` are arrays or dicts of arrays."""

    x: Nest
    y: Nest | None = None
    sample_weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(_leaves(self.x)[0])

    def take(self, n: int | None) -> ArraySplit:
        if n is None or n >= len(self):
            return self
        cut = lambda a: a[:n]  # noqa: E731 - views, no copies
        return ArraySplit(
            _map(cut, self.x),
            None if self.y is None else _map(cut, self.y),
            None if self.sample_weight is None else self.sample_weight[:n],
        )

    def split_off(self, fraction: float) -> tuple[ArraySplit, ArraySplit | None]:
        """Keras' validation_split: the last `fraction` of samples, before any shuffling."""
        if not fraction:
            return self, None
        at = int(math.ceil(len(self) * (1.0 - fraction)))
        head = lambda a: a[:at]  # noqa: E731
        tail = lambda a: a[at:]  # noqa: E731
        parts = []
        for fn in (head, tail):
            parts.append(
                ArraySplit(
                    _map(fn, self.x),
                    None if self.y is None else _map(fn, self.y),
                    None if self.sample_weight is None else fn(self.sample_weight),
                )
            )
        return parts[0], parts[1]

    def reshaped(self, flatten: bool, reshape: list[int] | None) -> ArraySplit:
        if not (flatten or reshape):
            return self

        def fix(a: np.ndarray) -> np.ndarray:
            shape = (-1,) if flatten else tuple(reshape or ())
            try:
                return a.reshape((len(a), *shape))
            except ValueError as exc:
                raise ValueError(
                    f"cannot reshape inputs of shape {a.shape[1:]} to {list(shape)}"
                ) from exc

        return ArraySplit(_map(fix, self.x), self.y, self.sample_weight)

    def input_shapes(self) -> Nest:
        return _map(lambda a: tuple(a.shape[1:]), self.x)
