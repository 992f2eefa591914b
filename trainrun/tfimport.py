"""TensorFlow's share of a trainrun process: imported once, quietly, and left fast.

TensorFlow's native logging prints oneDNN and absl notices before any Python
setting can silence them; they would bury trainrun's own one-line messages.
The notices are captured while importing and shown only if the import fails.

Afterwards stderr passes through a small filter process that drops two
lines of TensorFlow's native logging that say nothing to a user, and nothing
else (see `NOISE`): the E0000 line tf.data logs under op determinism
(``deterministic: true``) about ``use_unbounded_threadpool``, and absl's
one-time "All log messages before absl::InitializeLog()" notice. Raising
TF_CPP_MIN_LOG_LEVEL to 3 would also hide them, but with every other ERROR
line of TensorFlow's (cuInit failures, a collective's peer lost), which stay
visible. A user who sets TF_CPP_MIN_LOG_LEVEL gets TensorFlow's output as is.

Two costs a training run pays for nothing are cut here (measured on a 2-core
machine, where the whole MNIST MLP run takes about 8 s):

- Keras imports ``matplotlib.pyplot`` at start-up for ``keras.visualization``
  (about 0.5 s); trainrun depends on matplotlib for ``trainrun show``, so every
  run would pay it. Those modules are imported on their first use instead.
- The interpreter's teardown of TensorFlow's modules and runtime takes about a
  second after the last file is written. `exit_now` skips it, once non-daemon
  threads are joined and every buffered file and TensorBoard writer is flushed.
"""

from __future__ import annotations

import _io
import atexit
import contextlib
import gc
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import types
from collections.abc import Iterator

# Modules Keras imports at start-up (keras.src.visualization) that training never uses.
DEFERRED = ("matplotlib", "matplotlib.pyplot", "matplotlib.patches")


class _Deferred(types.ModuleType):
    """Stands in for a module until something uses it; then imports and forwards to it."""

    def __getattr__(self, attr: str) -> object:
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # no __path__: the import system takes it as loaded
        return getattr(importlib.import_module(self.__name__), attr)


@contextlib.contextmanager
def _deferred_imports(names: tuple[str, ...]) -> Iterator[None]:
    """While the block runs, `import name` binds a `_Deferred` stand-in.

    The stand-ins leave ``sys.modules`` afterwards, so any later import, the
    stand-ins' own included, gets the real module.
    """
    if names[0] in sys.modules or importlib.util.find_spec(names[0]) is None:
        yield  # already imported, or not installed: Keras handles that itself
        return
    stubs = {name: _Deferred(name) for name in names}
    for name, stub in stubs.items():
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(stubs[parent], child, stub)
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


# Whole stderr lines (regular expressions, matched from the start) that are dropped.
NOISE = (
    # tf.data, under op determinism, rewrites a ParallelMapDatasetV2 into a MapDataset that
    # keeps its use_unbounded_threadpool attribute; "Unknown attributes will be ignored".
    r"E\d{4} [^\]]*\] NodeDef mentions attribute use_unbounded_threadpool which is not in "
    r"the op definition: ",
    # absl's notice before its first message, whatever that message is.
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
)

# The filter process: copies its stdin to its stdout line by line, without NOISE. A
# partial line is passed on at once unless it may become a noise line. Ctrl-C and
# SIGTERM are the trainrun process's to handle: the filter reads on until end of file,
# which comes when every writer has exited, however it exited (a crash's last words
# included).
_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
noise = [re.compile(p.encode()) for p in sys.argv[1:]]
starts = (b"E", b"WARNING: All log")
def out(data):
    while data:
        data = data[os.write(1, data):]
held = b""
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    *lines, held = (held + chunk).split(b"\n")
    out(b"".join(l + b"\n" for l in lines if not any(p.match(l) for p in noise)))
    if held and not any(held.startswith(s) or s.startswith(held) for s in starts):
        out(held)
        held = b""
out(held)
"""


def filter_stderr() -> None:
    """Send this process's stderr (fd 2) through the filter process; see `NOISE`."""
    sys.stderr.flush()
    read, write = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-S", "-E", "-c", _FILTER, *NOISE],
            stdin=read,
            stdout=2,
            stderr=2,
            close_fds=True,
        )
    except OSError:
        os.close(write)  # no filter: stderr stays as it is
    else:
        os.dup2(write, 2)
        os.close(write)
    finally:
        os.close(read)


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    filtered = "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # the user's setting: left alone
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            with _deferred_imports(DEFERRED):
                import keras  # noqa: F401
                import tensorflow as tf

            tf.get_logger().setLevel("ERROR")
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    if filtered:
        filter_stderr()


def flush_everything() -> None:
    """Run exit handlers, then flush every open file and TensorBoard writer.

    What the interpreter's teardown would have done for data still in buffers,
    including a user callback's file that was never closed.
    """
    atexit._run_exitfuncs()  # logging.shutdown and any handler a library or user registered
    # Found by their classes' MROs: isinstance() against these ABCs, once per object
    # of a TensorFlow process (about 300,000), takes half a second.
    bases = {_io._IOBase}
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        bases.add(tf.summary.SummaryWriter)
    objects = gc.get_objects()
    kinds = {cls for cls in set(map(type, objects)) if not bases.isdisjoint(cls.__mro__)}
    for obj in objects:
        if type(obj) in kinds:
            # A stream that fails to flush now (closed, broken) would fail at teardown too.
            with contextlib.suppress(Exception):
                obj.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def exit_now(code: int) -> None:
    """End a process that imported TensorFlow without the interpreter's teardown.

    Before leaving it does what the teardown would have done for the user's
    data: waits for non-daemon threads (a callback's upload, say), as Python
    does at exit, and flushes what is buffered.
    """
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    flush_everything()
    os._exit(code)
