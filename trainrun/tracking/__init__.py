"""Experiment tracking: logging a run where a team keeps its runs (MLflow).

`config` is the YAML's `tracking:` section (no MLflow import); `mlflow` opens,
logs to and finishes a run's MLflow run; `callback` is the Keras callback that
logs each epoch. MLflow itself is imported only when a config asks for it.
"""
