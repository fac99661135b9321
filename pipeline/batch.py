"""Many projects as independent jobs on dask.distributed.

A job is one engine run: one project, one output folder, in a worker
process. Jobs come from several project files, or from one template
project and a glob of media files (each media file becomes a job writing
``OUTROOT/<media stem>``). They run on a LocalCluster of worker processes
by default, or on an existing scheduler (``--scheduler tcp://host:8786``).

A job whose engine run fails raises, so dask runs it again (``retries``);
a job whose only problem is a QC flag is finished (``qc_failed``): its
delivery needs review, and a rerun would flag it again. A worker that
dies mid-job (killed, out of memory) has its job rerun elsewhere by the
scheduler. Either way the rerun resumes: the engine
reuses every stage already committed in the job's output folder, which is
also why running a whole batch again only does the unfinished work. Each
job's log is its own ``OUT/dubprep.log``.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table
from rich.text import Text

from dubprep.config import load_project
from dubprep.engine import LOG_NAME, Engine, RunOptions
from dubprep.errors import ConfigError, DubprepError
from dubprep.stage import stages

_CONNECT_TIMEOUT_S = 10


class BatchParams(BaseModel):
    """Where and how the jobs run.

    ``scheduler`` is an existing cluster's address (``tcp://host:8786``);
    None starts a LocalCluster of ``workers`` processes (None: one per CPU
    core, at most one per job), one thread each. ``retries`` is how many
    more times a failed job runs. ``gpu_per_job`` makes every job hold that
    many units of the workers' ``GPU`` resource (``dask worker --resources
    GPU=1``) while it runs; None asks for none.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheduler: str | None = None
    workers: int | None = Field(default=None, ge=1)
    retries: int = Field(default=1, ge=0)
    gpu_per_job: float | None = Field(default=None, gt=0)


class JobSpec(BaseModel):
    """One job: a project file (None: the default preset) and overrides.

    Paths are absolute, so a worker with another current folder (or on
    another machine sharing the storage) resolves them the same way.
    ``output`` is always set: it is the job's identity in the batch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    project: Path | None
    input: Path | None
    output: Path


@dataclass(frozen=True)
class JobResult:
    """What a job did: status per stage (ran/cached/failed/qc_failed) and wall time in seconds."""

    name: str
    output: Path
    status: Literal["done", "qc_failed", "failed"]
    stages: dict[str, str] = field(default_factory=dict)
    seconds: float | None = None
    error: str = ""
    worker: str = ""


@dataclass(frozen=True)
class BatchReport:
    results: list[JobResult]

    @property
    def exit_code(self) -> int:
        """As ``dubprep run``'s: 1 when a job failed, else 3 when QC flagged a delivery, else 0."""
        statuses = {r.status for r in self.results}
        return 1 if "failed" in statuses else 3 if "qc_failed" in statuses else 0


class JobFailed(DubprepError):
    """Raised in the worker when a job's engine run fails, so dask retries it."""

    def __init__(self, result: JobResult):
        super().__init__(f"{result.name}: {result.error}")
        self.result = result

    def __reduce__(self):
        return (JobFailed, (self.result,))


def jobs_from_projects(projects: list[Path]) -> list[JobSpec]:
    """One job per project file, writing the project's own output folder."""
    jobs = []
    for path in projects:
        project = load_project(path)
        jobs.append(JobSpec(name=path.stem, project=path.absolute(), input=None, output=project.output))
    return jobs


def jobs_from_template(template: Path | None, media_pattern: str, output_root: Path) -> list[JobSpec]:
    """One job per file matching ``media_pattern``, output ``output_root/<media stem>``."""
    media = sorted(Path(p) for p in glob.glob(media_pattern, recursive=True) if Path(p).is_file())
    if not media:
        raise ConfigError(
            f"--media {media_pattern!r}: no files match; check the pattern and quote it so the shell does not expand it"
        )
    jobs = []
    for path in media:
        output = (output_root / path.stem).absolute()
        load_project(template, path, output)
        jobs.append(JobSpec(name=path.stem, project=template.absolute() if template else None,
                            input=path.absolute(), output=output))
    return jobs


def check_outputs(jobs: list[JobSpec]) -> None:
    """Refuse a batch where two jobs would write the same output folder."""
    seen: dict[Path, JobSpec] = {}
    for job in jobs:
        folder = job.output.resolve()
        if folder in seen:
            raise ConfigError(
                f"{folder}: jobs {_source(seen[folder])} and {_source(job)} both write this output folder; "
                f"give each job its own output"
            )
        seen[folder] = job


def _source(job: JobSpec) -> str:
    return f"'{job.input or job.project}'"


def run_job(job: JobSpec) -> JobResult:
    """The dask task: one engine run in the worker process; raises JobFailed if it failed."""
    from distributed import get_worker

    started = time.monotonic()
    project = load_project(job.project, job.input, job.output)
    report = Engine(project).run(RunOptions())
    failed = [r for r in report.results if r.status == "failed"]
    flagged = [r for r in report.results if r.status == "qc_failed"]
    problem = failed[0] if failed else flagged[0] if flagged else None
    result = JobResult(
        name=job.name,
        output=project.output,
        status="failed" if failed else "qc_failed" if flagged else "done",
        stages={r.name: r.status for r in report.results},
        seconds=time.monotonic() - started,
        error=f"{problem.detail} (log: {project.output / LOG_NAME})" if problem else "",
        worker=get_worker().address,
    )
    if failed:
        raise JobFailed(result)
    return result


def run_batch(jobs: list[JobSpec], params: BatchParams,
              on_result: Callable[[JobResult], None] = lambda result: None) -> BatchReport:
    """Run every job to completion or failure; results in the jobs' order.

    ``on_result`` is called as each job finishes (in finishing order).
    """
    from distributed import as_completed

    check_outputs(jobs)
    with _client(params, len(jobs)) as client:
        if params.gpu_per_job:
            _check_gpu_workers(client, params)
        resources = {"GPU": params.gpu_per_job} if params.gpu_per_job else None
        batch_id = uuid.uuid4().hex[:8]
        futures = {
            client.submit(run_job, job, key=f"dubprep-{job.name}-{index}-{batch_id}",
                          retries=params.retries, resources=resources, pure=False): job
            for index, job in enumerate(jobs)
        }
        results: dict[Path, JobResult] = {}
        for future in as_completed(futures):
            result = _collect(future, futures[future])
            results[futures[future].output] = result
            on_result(result)
    return BatchReport([results[job.output] for job in jobs])


def _collect(future, job: JobSpec) -> JobResult:
    """The job's result, or a failed one carrying the last attempt's error."""
    from distributed import KilledWorker

    if future.status == "finished":
        return future.result()
    error = future.exception()
    if isinstance(error, JobFailed):
        return error.result
    if isinstance(error, KilledWorker):
        message = "its worker process died on every attempt (killed, or out of memory)"
    else:
        message = f"{type(error).__name__}: {error}"
    return JobResult(name=job.name, output=job.output, status="failed",
                     error=f"{message} (log: {job.output / LOG_NAME})")


@contextmanager
def _client(params: BatchParams, job_count: int) -> Iterator:
    """A client of the given scheduler, or of a LocalCluster that lives as long as the batch."""
    import dask
    from distributed import Client, LocalCluster

    if params.scheduler:
        try:
            client = Client(params.scheduler, timeout=_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"--scheduler {params.scheduler}: cannot connect ({exc}); start it with `dask scheduler` "
                f"or check the address"
            ) from None
        with client:
            yield client
        return
    workers = params.workers or max(1, min(os.cpu_count() or 1, job_count))
    # Processes, not threads: each job's log handler and model state belong to its own process.
    # Logs silenced below CRITICAL: a failed attempt is in the job's own log and in the summary,
    # dask's traceback per attempt on the terminal would only repeat it. The scheduler's and
    # workers' scratch space goes with the cluster instead of staying in TMPDIR.
    with tempfile.TemporaryDirectory(prefix="dubprep-dask-") as scratch, dask.config.set({"temporary-directory": scratch}):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.CRITICAL) as cluster:
            with Client(cluster) as client:
                yield client


def _check_gpu_workers(client, params: BatchParams) -> None:
    """Jobs asking for GPU units no worker has would wait forever: refuse them now."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    offered = [worker.get("resources", {}).get("GPU", 0) for worker in workers]
    if not any(units >= params.gpu_per_job for units in offered):
        where = params.scheduler or "the local cluster"
        raise ConfigError(
            f"--gpu-per-job {params.gpu_per_job:g}: no worker of {where} offers GPU={params.gpu_per_job:g} "
            f"(offered: {sorted(set(offered))}); start workers with `dask worker SCHEDULER --resources GPU=1` "
            f"and pass --scheduler"
        )


def finished_line(result: JobResult) -> str:
    """One line as a job finishes, so a long batch shows it is moving."""
    seconds = f" in {result.seconds:.1f} s" if result.seconds is not None else ""
    return f"{result.name}: {result.status}{seconds} -> {result.output}"


def summary_table(report: BatchReport) -> Table:
    """One row per job: status, each stage's status, wall time, output folder."""
    table = Table(title="dubprep batch")
    table.add_column("job")
    table.add_column("status")
    # An optional stage (transcribe) gets a column when a job of this batch has it.
    names = [s.name for s in stages() if not s.optional or any(s.name in r.stages for r in report.results)]
    for name in names:
        table.add_column(name)
    table.add_column("time", justify="right")
    table.add_column("output", overflow="fold")
    for result in report.results:
        status = {"done": "[green]done[/]", "qc_failed": "[yellow]qc_failed[/]", "failed": "[red]failed[/]"}[result.status]
        seconds = f"{result.seconds:.1f} s" if result.seconds is not None else "-"
        statuses = [result.stages.get(name, "-") for name in names]
        table.add_row(Text(result.name), status, *statuses, seconds, Text(_shown(result.output)))
    return table


def _shown(path: Path) -> str:
    """The path relative to the current folder when it is inside it: narrower tables."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
