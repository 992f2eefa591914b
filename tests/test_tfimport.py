"""TensorFlow's share of the process: a quiet import without matplotlib, a fast exit that loses nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from conftest import CONFIGS, ROOT, SMALL, assert_clean_error, cli, only_run, read_history


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_matplotlib_is_imported_on_first_use_only():
    r = _python(
        """
        import sys
        from trainrun.tfimport import import_tensorflow
        import_tensorflow()
        assert "keras" in sys.modules
        assert not any(m.startswith("matplotlib") for m in sys.modules), "imported too early"

        # Keras' visualization still works: its modules import the real thing when used.
        from keras.src.visualization import plot_bounding_box_gallery, plot_image_gallery
        fig = plot_image_gallery.plt.figure()
        assert type(fig).__name__ == "Figure"
        assert plot_bounding_box_gallery.patches.Patch.__module__ == "matplotlib.patches"
        import matplotlib.pyplot as plt
        assert plt is sys.modules["matplotlib.pyplot"] and plt.figure is not None
        assert type(plt).__name__ == "module", type(plt)
        print("ok")
        """
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


CALLBACK = '''
import threading, time
import keras

class Leaky(keras.callbacks.Callback):
    """Writes through a buffer it never closes, and from a thread that outlives fit."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_train_begin(self, logs=None):
        self.f = open(self.path + ".log", "w")

    def on_epoch_end(self, epoch, logs=None):
        self.f.write(f"epoch {epoch}\\n")

    def on_train_end(self, logs=None):
        def late():
            time.sleep(1.0)
            with open(self.path + ".thread", "w") as f:
                f.write("done")
        threading.Thread(target=late).start()
'''


@pytest.mark.slow
def test_fast_exit_keeps_buffered_files_threads_and_tensorboard(tmp_path):
    (tmp_path / "leaky.py").write_text(CALLBACK)
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        (CONFIGS / "mnist_mlp.yaml").read_text() + f"callbacks:\n  - leaky:Leaky: {{path: {out}}}\n"
    )
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "out.log").read_text() == "epoch 0\nepoch 1\n"
    assert (tmp_path / "out.thread").read_text() == "done"
    run = only_run(tmp_path / "runs")
    assert len(read_history(run)) == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard" / "validation")).Reload()
    assert [e.step for e in events.Tensors("epoch_loss")] == [0, 1]


@pytest.mark.slow
def test_exit_codes_survive_the_fast_exit(tmp_path):
    """An error found once TensorFlow is imported still exits 2 and prints its one line."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text((CONFIGS / "mnist_mlp.yaml").read_text().replace("units: 10", "units: 3"))
    r = cli("fit", cfg, "--runs-dir", tmp_path / "runs", *SMALL)
    assert_clean_error(r, "labels go up to 9", "set units to 10")
