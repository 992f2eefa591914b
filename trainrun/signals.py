"""Ctrl-C and SIGTERM before training: never lost.

Until training installs its own handlers (state saved, exit 130), a signal
raises KeyboardInterrupt in the main thread. Library code running at that
instant (TensorFlow's import, a tf.data trace) may catch and drop it, and the
command would then train as if nothing had happened; so the signal is also
remembered, and start-up checks once more (`raise_if_received`) before it hands
over to training.

While the run is being built (`deferred`), the first signal is only remembered
and raised as the block ends: raised inside Python code that C++ calls back
(TensorFlow's nest flattening, during model building), a KeyboardInterrupt is
turned into a SystemError whose traceback TensorFlow prints. A second signal
there is raised at once: the user insists.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

_received = False
_count = 0  # signals received inside `deferred`
_deferring = False


def _on_signal(signum: int, frame: Any) -> None:
    global _received, _count
    _received = True
    if _deferring:
        _count += 1
        if _count < 2:
            return
    raise KeyboardInterrupt


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold the first signal until the block ends (then raise KeyboardInterrupt)."""
    global _deferring, _count
    _deferring, _count = True, 0
    try:
        yield
    finally:
        _deferring = False
    raise_if_received()


def install() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt (SIGTERM as Ctrl-C, not a silent 143)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def raise_if_received() -> None:
    """Raise KeyboardInterrupt if a signal arrived and something swallowed it."""
    if _received:
        raise KeyboardInterrupt
