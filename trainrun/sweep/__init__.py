"""Hyperparameter sweeps: many ordinary runs under one directory, driven by Optuna.

A sweep is an orchestrator over ordinary runs. Each trial is `trainrun fit
base.yaml --set PATH=VALUE ... --runs-dir runs/<sweep-id> --name trial-NNNN` in
a subprocess, so every trial is a complete run directory that `resume`,
`evaluate`, `show` and `fit` handle alone. The sweep reads a trial's
history.csv as epochs land (the metric Optuna sees, and its pruning), and
records the study in Optuna's RDB storage.

    spec.py     the `sweep:` section and --param values: parsed and checked (no optuna, no TF)
    study.py    Optuna's samplers, pruners, distributions and storage (optuna imported lazily)
    record.py   sweep.json: what the sweep directory holds, read by `runs` without optuna
    runner.py   the orchestrator: workers, trial processes, pruning, resuming a killed sweep
    probe.py    the metric names and directions a config logs (a subprocess that imports TF)
    child.py    the trial process wrapper: it dies with the sweep that started it
"""
