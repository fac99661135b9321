"""Command line: parses arguments and hands off to the engine.

``main(argv)`` returns the exit code instead of exiting, so tests call it
directly; ``main_entry`` is the console script and the only ``sys.exit``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dubprep.errors import DubprepError

# Exit codes: 0 all done, 1 an error (nothing trusted past it), 3 done but QC
# flagged the delivery, so a farm can tell "rerun" from "review".
QC_FAILED_EXIT = 3


def _stage_names(ctx: click.Context, param: click.Parameter, value):
    """``value`` (a stage name, or several for --force) when every name is a registered stage's."""
    from dubprep.stage import stage_names

    names = stage_names()
    for name in value if isinstance(value, tuple) else (value,):
        if name is not None and name not in names:
            raise click.BadParameter(f"'{name}' is not one of: {', '.join(names)}", ctx=ctx, param=param)
    return value


def _stage_options(command):
    """--from, --until and --force, each taking stage names (listed by the stage registry)."""
    stage = {"metavar": "STAGE", "callback": _stage_names}
    command = click.option("--force", multiple=True, help="Rerun this stage even if cached (repeatable).", **stage)(command)
    command = click.option("--until", "until_stage", help="Stop after this stage.", **stage)(command)
    return click.option("--from", "from_stage", help="Rerun from this stage on; earlier stages must be done.", **stage)(command)


def _path(ctx, param, value: str | tuple[str, ...] | None) -> Path | tuple[Path, ...] | None:
    """The value as a Path; click would read '' as '.', the current folder, where an empty path is a slip."""
    values = value if isinstance(value, tuple) else (value,)
    if "" in values:
        raise click.BadParameter("an empty path; name a file or folder")
    paths = tuple(None if v is None else Path(v) for v in values)
    return paths if isinstance(value, tuple) else paths[0]


def _project_options(command):
    command = click.option("--output", "-o", type=click.Path(), callback=_path, help="Output folder (overrides the project's).")(command)
    command = click.option("--input", "-i", "input_path", type=click.Path(), callback=_path, help="Input media (overrides the project's).")(command)
    return click.argument("project", required=False, type=click.Path(), callback=_path)(command)


@click.group()
@click.version_option(package_name="dubprep")
def cli() -> None:
    """Prepare a film, episode or reel for dubbing."""


@cli.command()
@_project_options
@_stage_options
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on the terminal.")
@click.option("--device", help="Torch device for the models: auto, cpu, cuda or cuda:N (overrides the project's).")
@click.option("--clean-work", is_flag=True, help="Remove OUT/work after a delivery whose QC passed (a rerun rebuilds it).")
def run(project, input_path, output, from_stage, until_stage, force, quiet, device, clean_work) -> int:
    """Run the pipeline (the 'default' preset when no PROJECT is given)."""
    from dubprep.console import RichProgress, configure_logging
    from dubprep.engine import Engine
    from dubprep.progress import NullProgress

    configure_logging(quiet)
    loaded = _load(project, input_path, output, device)
    options = _options(from_stage, until_stage, force, clean_work)
    engine = Engine(loaded, progress=NullProgress if quiet else RichProgress)
    report = engine.run(options)
    for result in report.results:
        # A failure's detail is the closing error line, said once.
        detail = "" if result.status in ("failed", "qc_failed") else result.detail
        click.echo(f"{result.name:<10} {result.status:<9} {detail}".rstrip(), err=quiet)
    failed = [r for r in report.results if r.status == "failed"]
    if failed:
        raise DubprepError(failed[0].detail)
    flagged = [r for r in report.results if r.status == "qc_failed"]
    if flagged:
        click.echo(f"error: {flagged[0].detail}; everything was written, see report.html", err=True)
        return QC_FAILED_EXIT
    return 0


@cli.command()
@_project_options
def validate(project, input_path, output) -> int:
    """Check a project file without running anything."""
    loaded = _load(project, input_path, output)
    from dubprep.engine import Engine, RunOptions  # after the project is valid: the stages' checks load models

    Engine(loaded).check(RunOptions())
    click.echo(f"{project or 'default preset'}: valid; input {loaded.input}, output {loaded.output}")
    return 0


@cli.command()
@_project_options
@_stage_options
def plan(project, input_path, output, from_stage, until_stage, force) -> int:
    """Print which stages would run and which are cached."""
    loaded = _load(project, input_path, output)
    from dubprep.engine import Engine

    engine = Engine(loaded)
    for step in engine.plan(_options(from_stage, until_stage, force)):
        click.echo(f"{step.name:<10} {'will run' if step.action == 'run' else 'cached':<8} ({step.reason})")
    return 0


@cli.command()
@click.argument("projects", nargs=-1, type=click.Path(), callback=_path)
@click.option("--media", help="Glob of media files ('reels/*.mov'); each is a job of the template PROJECT (or the default preset).")
@click.option("--output-root", type=click.Path(), callback=_path, help="With --media: each job writes OUTPUT_ROOT/<media stem>.")
@click.option("--scheduler", help="A running dask scheduler (tcp://host:8786); default: a local cluster.")
@click.option("--workers", type=click.IntRange(min=1), help="Local cluster processes (default: one per CPU core, at most one per job).")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True, help="How many more times a failed job runs.")
@click.option("--gpu-per-job", type=click.FloatRange(min=0, min_open=True), help="Units of the workers' GPU resource each job holds.")
def batch(projects, media, output_root, scheduler, workers, retries, gpu_per_job) -> int:
    """Run several projects, or one template over many media files, as jobs on dask."""
    from rich.console import Console

    from dubprep.batch import BatchParams, finished_line, jobs_from_projects, jobs_from_template, run_batch, summary_table

    if media is None and (output_root or not projects):
        raise click.UsageError("give project files, or one template project with --media and --output-root")
    if media is not None and (len(projects) > 1 or output_root is None):
        raise click.UsageError("--media needs --output-root and at most one template project; quote the --media pattern")
    if scheduler and workers:
        raise click.UsageError("--workers sizes the local cluster; drop it when using --scheduler")
    jobs = jobs_from_template(projects[0] if projects else None, media, output_root) if media else jobs_from_projects(list(projects))
    params = BatchParams(scheduler=scheduler, workers=workers, retries=retries, gpu_per_job=gpu_per_job)
    report = run_batch(jobs, params, on_result=lambda result: click.echo(finished_line(result), err=True))
    Console().print(summary_table(report))
    for result in report.results:
        if result.status != "done":
            click.echo(f"{result.name} {result.status}: {result.error}", err=True)
    return report.exit_code


def _models_dir_option(command):
    return click.option(
        "--dir", "models_dir", type=click.Path(path_type=Path),
        help="Models dir (default: $DUBPREP_MODELS_DIR, else ~/.cache/dubprep/models).",
    )(command)


@cli.group()
def models() -> None:
    """Models you bring (separation, speech recognition): which are known, where they go, whether they are intact."""


@models.command("list")
@_models_dir_option
def models_list(models_dir) -> int:
    """Show every known model: architecture, rate, stems, installed or not, folder."""
    from dubprep.models import listing, models_dir as resolve_dir

    for line in listing(resolve_dir(models_dir)):
        click.echo(line)
    return 0


@models.command("verify")
@click.argument("names", nargs=-1)
@_models_dir_option
def models_verify(names, models_dir) -> int:
    """Check the sha256 of each file of NAMES (default: every installed model)."""
    from dubprep.models import models_dir as resolve_dir, verify

    lines, failure = verify(tuple(names), resolve_dir(models_dir))
    for line in lines:
        click.echo(line)
    if failure:
        raise DubprepError(failure)
    return 0


@models.command("path")
@click.argument("name")
@_models_dir_option
def models_path(name, models_dir) -> int:
    """Print the folder where model NAME's files go."""
    from dubprep.models import entry, entry_directory, models_dir as resolve_dir

    click.echo(entry_directory(entry(name), resolve_dir(models_dir)))
    return 0


def _load(project, input_path, output, device=None):
    from dubprep.config import load_project

    return load_project(project, input_path, output, device)


def _options(from_stage, until_stage, force, clean_work=False):
    from dubprep.engine import RunOptions
    from dubprep.stage import stage_names

    names = stage_names()
    if from_stage and until_stage and names.index(from_stage) > names.index(until_stage):
        raise click.UsageError(f"--from {from_stage} comes after --until {until_stage}")
    return RunOptions(from_stage=from_stage, until_stage=until_stage, force=frozenset(force), clean_work=clean_work)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv``; return the exit code (0 only on full success)."""
    try:
        result = cli.main(args=argv, prog_name="dubprep", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except DubprepError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    return result if isinstance(result, int) else 0


def main_entry() -> None:
    sys.exit(main())
