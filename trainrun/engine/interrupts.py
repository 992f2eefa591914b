"""Ctrl-C and SIGTERM during training: finish the step, save, leave with 130."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any


class InterruptFlag:
    """SIGINT/SIGTERM -> finish the step, save, exit 130. A second Ctrl-C exits at once.

    Held from the start of training until the outcome is in run.json, the final
    model's save included, so that a signal never cuts those writes. After that
    the run's files are complete, and a signal (a second Ctrl-C while the process
    prints its summary or flushes at exit, say) exits at once, with no traceback.
    """

    def __init__(self, on_hard_exit: Any) -> None:
        self.raised = False
        self.on_hard_exit = on_hard_exit

    def __call__(self) -> bool:
        return self.raised

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:
            with contextlib.suppress(Exception):
                self.on_hard_exit()
            exit_at_once()
        self.raised = True

    def __enter__(self) -> InterruptFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_on_signal)


def exit_at_once() -> None:
    """Leave now with 130: what is on disk is consistent, only buffered output is flushed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(130)


def _exit_on_signal(signum: int, frame: Any) -> None:
    exit_at_once()
