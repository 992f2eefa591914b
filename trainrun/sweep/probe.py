"""What a config's runs will log, and which way each value improves: run as a subprocess.

`python -m trainrun.sweep.probe CONFIG [--set K=V ...] [--metric NAME]` builds the
model as `trainrun validate` does and prints one JSON line: the logged keys, the
monitored value that run.json's `best` follows and its mode, and the sweep
metric's mode. A subprocess, so that the sweep itself never holds TensorFlow
while its trials train. A bad config or metric prints {"error": ..., "exit_code": ...}.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def probe(config: str, sets: list[str], metric: str | None) -> dict[str, Any]:
    from trainrun.config import load_config
    from trainrun.errors import ConfigError, did_you_mean
    from trainrun.precheck import precheck
    from trainrun.tfimport import import_tensorflow

    loaded = load_config(config, sets)
    precheck(loaded)
    import_tensorflow()
    from trainrun.engine import checks
    from trainrun.engine.events import Quiet
    from trainrun.engine.trainer import Trainer
    from trainrun.runs.rundir import RunDir

    with tempfile.TemporaryDirectory(prefix="trainrun-sweep-probe-") as tmp:
        session = Trainer(loaded, RunDir(Path(tmp)), Quiet())
        session.prepare()
        keys = [k for k in session.log_keys if k != "learning_rate"]
        monitor, mode = session.monitor, session.monitor_mode
        if metric is not None and metric not in keys:
            raise ConfigError(
                f"sweep.metric '{metric}' is not logged by these runs"
                + did_you_mean(metric, keys)
                + f"; they log {', '.join(keys)}"
            )
        metric_mode = (
            mode
            if metric in (None, monitor)
            else checks.monitor_direction(loaded, session.model, metric)
        )
    return {"keys": keys, "monitor": monitor, "mode": mode, "metric_mode": metric_mode}


def main(argv: list[str]) -> int:
    from trainrun.errors import TrainrunError

    config, sets, metric = argv[0], [], None
    rest = argv[1:]
    while rest:
        flag, value, *rest = rest
        if flag == "--set":
            sets.append(value)
        elif flag == "--metric":
            metric = value
    try:
        out = probe(config, sets, metric)
    except TrainrunError as exc:
        out = {"error": exc.message, "exit_code": exc.exit_code}
    sys.stdout.write("\nPROBE " + json.dumps(out) + "\n")
    sys.stdout.flush()
    from trainrun.tfimport import exit_now

    exit_now(0)
    return 0


if __name__ == "__main__":
    main(sys.argv[1:])
