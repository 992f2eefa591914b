"""The `trainrun` command line: parse, call the core, map errors to exit codes.

No TensorFlow or Keras import at module level: `trainrun --help` and config
errors stay fast. Heavy modules are imported inside the commands that train.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape

from trainrun import signals
from trainrun.console import Reporter, console, err_console
from trainrun.errors import TrainrunError

if TYPE_CHECKING:
    from trainrun.runs.rundir import RunDir

app = typer.Typer(
    name="trainrun",
    help="Config-driven training runner for Keras: YAML in, a complete, resumable run directory out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib import metadata

    import trainrun

    def installed(*distributions: str) -> str:
        for distribution in distributions:
            try:
                return metadata.version(distribution)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"

    console.print(
        f"trainrun {trainrun.__version__} (keras {installed('keras')}, "
        f"tensorflow {installed('tensorflow', 'tensorflow-cpu')}, "
        f"python {sys.version.split()[0]})",
        highlight=False,
    )
    raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print versions and exit."
        ),
    ] = False,
) -> None:
    """Config-driven training runner for Keras: YAML in, a complete, resumable run directory out."""


RunsDir = Annotated[
    Path, typer.Option("--runs-dir", metavar="DIR", help="Where run directories live.")
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a config value: --set fit.epochs=5 (dotted path, list indices allowed).",
    ),
]
Device = Annotated[
    str | None,
    typer.Option(
        "--device", metavar="cpu|auto", help="'cpu' forces the CPU even when a GPU is visible."
    ),
]


def _import_keras(backend: str) -> None:
    """Keras on `backend` (TensorFlow imported only for its own backend)."""
    from trainrun.tfimport import import_keras

    import_keras(backend)


def _run_backend(run_dir: RunDir | None, override: str | None = None) -> str:
    """--backend if given, else the backend the run trained on (its config.yaml)."""
    from trainrun.tfimport import backend_of

    if override is not None:
        return override
    return "tensorflow" if run_dir is None else backend_of(run_dir.config_file)


BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        metavar="tensorflow|jax|torch",
        help="Keras backend to run the saved model on (default: the run's own).",
    ),
]


def _check_split(split: str | None) -> None:
    """--split of evaluate and export, checked before TensorFlow is imported."""
    if split not in (None, "test", "validation"):
        raise TrainrunError(f"--split {split}: expected test or validation")


def fail(exc: TrainrunError) -> NoReturn:
    err_console.print(f"[red]error:[/] {escape(exc.message)}", soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _check_device(device: str | None) -> None:
    if device not in (None, "cpu", "auto"):
        fail(TrainrunError(f"--device {device}: expected 'cpu' or 'auto'"))


@app.command()
def fit(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="The YAML config.")],
    set_: Sets = None,
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="Run id prefix (instead of the config's name)."
        ),
    ] = None,
    device: Device = None,
) -> None:
    """Validate a config, build the model and data, train; creates runs/<id>/."""
    from trainrun.config import load_config, with_seed
    from trainrun.precheck import precheck

    _check_device(device)
    try:
        loaded = with_seed(load_config(config, set_ or [], name=name))
        precheck(loaded)
        from trainrun.data import preload

        preload(loaded)  # reads the data while TensorFlow imports
        _import_keras(loaded.config.backend)
        from trainrun.engine import fit as engine

        outcome, run = engine.fit(
            config,
            set_ or [],
            runs_dir=runs_dir,
            name=name,
            device=device,
            events=Reporter(),
            loaded=loaded,
        )
    except TrainrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        # Once training starts, a signal is handled by the engine (state saved, exit 130);
        # before that, start-up is abandoned and its run directory removed.
        err_console.print(
            "error: interrupted before training started; no run directory was left, "
            "nothing to resume",
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    raise typer.Exit(outcome.exit_code)


@app.command()
def resume(
    run: Annotated[
        str, typer.Argument(metavar="RUN", help="A run directory (runs/<id>) or run id.")
    ],
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, metavar="N", help="Raise the target number of epochs."),
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    device: Device = None,
    allow_changed: Annotated[
        bool,
        typer.Option(
            "--allow-changed",
            help="Resume although versions, data, code or config changed since the run "
            "started (it then no longer ends bitwise equal to an uninterrupted run).",
        ),
    ] = False,
) -> None:
    """Continue an interrupted, killed or finished run (or sweep) from its last saved state."""
    from trainrun.runs.provenance import ProvenanceChanged, check_unchanged

    _check_device(device)
    from trainrun.sweep.record import is_sweep_dir

    if is_sweep_dir(Path(run)) or (not Path(run).exists() and is_sweep_dir(runs_dir / run)):
        if epochs is not None:
            fail(TrainrunError("--epochs is for a run; a sweep resumes with its own settings"))
        _resume_sweep(Path(run) if Path(run).exists() else runs_dir / run)
    changed = None
    try:
        run_dir = None
        from trainrun.cluster import is_set, own_run_ref

        if is_set():  # a cluster's worker: its own directory, checked as training starts
            with contextlib.suppress(TrainrunError):
                run_dir = _open_run(str(own_run_ref(run, runs_dir)), runs_dir)  # the backend
        else:
            run_dir = _open_run(run, runs_dir)
            record = run_dir.read_record()
            run_dir.check_resumable(record, epochs)  # a finished run: no TF needed
            changed = check_unchanged(
                run_dir.path, record, run_dir.config_file, allow=allow_changed
            )
            _print_changes(changed, note=True)
        _import_keras(_run_backend(run_dir))
        from trainrun.engine.resume import resume as resume_run

        outcome, _ = resume_run(
            run,
            runs_dir=runs_dir,
            epochs=epochs,
            device=device,
            events=Reporter(),
            allow_changed=allow_changed,
            changed=changed,
        )
    except ProvenanceChanged as exc:
        _print_changes(exc.changes)
        fail(exc)
    except TrainrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print(
            f"error: interrupted before training resumed; run {run} is as it was",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(130) from None
    raise typer.Exit(outcome.exit_code)


def _print_changes(changes: list, *, note: bool = False) -> None:
    """What changed since a run started, as a table on stderr (what, then, now)."""
    if not changes:
        return
    from trainrun.commands.provenance import changes_table

    if note:
        err_console.print(
            "note: resuming with --allow-changed; what changed since the run started:",
            markup=False,
            soft_wrap=True,
        )
    err_console.print(changes_table(changes))


@app.command()
def validate(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="The YAML config.")],
    set_: Sets = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Print each value with the file and line (or --set) it came from; "
            "checks the config without building the model (no TensorFlow).",
        ),
    ] = False,
) -> None:
    """Check a config and build its model without training; print the summary and resolved config."""
    from trainrun.config import load_config
    from trainrun.config.summary import describe
    from trainrun.precheck import precheck

    try:
        loaded = load_config(config, set_ or [])
        precheck(loaded)
        if explain:
            from trainrun.config.explain import render

            console.print(render(loaded), markup=False, highlight=False, soft_wrap=True, end="")
            console.print(
                f"[green]{escape(str(config))} is valid[/] as far as the config goes "
                "(the model was not built: run validate without --explain for that)"
            )
            return
        _import_keras(loaded.config.backend)
        from trainrun.engine.validate import validate as run_validate

        summary = run_validate(loaded)
    except TrainrunError as exc:
        fail(exc)
    console.print(summary, markup=False, highlight=False)
    console.print("[bold]resolved config[/] (a run's config.yaml holds the full form)")
    console.print(describe(loaded), markup=False, highlight=False, soft_wrap=True)
    console.print(f"[green]{escape(str(config))} is valid[/]")


@app.command()
def callbacks(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Show one callback's full signature.")
    ] = None,
) -> None:
    """List every registered callback with its parameters and defaults."""
    from trainrun.commands.callback_help import show_callbacks

    try:
        show_callbacks(name, console)
    except TrainrunError as exc:
        fail(exc)


@app.command()
def schema(
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Write the schema to this file instead."),
    ] = None,
) -> None:
    """Print the JSON Schema of the YAML format, for editors to complete and check configs."""
    import json

    from trainrun.config.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(TrainrunError(f"--out {out}: cannot write the schema: {exc.strerror or exc}"))
    console.print(f"schema written to {out}", markup=False)


RunRef = Annotated[
    str, typer.Argument(metavar="RUN", help="A run directory (runs/<id>) or a run id.")
]
CheckpointOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        metavar="best|last|PATH",
        help="best (ModelCheckpoint's best file), last (model.keras) or a .keras file.",
    ),
]


def _open_run(ref: str, runs_dir: Path) -> RunDir:
    from trainrun.runs.rundir import RunDir

    return RunDir.open(ref, runs_dir)


@app.command()
def evaluate(
    run: RunRef,
    checkpoint: CheckpointOpt = "last",
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="test|validation",
            help="test or validation (default: test if the run has one).",
        ),
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    backend: BackendOpt = None,
) -> None:
    """Evaluate a run's saved model on its test or validation data; writes eval.json."""
    try:
        _check_split(split)
        run_dir = _open_run(run, runs_dir)
        _import_keras(_run_backend(run_dir, backend))
        from trainrun.engine.evaluate import evaluate as run_evaluate

        result = run_evaluate(run_dir, checkpoint=checkpoint, split=split)
    except TrainrunError as exc:
        fail(exc)
    from trainrun.fmt import fmt_value

    if result.note:
        console.print(f"note: {result.note}", markup=False)
    samples = f"{result.samples} samples" if result.samples is not None else "all batches"
    console.print(
        f"[bold]evaluate[/] {result.run}: {result.checkpoint} on {result.split} data ({samples})",
        soft_wrap=True,
    )
    Reporter().summary("", [(k, fmt_value(v)) for k, v in result.metrics.items()])
    if result.unwritten:
        from trainrun.errors import RunError

        console.print(f"{result.seconds:.1f}s", markup=False)
        fail(RunError(result.unwritten))
    console.print(f"{result.seconds:.1f}s; written to {run_dir.path / 'eval.json'}", markup=False)


@app.command()
def predict(
    run: RunRef,
    input_file: Annotated[
        Path, typer.Argument(metavar="INPUT", help=".npy array, or .npz with one array per input.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="Output .npy (multi-output models: OUT.<output>.npy each); "
            "default runs/<id>/predictions/<INPUT name>.npy.",
        ),
    ] = None,
    checkpoint: CheckpointOpt = "last",
    no_preprocess: Annotated[
        bool,
        typer.Option(
            "--no-preprocess",
            help="Feed INPUT as is, without the run's data.flatten/reshape/scale.",
        ),
    ] = False,
    runs_dir: RunsDir = Path("runs"),
    backend: BackendOpt = None,
) -> None:
    """Predictions of a run's saved model, saved as .npy (one file per output)."""
    try:
        run_dir = _open_run(run, runs_dir)
        _import_keras(_run_backend(run_dir, backend))
        from trainrun.engine.predict import predict as run_predict

        result = run_predict(
            run_dir,
            input_file,
            out=out,
            checkpoint=checkpoint,
            use_preprocessing=not no_preprocess,
        )
    except TrainrunError as exc:
        fail(exc)
    if result.checkpoint.note:
        console.print(f"note: {result.checkpoint.note}", markup=False)
    if result.preprocessing:
        console.print(f"preprocessing (as in training): {result.preprocessing}", markup=False)
    console.print(
        f"{result.samples} samples through {result.checkpoint.shown(run_dir)}", markup=False
    )
    for name, path in result.files.items():
        console.print(f"  {name} {list(result.shapes[name])} -> {path}", markup=False)


@app.command("export")
def export_(
    run: RunRef,
    format_: Annotated[
        str,
        typer.Option(
            "--format", metavar="saved_model|tflite|onnx", help="The serving format to write."
        ),
    ],
    checkpoint: CheckpointOpt = "last",
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="PATH",
            help="Write the artifact here (default: runs/<id>/export/<format>[-<checkpoint>]/).",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="test|validation",
            help="Data for the parity check (default: test if the run has one).",
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", metavar="N", help="Samples the parity check compares.")
    ] = 64,
    atol: Annotated[
        float, typer.Option("--atol", metavar="X", help="Parity: absolute tolerance.")
    ] = 1e-4,
    rtol: Annotated[
        float, typer.Option("--rtol", metavar="X", help="Parity: relative tolerance.")
    ] = 1e-3,
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Export a run's model (SavedModel, TFLite/LiteRT, ONNX) and check it computes the same."""
    from trainrun.commands.export import check_options, report

    try:
        _check_split(split)
        run_dir = _open_run(run, runs_dir)
        fmt = check_options(run_dir, format_, out, samples, atol, rtol)
        _import_keras("tensorflow")  # every format is written by TensorFlow; weights load on any
        from trainrun.engine.export import Tolerance
        from trainrun.engine.export import export as run_export

        result = run_export(
            run_dir,
            fmt,
            checkpoint=checkpoint,
            out=out,
            split=split,
            samples=samples,
            tolerance=Tolerance(atol, rtol),
        )
        report(result, run_dir, console)
    except TrainrunError as exc:
        fail(exc)


@app.command("runs")
def runs_(
    runs_dir: RunsDir = Path("runs"),
    sweep_: Annotated[
        str | None,
        typer.Option(
            "--sweep", metavar="ID", help="A sweep's trials, best first (also writes compare.png)."
        ),
    ] = None,
) -> None:
    """Table of runs, newest first: id, status, epochs, best monitored value, duration."""
    from trainrun.commands.runs import show_runs

    try:
        if sweep_ is not None:
            from trainrun.commands.compare import show_sweep

            png = show_sweep(sweep_, runs_dir, console)
            console.print(f"plot: {png}", markup=False, soft_wrap=True)
            return
        show_runs(runs_dir, console)
    except TrainrunError as exc:
        fail(exc)


@app.command()
def compare(
    runs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN...", help="Runs (directories or ids); a sweep stands for its trials."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where the plot goes.")] = Path(
        "compare.png"
    ),
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """Runs side by side: the config values that differ, best first; curves in compare.png."""
    from trainrun.commands.compare import compare_runs

    try:
        png = compare_runs(runs, runs_dir, out, console)
    except TrainrunError as exc:
        fail(exc)
    console.print(f"plot: {png}", markup=False, soft_wrap=True)


@app.command()
def sweep(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="The YAML config.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            metavar="PATH=VALUES",
            help="A swept value: --param 'fit.batch_size=[32, 64]' or "
            "--param 'compile.optimizer.learning_rate={loguniform: [1e-4, 1e-2]}'.",
        ),
    ] = None,
    set_: Sets = None,
    trials: Annotated[int | None, typer.Option("--trials", min=1, metavar="N")] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", metavar="grid|random|tpe")] = None,
    pruner: Annotated[
        str | None, typer.Option("--pruner", metavar="none|median|hyperband|threshold|...")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", metavar="NAME", help="Default: the monitored value.")
    ] = None,
    direction: Annotated[
        str | None, typer.Option("--direction", metavar="minimize|maximize")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            metavar="URL",
            help="Optuna RDB storage (default: sqlite in the sweep directory).",
        ),
    ] = None,
    study: Annotated[
        str | None,
        typer.Option("--study", metavar="NAME", help="Study name in --storage (join a sweep)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=256, metavar="N", help="Trials at once.")
    ] = None,
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[str | None, typer.Option("--name", metavar="NAME")] = None,
) -> None:
    """Run many trials of a config over swept parameters (Optuna); creates runs/<sweep-id>/."""
    from trainrun.sweep.runner import SweepRequest, start

    request = SweepRequest(
        config=config,
        sets=set_ or [],
        runs_dir=runs_dir,
        name=name,
        study=study,
        cli={
            "params": param or [],
            "trials": trials,
            "sampler": sampler,
            "pruner": pruner,
            "metric": metric,
            "direction": direction,
            "workers": workers,
            "storage": storage,
        },
    )
    try:
        code = start(request, _say)
    except TrainrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print("error: sweep interrupted before any trial started", soft_wrap=True)
        raise typer.Exit(130) from None
    _after_sweep(code)


def _say(message: str) -> None:
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def _resume_sweep(path: Path) -> NoReturn:
    from trainrun.sweep.runner import resume as resume_sweep

    try:
        code = resume_sweep(path, _say)
    except TrainrunError as exc:
        fail(exc)
    _after_sweep(code)


def _after_sweep(code: int) -> NoReturn:
    raise typer.Exit(code)


@app.command()
def show(run: RunRef, runs_dir: RunsDir = Path("runs")) -> None:
    """One run: config summary, per-epoch history, best epoch, curves (also curves.png)."""
    from trainrun.commands.show import show_run

    try:
        show_run(_open_run(run, runs_dir), console)
    except TrainrunError as exc:
        fail(exc)


@app.command()
def reproduce(
    run: RunRef,
    runs_dir: RunsDir = Path("runs"),
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir", metavar="DIR", help="Where the new run goes (default: beside RUN)."
        ),
    ] = None,
    rtol: Annotated[
        float,
        typer.Option("--rtol", min=0.0, help="Relative tolerance where bitwise cannot hold."),
    ] = 1e-3,
    atol: Annotated[
        float,
        typer.Option("--atol", min=0.0, help="Absolute tolerance where bitwise cannot hold."),
    ] = 1e-5,
) -> None:
    """Train a run's config again with its saved code into a new run and compare the
    history and final weights (exit 0 equal, 1 different)."""
    try:
        run_dir = _open_run(run, runs_dir)
        from trainrun.engine.reproduce import check_finished

        check_finished(run_dir, run_dir.read_record())  # before TensorFlow
        _import_keras(_run_backend(run_dir))
        from trainrun.engine.reproduce import reproduce as run_reproduce

        verdict = run_reproduce(
            run_dir.path,
            runs_dir=runs_dir,
            out_dir=out_dir,
            rtol=rtol,
            atol=atol,
            events=Reporter(),
        )
    except TrainrunError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print(
            "error: reproduce interrupted; the original run is as it was",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(130) from None
    for why in verdict.why_not_bitwise:
        console.print(f"note: not compared bitwise: {why}", markup=False, soft_wrap=True)
    new = verdict.reproduction.path if verdict.reproduction else "-"
    console.print(f"reproduce {verdict.original.path} -> {new}", markup=False, soft_wrap=True)
    if verdict.equal:
        console.print(
            f"verdict: equal ({verdict.mode}): history.csv and model.keras",
            markup=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"verdict: different ({verdict.mode}): first at {verdict.first_difference}",
            markup=False,
            soft_wrap=True,
        )
    raise typer.Exit(verdict.exit_code)


@app.command()
def diff(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="A run directory or id.")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="A run directory or id.")],
    runs_dir: RunsDir = Path("runs"),
) -> None:
    """The config keys and provenance entries that differ between two runs, and each best epoch."""
    from trainrun.commands.diff import diff_runs

    try:
        diff_runs(_open_run(run_a, runs_dir), _open_run(run_b, runs_dir), console)
    except TrainrunError as exc:
        fail(exc)


def _exit_at_once(signum: int, frame: object) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a flush it interrupted may refuse a second one
            stream.flush()
    os._exit(130)


def main() -> None:
    # SIGTERM as Ctrl-C: a command stops with its message, not silently with 143.
    signals.install()
    try:
        app()
    except KeyboardInterrupt:
        code: int | str | None = 130
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    # The command is done and its files are written: a Ctrl-C now (during the
    # flush at exit, say) means leave at once, without a traceback.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_at_once)
    cluster = sys.modules.get("trainrun.engine.jax_cluster")
    if cluster is not None and code:
        cluster.abandon(code if isinstance(code, int) else 1)
    if "tensorflow" in sys.modules and isinstance(code, int | None):
        from trainrun.fast_exit import exit_now

        exit_now(code or 0)  # skips about a second of TensorFlow teardown
    sys.exit(code)


if __name__ == "__main__":
    main()
