"""Ctrl-C and SIGTERM before training: never lost.

Until training installs its own handlers (state saved, exit 130), a signal
raises KeyboardInterrupt in the main thread. Library code running at that
instant (TensorFlow's import, a tf.data trace) may catch and drop it, and the
command would then train as if nothing had happened; so the signal is also
remembered, and start-up checks once more (`raise_if_received`) before it hands
over to training.
"""

from __future__ import annotations

import signal
from typing import Any

_received = False


def _on_signal(signum: int, frame: Any) -> None:
    global _received
    _received = True
    raise KeyboardInterrupt


def install() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt (SIGTERM as Ctrl-C, not a silent 143)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def raise_if_received() -> None:
    """Raise KeyboardInterrupt if a signal arrived and something swallowed it."""
    if _received:
        raise KeyboardInterrupt
