"""trainrun: a config-driven training runner for Keras."""

import time as _time

__version__ = "0.1.0"

# When this process started trainrun: run.json's timings count from here.
STARTED_AT = _time.time()
