"""The ``ablate`` command line."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ablate import sampler_defaults
from ablate.errors import AblateError, error_lines
from ablate.limits import MAX_SAMPLES
from ablate.threads import apply_thread_policy, prepare_environment

if TYPE_CHECKING:
    from ablate.study_config import StudySpec

prepare_environment()  # before anything loads torch's OpenMP runtime (see ablate.threads)

app = typer.Typer(no_args_is_help=True, add_completion=True, rich_markup_mode="rich",
                  help="ablate: which schedule, decoder, degradation, EMA and hyperparameters "
                       "actually matter for a diffusion model.")
console = Console()
errors = Console(stderr=True)
STORAGE_ENV = "ABLATE_STORAGE"
"""Where --storage can come from instead, so a URL with a password stays out of shell history
and process listings."""


def _print_version(value: bool) -> None:
    if value:
        from ablate import __version__

        typer.echo(f"ablate {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print ablate's version and exit")] = False,
) -> None:
    """The command group; ``--version`` is its only option of its own."""


@contextmanager
def reported_errors():
    """Turn ablate's own errors, and files that cannot be written or read (a read-only or full
    output folder, say), into one red line on stderr and their exit code."""
    try:
        yield
    except AblateError as exc:
        for line in error_lines(exc):  # every mistake of a file at once
            errors.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        if exc.filename is None:
            raise
        reason = exc.strerror or str(exc)
        errors.print(f"[bold red]error:[/] {escape(str(exc.filename))}: {escape(reason)} "
                     f"(check the folder's permissions and free space, or choose another "
                     f"--output)", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM, or one that came too late to save
        from ablate import signals

        errors.print("[bold red]stopped at once:[/] what was saved is kept (--resume, or "
                     "ablate run again, continues from the last checkpoint)", highlight=False)
        raise typer.Exit(signals.exit_code(signals.last())) from None


@app.command(rich_help_panel="Runs")
def train(

    run_file: Annotated[Path, typer.Argument(help="TOML file with a \\[run] table")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="output folder (default runs/<file name>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in the output folder")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="override file values, e.g. run.lr=1e-3 "
                                       "run.decoder.name=unet (TOML literals)")] = None,
    tracker: Annotated[list[str] | None, typer.Option(
        "--tracker", help="experiment tracker to log to (repeatable): tensorboard, mlflow, "
                          "wandb")] = None,
) -> None:
    """Train one configuration: log metrics, write sample grids and checkpoints."""
    from ablate.overrides import blamed
    from ablate.plugin_faults import plugin_faults, run_components
    from ablate.preflight import check_run
    from ablate.progress_display import RichReporter
    from ablate.run_file import load_run_file
    from ablate.tracking import TrackingContext, tracking, with_flags
    from ablate.training import Trainer

    with reported_errors():
        with blamed(str(run_file), overrides or []):
            spec = load_run_file(run_file, overrides=overrides or [])
        config = spec.run
        for warning in config.schedule.check(config.T):
            errors.print(f"[yellow]warning:[/] {run_file}: run.schedule: {warning}")
        output_dir = output or Path("runs") / run_file.stem
        check_run(config, output_dir, source=str(run_file))  # device, data, output folder
        apply_thread_policy()
        trainer = Trainer(config, output_dir, reporter=RichReporter(console),
                          evaluation=spec.evaluation)
        trackers = with_flags(spec.trackers, tracker or [], trainer.host)
        console.print(f"training [bold]{run_file}[/] on {trainer.device} into {output_dir}")
        with tracking(trainer.host, trackers, TrackingContext(run_file.stem, output_dir)), \
                plugin_faults(run_components(config, spec.evaluation, trainer.host), output_dir,
                              trainer.host):  # a plugin's bug: one line, traceback kept
            result = trainer.run(resume=resume)
        last = result.metrics[-1]
        console.print(f"done: {last['step']} steps, loss {last['loss']:.4f}, "
                      f"{last['images_per_s']:.0f} images/s; checkpoint {result.checkpoint}")
        scores = [f"{key} {last[key]:.4g} [{last[f'{key}_low']:.4g}, {last[f'{key}_high']:.4g}]"
                  for key in last if f"{key}_low" in last and f"{key}_high" in last]
        if scores:
            console.print(f"final scores (epoch {last['epoch']}, 95% intervals): "
                          f"{'; '.join(scores)}", highlight=False, soft_wrap=True)
        if "grid" in last:
            console.print(f"final sample grid: {last['grid']}", highlight=False, soft_wrap=True)


@app.command(rich_help_panel="Runs")
def sample(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint written by ablate train")],
    n: Annotated[int, typer.Option("-n", min=1, max=MAX_SAMPLES,
                                   help="number of samples")] = 64,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG grid to write")] = Path(
        "grid.png"),
    sampler: Annotated[str | None, typer.Option(
        help=f"the degradation's sampler ({sampler_defaults.HELP})")] = None,
    steps: Annotated[int | None, typer.Option(
        min=1, help=f"sampling steps, evenly spaced, at most T (default "
                    f"{sampler_defaults.STEPS})")] = None,
    seed: Annotated[int, typer.Option(help="seed of the sampling noise")] = 0,
    device: Annotated[str | None, typer.Option(help="device (default: the run's)")] = None,
) -> None:
    """Draw samples from a checkpoint and save them as a grid."""
    from ablate.grids import save_grid
    from ablate.plugin_faults import plugin_faults, run_components, run_folder_of
    from ablate.plugin_host import default_host
    from ablate.progress_display import SamplingProgress
    from ablate.sampling import draw, load_trained

    with reported_errors():
        parts = load_trained(checkpoint, device=device)
        chosen, count = _sampling_plan(parts, n, sampler, steps)
        with SamplingProgress(console, f"sampling {n} images") as progress, \
                plugin_faults(run_components(parts.config), run_folder_of(checkpoint),
                              default_host()):
            samples = draw(parts, n, seed, sampler=chosen, steps=count, progress=progress)
        save_grid(samples, parts.config.scaling, output)
        console.print(f"wrote {output}")


def _sampling_plan(parts, n: int, sampler: str | None,
                   steps: int | None) -> tuple[str | None, int]:
    """The sampler and steps to use, said before sampling starts with what they cost."""
    from ablate.evaluation import SAMPLE_BATCH

    process = parts.process
    chosen, count = sampler_defaults.choose(process.samplers, process.T, sampler, steps)
    name = chosen or (process.samplers[0] if process.samplers else "its default sampler")
    batches = -(-n // SAMPLE_BATCH)
    console.print(f"sampling {n} images with {escape(name)} on {count} of T = {process.T} "
                  f"steps: about {count} network evaluations per batch, {count * batches} in "
                  f"all", highlight=False, soft_wrap=True)
    return chosen, count


@app.command("export", rich_help_panel="Runs")
def export(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint written by ablate train")],
    output: Annotated[Path, typer.Option("--output", "-o", help="pipeline folder to write")],
) -> None:
    """Write a trained Gaussian run with a diffusers decoder as a diffusers DDPMPipeline folder."""
    from ablate.export import export_pipeline

    with reported_errors():
        folder = export_pipeline(checkpoint, output)
        console.print(f"wrote the DDPMPipeline {folder} (load it with "
                      f"DDPMPipeline.from_pretrained)", soft_wrap=True)


@app.command("ema-reconstruct", rich_help_panel="Runs")
def ema_reconstruct(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint of a run with ema = power")],
    sigma_rel: Annotated[float, typer.Option(
        "--sigma-rel", help="relative width of the EMA to reconstruct, in (0, 0.2887)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="checkpoint to write")],
) -> None:
    """Post-hoc EMA: write a copy of a checkpoint whose averaged weights have another width."""
    from ablate.posthoc import rewrite_checkpoint

    with reported_errors():
        done = rewrite_checkpoint(checkpoint, sigma_rel, output)
        console.print(f"wrote {output}: EMA sigma_rel {sigma_rel} at step {done.step} from "
                      f"{done.averages} stored averages (profile error "
                      f"{100 * done.profile_error:.2f}%)")


@app.command(rich_help_panel="Evaluation")
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="a checkpoint written by ablate train")],
    metrics: Annotated[str, typer.Option(
        help="comma-separated metric plugins (ablate list-plugins --family metric)")] = (
        "fid,kid,precision,recall,classifier_score"),
    n: Annotated[int, typer.Option("-n", min=2, max=MAX_SAMPLES,
                                   help="samples to draw and score")] = 2000,
    sampler: Annotated[str | None, typer.Option(
        help=f"the degradation's sampler ({sampler_defaults.HELP})")] = None,
    steps: Annotated[int | None, typer.Option(
        min=1, help=f"sampling steps, evenly spaced, at most T (default "
                    f"{sampler_defaults.STEPS})")] = None,
    seed: Annotated[int, typer.Option(help="seed of the sampling noise and bootstrap")] = 0,
    device: Annotated[str | None, typer.Option(help="device (default: the run's)")] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json-out", help="also write the values as JSON to this file")] = None,
) -> None:
    """Score a checkpoint's samples: each metric with its 95% bootstrap interval."""
    from rich.table import Table

    from ablate.atomic import write_text_atomic
    from ablate.evaluation import evaluate as score
    from ablate.evaluation import resolve_metrics
    from ablate.plugin_faults import plugin_faults, run_components, run_folder_of
    from ablate.plugin_host import default_host
    from ablate.progress_display import SamplingProgress
    from ablate.sampling import load_trained

    with reported_errors():
        parts = load_trained(checkpoint, device=device)
        names = [name.strip() for name in metrics.split(",") if name.strip()]
        # an unknown metric is an error before anything is drawn; model-based ones draw nothing
        draws = any(not metric.uses_model for metric in resolve_metrics(names))
        if draws:
            sampler, steps = _sampling_plan(parts, n, sampler, steps)
        with SamplingProgress(console, f"sampling {n} images", shown=draws) as progress:
            scoring = console.status(f"scoring {', '.join(names)}")

            def drawn(_samples) -> None:
                progress.close()
                scoring.start()

            if not draws:
                scoring.start()
            try:
                with plugin_faults([*run_components(parts.config), *resolve_metrics(names)],
                                   run_folder_of(checkpoint), default_host()):
                    values = score(parts, names, n, sampler=sampler, steps=steps, seed=seed,
                                   progress=progress, on_samples=drawn)
            finally:
                scoring.stop()
        console.print(f"{checkpoint}: {n} samples, seed {seed}")
        table = Table()
        for column in ("metric", "value", "95% interval", "n"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for key, v in values.items():
            table.add_row(key, f"{v.value:.4g}", f"{v.low:.4g} .. {v.high:.4g}", str(v.n))
        console.print(table)
        if json_out is not None:
            record = {"checkpoint": str(checkpoint), "n": n, "sampler": sampler, "steps": steps,
                      "seed": seed, "metrics": {k: vars(v) for k, v in values.items()}}
            write_text_atomic(json_out, json.dumps(record, indent=2) + "\n")
            console.print(f"wrote {json_out}")


@app.command("features-train", rich_help_panel="Evaluation")
def features_train(
    dataset: Annotated[str, typer.Option(help="dataset plugin whose network to train")] = "mnist",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="folder for NAME.safetensors and NAME.json (default: the "
                               "bundled feature_nets folder)")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="passes over the training split")] = 6,
    seed: Annotated[int, typer.Option(help="seeds initial weights and data order")] = 0,
    subset: Annotated[int, typer.Option(
        min=0, help="train on the first N training images only; 0 = all")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps")] = "cpu",
) -> None:
    """Train the feature network that FID, KID, precision, recall and classifier_score use."""
    from ablate import features
    from ablate.components import suggest
    from ablate.device import resolve_device
    from ablate.errors import ConfigError
    from ablate.plugin_host import default_host

    with reported_errors():
        registry = default_host().registry
        cls = registry.get("dataset", dataset)
        if cls is None:
            known = registry.names("dataset")
            raise ConfigError(f"unknown dataset {dataset!r}", key="--dataset",
                              hint=suggest(dataset, known) or f"installed: {', '.join(known)}")
        recipe = features.Recipe(seed=seed, epochs=epochs, subset=subset)
        folder = output or features.bundled_dir()
        tensors, record = features.train(
            cls(), recipe, resolve_device(device),
            on_epoch=lambda e, loss: console.print(f"epoch {e}/{epochs}: loss {loss:.4f}"))
        weights = features.save(tensors, record, folder)
        console.print(f"test accuracy {record['test_accuracy']:.2%}; wrote {weights}")
        if output is not None:
            console.print(f"metrics find it when {features.SEARCH_ENV} includes {output}")


@app.command("list-plugins", rich_help_panel="Plugins")
def list_plugins(
    family: Annotated[str | None, typer.Option(help="only this family")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
) -> None:
    """List every installed component, the plugin providing it and its parameters."""
    from ablate.components import suggest
    from ablate.errors import ConfigError
    from ablate.plugin_host import default_host
    from ablate.plugin_listing import describe, render
    from ablate.registry import FAMILIES

    with reported_errors():
        if family is not None and family not in FAMILIES:
            raise ConfigError(f"unknown family {family!r}", key="--family",
                              hint=suggest(family, FAMILIES) or f"one of {', '.join(FAMILIES)}")
        listing = describe(default_host(report_broken=False), family)  # shown below
        if as_json:
            typer.echo(json.dumps(listing, indent=2))
        else:
            render(listing, console)


@app.command("schema", rich_help_panel="Plugins")
def schema(
    kind: Annotated[str | None, typer.Argument(
        help="run or study: which file's JSON Schema to print")] = None,
    markdown: Annotated[bool, typer.Option(
        "--markdown", help="print the reference of every key instead (docs/reference.md)")
    ] = False,
) -> None:
    """Print the JSON Schema of run or study files, from every installed plugin's declarations."""
    from ablate.components import suggest
    from ablate.errors import ConfigError
    from ablate.plugin_host import default_host

    with reported_errors():
        host = default_host()
        if markdown:
            from ablate.reference import render

            typer.echo(render(host), nl=False)
            return
        from ablate.schema import run_file_schema, study_file_schema

        builders = {"run": run_file_schema, "study": study_file_schema}
        if kind not in builders:
            raise ConfigError(f"unknown schema {kind!r}" if kind else "which schema?",
                              key="KIND", hint=(suggest(kind, builders) if kind else None)
                              or "ablate schema run or ablate schema study")
        typer.echo(json.dumps(builders[kind](host), indent=2))


@app.command("new-plugin", rich_help_panel="Plugins")
def new_plugin(
    name: Annotated[str, typer.Argument(
        help="name of the component, as run files will write it (e.g. my-schedule)")],
    family: Annotated[str, typer.Option(
        help="schedule, decoder, degradation, ema, dataset, metric, optimizer or "
             "lr_schedule")] = "schedule",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="folder to create (default ./ablate-NAME)")] = None,
) -> None:
    """Write a plugin package to start from: one working component, contract tests, README."""
    from ablate.scaffold import scaffold

    with reported_errors():
        folder = scaffold(name, family, output)
        console.print(f"wrote the {family} plugin [bold]{name}[/] to {folder}; next:\n"
                      f"  cd {folder} && pip install -e . && pytest", highlight=False)


schedules_app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich",
                            help="Noise schedules: look at them before training with them.")
app.add_typer(schedules_app, name="schedules", rich_help_panel="Plugins")


@schedules_app.command("plot")
def schedules_plot(
    specs: Annotated[list[str], typer.Argument(
        metavar="SCHEDULE",
        help="schedules to compare, each with optional parameters, e.g. linear "
             "cosine:s=0.02 constant:beta=0.01,zero_terminal_snr=true")],
    T: Annotated[int, typer.Option("--T", min=1, help="number of diffusion steps")] = 1000,
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write")] = Path(
        "schedules.png"),
) -> None:
    """Plot alpha_bar_t and log-SNR against t/T for several schedules on one figure."""
    from ablate.plugin_host import default_host
    from ablate.schedule_plot import plot_curves, schedule_curves

    with reported_errors():
        curves, warnings = schedule_curves(specs, T, default_host())
        for warning in warnings:
            errors.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        plot_curves(curves, T, output)
        console.print(f"wrote {output}")


@app.command("run", rich_help_panel="Studies")
def run_study_file(
    study_file: Annotated[Path, typer.Argument(
        help="TOML file with \\[study], \\[run], \\[search] (and \\[eval]) tables")],
    n_trials: Annotated[int | None, typer.Option(
        "--n-trials", min=1, help="the study's total trial budget (overrides \\[study] trials)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=1, help="the study's total time budget in seconds (overrides \\[study] "
                                 "timeout)")] = None,
    storage: Annotated[str | None, typer.Option(
        envvar=STORAGE_ENV, show_envvar=True,
        help="database URL of the study (overrides \\[study] storage)")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print the resolved plan and search space; train nothing")] = False,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="local worker processes sharing the study (more than one "
                                 "needs a journal file or a database server)")] = 1,
    worker_index: Annotated[int, typer.Option(
        "--worker-index", min=0, help="this machine's first worker index: each worker's "
                                      "sampler seed differs by it (give each machine its own)")
    ] = 0,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="override file values, e.g. study.trials=4 "
                                       "run.lr=1e-3 eval.samples=64 (TOML literals)")] = None,
    tracker: Annotated[list[str] | None, typer.Option(
        "--tracker", help="experiment tracker every trial logs to (repeatable): tensorboard, "
                          "mlflow, wandb")] = None,
) -> None:
    """Create or resume an Optuna study and train trials until its global budget is spent."""
    with reported_errors():
        spec = _study_with(study_file, overrides, tracker, storage=storage, trials=n_trials,
                           timeout=timeout, workers=workers)
        # imported once the file is valid, so that a mistake in it is reported at once
        from ablate.study import StudyError, load_existing, remaining, run_study
        from ablate.study_display import StudyDisplay, render_plan, render_table, trial_rows
        from ablate.workers import run_local

        if dry_run:
            try:
                existing, _ = load_existing(spec)
                done = len(existing.get_trials(deepcopy=False))
            except StudyError:
                done = None
            render_plan(spec, console, done=done)
            return
        if workers > 1:
            for warning in run_local(spec, range(worker_index, worker_index + workers),
                                     StudyDisplay(console)):
                errors.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)
            study, storage_ = load_existing(spec)
        else:
            apply_thread_policy()
            study = run_study(spec, StudyDisplay(console), worker=worker_index)
            _, storage_ = load_existing(spec)
        render_table(spec, trial_rows(spec, study, storage_), console)
        if remaining(spec, study).spent:
            console.print("the study's budget is spent; raise --n-trials or --timeout to "
                          "continue it")


@app.command("worker", rich_help_panel="Studies")
def worker(
    study_file: Annotated[Path, typer.Argument(help="the study file, the same on every machine")],
    storage: Annotated[str | None, typer.Option(
        envvar=STORAGE_ENV, show_envvar=True,
        help="storage URL shared by the workers (overrides \\[study] storage)")] = None,
    worker_index: Annotated[int, typer.Option(
        "--worker-index", min=0, help="this worker's index: its sampler seed differs by it "
                                      "(e.g. $SLURM_ARRAY_TASK_ID)")] = 0,
    n_trials: Annotated[int | None, typer.Option(
        "--n-trials", min=1, help="the study's total trial budget (overrides \\[study] trials)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", min=1, help="the study's total time budget in seconds")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="the overrides the study was started with")] = None,
    tracker: Annotated[list[str] | None, typer.Option(
        "--tracker", help="experiment tracker every trial logs to (repeatable)")] = None,
) -> None:
    """Join a study as one more worker: run trials until the global budget is spent."""
    from ablate.study import run_study
    from ablate.study_display import StudyDisplay

    with reported_errors():
        spec = _study_with(study_file, overrides, tracker, storage=storage, trials=n_trials,
                           timeout=timeout)
        apply_thread_policy()
        run_study(spec, StudyDisplay(console), worker=worker_index)
        console.print(f"worker {worker_index}: the budget of study {spec.name} is spent")


def _study_with(study_file: Path, overrides: list[str] | None, trackers: list[str] | None,
                **options):
    """A study file read with the command line's KEY=VALUE overrides and --tracker flags."""
    import dataclasses

    from ablate.preflight import check_study
    from ablate.tracking import with_flags

    spec = _study_as_run(study_file, overrides, **options)
    check_study(spec)  # device, data and folders: what only this machine can answer
    return dataclasses.replace(spec, trackers=with_flags(spec.trackers, trackers or [],
                                                         spec.host))


@app.command("show", rich_help_panel="Studies")
def show_study(
    study_file: Annotated[Path, typer.Argument(help="the study file given to ablate run")],
    as_json: Annotated[bool, typer.Option("--json", help="print the trials as JSON")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="print the trials as CSV")] = False,
    storage: Annotated[str | None, typer.Option(
        envvar=STORAGE_ENV, show_envvar=True,
        help="database URL of the study (overrides \\[study] storage)")] = None,
) -> None:
    """Show a study's trials sorted by the objective, with parameters and artifact folders."""
    from ablate.errors import ConfigError
    from ablate.study_display import render_table, rows_csv, rows_json, trial_rows
    from ablate.study_view import open_view

    with reported_errors():
        if as_json and as_csv:
            raise ConfigError("choose one of --json and --csv", key="--csv")
        spec, study, storage_ = open_view(study_file, storage)  # no plugins: no torch
        rows = trial_rows(spec, study, storage_)
        if as_json:
            typer.echo(rows_json(rows))
        elif as_csv:
            typer.echo(rows_csv(spec, rows), nl=False)
        else:
            render_table(spec, rows, console)


@app.command("dashboard", rich_help_panel="Studies")
def dashboard(
    study_file: Annotated[Path, typer.Argument(help="the study file given to ablate run")],
    host: Annotated[str, typer.Option(help="address to listen on (127.0.0.1: this machine "
                                           "only; any other needs --allow-remote)")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8080,
    storage: Annotated[str | None, typer.Option(
        envvar=STORAGE_ENV, show_envvar=True,
        help="database URL of the study (overrides \\[study] storage)")] = None,
    allow_remote: Annotated[bool, typer.Option(
        "--allow-remote", help="let --host listen beyond this machine (the dashboard has no "
                               "authentication)")] = False,
    read_only: Annotated[bool | None, typer.Option(
        "--read-only/--read-write", help="refuse requests that change the study (default: "
                                         "read-only unless on 127.0.0.1)")] = None,
) -> None:
    """Serve optuna-dashboard on a study: trials, plots and artifacts (grids, curves)."""
    from ablate.dashboard import check_host, serve
    from ablate.study_config import load_study_file

    with reported_errors():
        loopback = check_host(host, allow_remote=allow_remote)
        frozen = not loopback if read_only is None else read_only
        if not loopback:
            errors.print(f"[yellow]warning:[/] --host {escape(host or '0.0.0.0')} listens beyond "
                         f"this machine: whoever reaches port {port} sees the study"
                         + (" (read-only)" if frozen else " and can delete it (--read-write)"),
                         highlight=False, soft_wrap=True)
        spec = load_study_file(study_file, storage=storage)
        serve(spec, host, port, lambda url: console.print(
            f"optuna-dashboard for study {spec.name}{' (read-only)' if frozen else ''}: {url} "
            f"(Ctrl-C stops it)", soft_wrap=True), allow_remote=allow_remote, read_only=frozen)


@app.command("report", rich_help_panel="Studies")
def report_study(
    study_file: Annotated[Path, typer.Argument(help="the study file given to ablate run")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="report folder (default: <study output>/<name>/report)")] = None,
    storage: Annotated[str | None, typer.Option(
        help="database URL of the study (overrides \\[study] storage)")] = None,
    completed_only: Annotated[bool, typer.Option(
        "--completed-only", help="leave pruned trials out (default: every trial with scored "
                                 "epochs, compared at equal budget)")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="the overrides the study was run with")] = None,
) -> None:
    """Write a study's report: what matters, effects with intervals at each training budget,
    figures (one self-contained HTML page, Markdown, CSV, PNG and SVG)."""
    from ablate.report import write_report

    with reported_errors():
        spec = _study_as_run(study_file, overrides, storage=storage)
        with console.status(f"analysing study {spec.name}"):
            report = write_report(spec, output, completed_only=completed_only)
        for check in report.analysis.rank_checks:
            if check.flagged:
                errors.print(f"[yellow]warning:[/] the loss misleads on {check.metric}: "
                             f"{escape(check.reason)}", highlight=False, soft_wrap=True)
        console.print(f"wrote {report.folder / 'index.html'} ({len(report.figures)} figures, "
                      f"{len(report.analysis.effects)} effects)", soft_wrap=True)


@app.command("compare", rich_help_panel="Studies")
def compare_trials(
    study_file: Annotated[Path, typer.Argument(help="the study file given to ablate run")],
    trial_a: Annotated[int, typer.Argument(help="number of the first trial")],
    trial_b: Annotated[int, typer.Argument(help="number of the second trial")],
    epoch: Annotated[int | None, typer.Option(
        min=1, help="compare the values both recorded at this epoch (pruned trials too; "
                    "default: the last epoch both reached and scored)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for scripts")] = False,
    storage: Annotated[str | None, typer.Option(
        help="database URL of the study (overrides \\[study] storage)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY=VALUE]...", help="the overrides the study was run with")] = None,
) -> None:
    """Compare two trials at equal budget: per metric, A - B with a 95% interval and a test."""
    from rich.table import Table

    from ablate.analysis import load_logs
    from ablate.compare import compare

    with reported_errors():
        spec = _study_as_run(study_file, overrides, storage=storage)
        pair = compare(load_logs(spec), trial_a, trial_b, epoch)
        comparisons = pair.comparisons
        if as_json:
            typer.echo(json.dumps(pair.as_json(), indent=2))
            return
        kind = "paired by seed" if pair.paired else "unpaired"
        table = Table(title=f"trial {trial_a} (A) against trial {trial_b} (B) at epoch "
                            f"{pair.epoch}, {pair.replicates} replicates, {kind}",
                      title_justify="left")
        for column in ("metric", "A", "B", "A - B", "95% interval", "test", "p", "sign-flip p",
                       "A is"):
            table.add_column(column, justify="left" if column in ("metric", "test") else "right")
        for c in comparisons:
            table.add_row(c.metric, f"{c.a.estimate:.4g}", f"{c.b.estimate:.4g}",
                          f"{c.difference.estimate:.4g}",
                          f"{c.difference.low:.4g} .. {c.difference.high:.4g}"
                          + ("" if c.difference.informative else " uninformative"), c.test.name,
                          _p(c.test.p_value), _p(c.test.sign_flip_p), c.verdict)
        console.print(table)


def _study_as_run(study_file: Path, overrides: list[str] | None, **options) -> StudySpec:
    """The study file read with the command line's KEY=VALUE overrides, as ``ablate run`` was
    given it (a study run with ``study.name=...`` or longer ``run.epochs`` is another study:
    its overrides find it); ``options`` are load_study_file's."""
    from ablate.overrides import blamed
    from ablate.study_config import load_study_file

    with blamed(str(study_file), overrides or []):
        return load_study_file(study_file, overrides=overrides or [], **options)


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
