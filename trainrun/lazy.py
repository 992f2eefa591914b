"""A module imported on first use: TensorFlow in modules that the JAX and torch
backends also run, so that those backends never import it (nor need it installed)."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module `name`; the first attribute read imports it.

    Unlike `importlib.util.LazyLoader` it puts nothing into ``sys.modules`` until
    then, so ``"tensorflow" in sys.modules`` keeps telling whether it was used.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__") and attr != "__version__":
            raise AttributeError(attr)  # protocol probes (copy, pickle) must not import it
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def lazy_module(name: str) -> Any:
    return LazyModule(name)
