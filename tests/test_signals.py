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


def _deliver(sig: int) -> None:
    os.kill(os.getpid(), sig)
    signal.sigtimedwait([], 0.1)  # let the handler run here


def _held_then(sig: int, times: int) -> list[str]:
    """What happened to `times` signals sent inside `signals.deferred()`."""
    seen = []
    try:
        with signals.deferred():
            for _ in range(times):
                _deliver(sig)
                seen.append("held")
    except KeyboardInterrupt:
        seen.append("raised")
    return seen


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_building_is_raised_where_it_is_safe(installed, sig, monkeypatch):
    """Raised inside library code called back from C++ (TensorFlow's nest), a
    KeyboardInterrupt becomes a printed SystemError; while the run is being built the
    first signal is held and raised when the building ends, a second one at once."""
    assert _held_then(sig, 1) == ["held", "raised"]
    monkeypatch.setattr(signals, "_received", False)
    assert _held_then(sig, 2) == ["held", "raised"]  # the user insists: the second is raised
    monkeypatch.setattr(signals, "_received", False)
    assert _held_then(sig, 0) == []
    with pytest.raises(KeyboardInterrupt):
        _deliver(sig)  # outside the block: raised at once, as before
