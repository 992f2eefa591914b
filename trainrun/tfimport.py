"""Import TensorFlow and Keras once, without the C++ start-up chatter on stderr.

TensorFlow's native logging prints oneDNN and absl notices before any Python
setting can silence them; they would bury trainrun's own one-line messages.
The notices are captured while importing and shown only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules and "keras" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
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
