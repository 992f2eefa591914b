"""A Ctrl-C or SIGTERM during start-up is never lost, even when library code swallows it."""

from __future__ import annotations

import os
import signal

import pytest

from trainrun import signals


@pytest.fixture
def installed(monkeypatch):
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(signals, "_received", False)
    signals.install()
    yield
    for sig, handler in old.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_swallowed_signal_is_raised_again_before_training(installed, sig):
    signals.raise_if_received()  # nothing yet
    try:
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0.1)  # let the handler run here
    except KeyboardInterrupt:
        pass  # what a library's broad except does to it
    with pytest.raises(KeyboardInterrupt):
        signals.raise_if_received()
