"""A trial's process: `python -m trainrun.sweep.child SWEEP_PID trainrun-args...`.

It asks the kernel to kill it when the sweep that started it dies (Linux's
PR_SET_PDEATHSIG), then runs the trainrun command. A sweep killed with kill -9
therefore takes its trials with it, and the `trainrun resume` of the sweep
never finds a second process training the same run directory (the run's lock
would refuse it anyway). SIGKILL is safe for a trial: its state is saved
atomically, and resuming it continues exactly where it stopped.
"""

from __future__ import annotations

import os
import signal
import sys


def die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the sweep died before the request was made
        os._exit(137)


def main() -> None:
    parent = int(sys.argv[1])
    die_with_parent(parent)
    sys.argv = ["trainrun", *sys.argv[2:]]
    from trainrun.cli import main as trainrun

    trainrun()


if __name__ == "__main__":
    main()
