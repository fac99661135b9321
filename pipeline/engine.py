"""The engine: which stages run, caching, crash-safe commits, logging.

Layout of an output folder::

    OUT/work/extract/      mix.flac, media.json, manifest.json
    OUT/work/separate/     DX.flac, MX.flac, manifest.json (ME and FX are computed: dubprep.stems)
    OUT/work/diarize/      turns.rttm, turns.json, ..., manifest.json
    OUT/deliverables/      what the studio receives, manifest.json
    OUT/dubprep.log        every run's log, appended
    OUT/.dubprep/          lock, hash cache, temporary folders

With ``clean_work`` (``--clean-work`` or the project's key) ``OUT/work`` is
removed after a run that delivered and whose QC passed, and
``.dubprep/work-cleaned.json`` says when, so a later run says why it
rebuilds the work stages (they rerun; unchanged outputs keep the delivery
cached).

A stage writes into ``.dubprep/tmp/<stage>-<pid>``; the engine fsyncs its
files, writes the manifest last and renames the folder into place, so a
folder with a manifest is always complete and a killed run resumes at the
stage it was in.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dubprep.audio_io import audio_info
from dubprep.cache import (
    MANIFEST, HashCache, KeyParts, code_hash, damaged_outputs, describe_outputs, key_params, read_manifest,
    write_json_atomic,
)
from dubprep.config import Project
from dubprep.console import FILE_ONLY
from dubprep.device import DeviceUnavailable, resolve_device
from dubprep.errors import ConfigError, DubprepError, StageError
from dubprep.lock import OutputLock
from dubprep.progress import NullProgress, ProgressHook
from dubprep.stage import Stage, StageContext, stages

LOG_NAME = "dubprep.log"
CLEANED_MARK = "work-cleaned.json"
_runs = itertools.count(1)


@dataclass(frozen=True)
class RunOptions:
    """Which stages to consider: ``from_stage``..``until_stage``, some forced; ``clean_work``: see the module."""

    from_stage: str | None = None
    until_stage: str | None = None
    force: frozenset[str] = frozenset()
    clean_work: bool = False


@dataclass(frozen=True)
class StagePlan:
    name: str
    action: Literal["run", "cached"]
    reason: str


@dataclass(frozen=True)
class StageResult:
    name: str
    status: Literal["ran", "cached", "failed", "qc_failed"]
    seconds: float
    detail: str


@dataclass
class RunReport:
    results: list[StageResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status in ("ran", "cached") for r in self.results)


def stage_folder(output: Path, stage: Stage) -> Path:
    """Where a stage's committed result lives: ``OUT/work/<name>``, or the folder the stage names."""
    return output / stage.folder if stage.folder else output / "work" / stage.name


class Engine:
    """Runs a project's stages in order, reusing every result still valid."""

    def __init__(self, project: Project, progress: Callable[[], ProgressHook] = NullProgress):
        self.project = project
        self.progress = progress
        self.state_dir = project.output / ".dubprep"
        # A logger of its own, under 'dubprep' (whose handlers print to the
        # terminal), so engines sharing a process never share a log file.
        self.log = logging.getLogger(f"dubprep.run{next(_runs)}")
        self.log.setLevel(logging.DEBUG)
        self._resolved_device: str | None = None
        # The registered stages this project runs: an optional one only when the project has its key.
        self.stages = tuple(s for s in stages() if not s.optional or self._params(s) is not None)

    def _params(self, stage: Stage):
        return getattr(self.project, stage.name)

    def selected(self, options: RunOptions) -> tuple[Stage, ...]:
        """The project's stages from ``--from`` to ``--until``; ConfigError naming one it does not have."""
        names = [stage.name for stage in self.stages]
        for asked in (options.from_stage, options.until_stage, *options.force):
            if asked is not None and asked not in names:
                raise ConfigError(f"{asked}: not a stage of this project (its stages: {', '.join(names)})")
        first = names.index(options.from_stage) if options.from_stage else 0
        last = names.index(options.until_stage) if options.until_stage else len(names) - 1
        return self.stages[first : last + 1]

    def forced(self, options: RunOptions) -> frozenset[str]:
        """Stages that rerun whatever the cache says: --force, and --from onwards."""
        from_on = {s.name for s in self.selected(options)} if options.from_stage else set()
        return frozenset(options.force) | from_on

    def plan(self, options: RunOptions) -> list[StagePlan]:
        """What a run would do, without doing it or taking the lock."""
        plans: list[StagePlan] = []
        hashes = HashCache(self.state_dir / "hashes.json") if self.state_dir.is_dir() else None
        forced = self.forced(options)
        for stage in self.selected(options):
            rerunning = [p.name for p in plans if p.action == "run"]
            if rerunning:
                plans.append(StagePlan(stage.name, "run", self._reason_after_rerun(stage, forced, rerunning[-1])))
                continue
            action, reason = self._decide(stage, forced, hashes)
            plans.append(StagePlan(stage.name, action, reason))
        return plans

    def _reason_after_rerun(self, stage: Stage, forced: frozenset[str], upstream: str) -> str:
        if stage.name in forced:
            return "forced"
        if read_manifest(stage_folder(self.project.output, stage)) is None:
            return self._no_result(stage)
        return f"if {upstream}'s outputs change"

    def _no_result(self, stage: Stage) -> str:
        """Why a stage without a result runs: saying so when --clean-work removed it."""
        mark = self.state_dir / CLEANED_MARK
        if stage.folder is None and mark.is_file():
            cleaned = json.loads(mark.read_text())["cleaned"]
            return f"no previous result: the work folder was removed by --clean-work at {cleaned}; rebuilding it"
        return "no previous result"

    def run(self, options: RunOptions) -> RunReport:
        """Run the selected stages under the output lock.

        Raises ConfigError only for options naming a stage this project does
        not have; every other DubprepError ends up in the report.
        """
        selected = self.selected(options)
        try:
            self.project.output.mkdir(parents=True, exist_ok=True)
            handler = _file_handler(self.project.output / LOG_NAME)
        except OSError as exc:  # a read-only disk, a parent that is a file, no permission
            message = (f"{self.project.output}: cannot create the output folder or write in it "
                       f"({exc.strerror or exc}); choose another --output")
            return RunReport([StageResult("output", "failed", 0.0, message)])
        self.log.addHandler(handler)
        report = RunReport()
        try:
            with OutputLock(self.state_dir, self.project.output):
                self.log.info("run: %s -> %s", self.project.input, self.project.output)
                self._clean_state()
                self.check(options)
                hashes = HashCache(self.state_dir / "hashes.json")
                for stage in selected:
                    result = self._run_stage(stage, self.forced(options), hashes)
                    report.results.append(result)
                    if result.status == "failed":
                        break
                if options.clean_work or self.project.clean_work:
                    self._clean_work(report)
        except DubprepError as exc:  # before any stage ran: the lock is held elsewhere, or a check failed
            self.log.error("%s", exc, extra=FILE_ONLY)
            report.results.append(StageResult("run", "failed", 0.0, str(exc)))
        finally:
            self.log.removeHandler(handler)
            handler.close()
        return report

    def check(self, options: RunOptions) -> None:
        """Each selected stage's own check of what its parameters name; raises DubprepError."""
        for stage in self.selected(options):
            stage.check(self._params(stage))

    def _run_stage(self, stage: Stage, forced: frozenset[str], hashes: HashCache) -> StageResult:
        started = time.monotonic()
        try:
            action, reason = self._decide(stage, forced, hashes)
            if action == "cached":
                self.log.info("%s: cached (%s)", stage.name, reason)
                failed = read_manifest(stage_folder(self.project.output, stage)).get("failed_checks", [])
                return _checked(StageResult(stage.name, "cached", 0.0, reason), failed, self.log)
            self.log.info("%s: running (%s)", stage.name, reason)
            failed = self._execute(stage, hashes)
        except DubprepError as exc:
            self.log.error("%s: failed: %s", stage.name, exc, extra=FILE_ONLY)
            return StageResult(stage.name, "failed", time.monotonic() - started, str(exc))
        except Exception as exc:  # a bug: keep the trace in the log, one line on the console
            self.log.debug("%s", traceback.format_exc())
            message = f"internal error in {stage.name}: {exc!r}; see {self.project.output / LOG_NAME}"
            self.log.error("%s: failed: %s", stage.name, message, extra=FILE_ONLY)
            return StageResult(stage.name, "failed", time.monotonic() - started, message)
        seconds = time.monotonic() - started
        detail = self._summary(stage, seconds)
        self.log.info("%s: done in %s", stage.name, detail)
        return _checked(StageResult(stage.name, "ran", seconds, detail), failed, self.log)

    def _decide(self, stage: Stage, forced: frozenset[str], hashes: HashCache | None) -> tuple[str, str]:
        parts = self._key_parts(stage, hashes)
        manifest = read_manifest(stage_folder(self.project.output, stage))
        if stage.name in forced:
            return "run", "forced"
        if manifest is None:
            return "run", self._no_result(stage)
        if manifest["key"] != parts.key:
            return "run", "; ".join(parts.differences(manifest))
        damaged = damaged_outputs(stage_folder(self.project.output, stage), manifest["outputs"])
        if damaged:
            return "run", ", ".join(damaged)
        return "cached", f"key {parts.key[:12]}"

    def _key_parts(self, stage: Stage, hashes: HashCache | None) -> KeyParts:
        params = self._params(stage)
        return KeyParts(
            stage=stage.name,
            params=key_params(params),
            inputs=self._input_hashes(stage, hashes),
            model=stage.model_checksum(params),
            code=code_hash(stage.code_modules(params)),
        )

    def _input_hashes(self, stage: Stage, hashes: HashCache | None) -> dict[str, str]:
        if not stage.inputs:
            if hashes is None:
                return {"media": "not hashed yet"}
            return {"media": hashes.sha256(self.project.input)}
        return {
            name: self._producer_manifest(stage, name, producer)["outputs"][name]["sha256"]
            for name, producer in self._producers(stage).items()
        }

    def _producers(self, stage: Stage) -> dict[str, Stage]:
        """The stage of this run that writes each artifact ``stage`` reads: its inputs, and the optional ones written."""
        writers: dict[str, Stage] = {}
        for earlier in self.stages:  # the first stage to write an artifact is its producer (assemble copies turns)
            writers.update({name: earlier for name in earlier.outputs if name not in writers})
        producers = {name: writers[name] for name in stage.inputs}
        return producers | {name: writers[name] for name in stage.optional_inputs if name in writers}

    def _producer_manifest(self, stage: Stage, artifact: str, producer: Stage) -> dict:
        manifest = read_manifest(stage_folder(self.project.output, producer))
        if manifest is None or artifact not in manifest["outputs"]:
            raise StageError(
                f"{stage.name}: needs {artifact} from {producer.name}, which has no result in "
                f"{self.project.output}; run {producer.name} first (drop --from)"
            )
        return manifest

    def _input_paths(self, stage: Stage) -> dict[str, Path]:
        producers = self._producers(stage)
        return {name: stage_folder(self.project.output, producer) / name for name, producer in producers.items()}

    def _execute(self, stage: Stage, hashes: HashCache) -> list[str]:
        parts = self._key_parts(stage, hashes)
        device = self._device()  # before the work folder: an unusable device leaves nothing behind
        work_dir = self.state_dir / "tmp" / f"{stage.name}-{os.getpid()}"
        work_dir.mkdir(parents=True)
        params = self._params(stage)
        ctx = StageContext(
            params, self._input_paths(stage), work_dir, self.project.input, self.log, device, self.progress()
        )
        try:
            stage.run(ctx)
            missing = [name for name in stage.outputs if not (work_dir / name).is_file()]
            if missing:
                raise StageError(f"{stage.name}: did not write {', '.join(missing)}; this is a bug, see the log")
            _fsync_tree(work_dir)
            manifest = {"stage": stage.name, "key": parts.key, "params": parts.params, "inputs": parts.inputs,
                        "model": parts.model, "code": parts.code, "outputs": describe_outputs(work_dir),
                        "failed_checks": ctx.failed_checks, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            write_json_atomic(work_dir / MANIFEST, manifest)
            self._commit(work_dir, stage_folder(self.project.output, stage))
            return ctx.failed_checks
        except OSError as exc:
            raise StageError(
                f"{stage.name}: {exc.filename or self.project.output}: {exc.strerror or exc}; "
                f"free disk space or choose another --output"
            ) from None
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)

    def _device(self) -> str:
        """The torch device for this run's models, resolved when a stage first runs."""
        if self._resolved_device is None:
            try:
                self._resolved_device = resolve_device(self.project.device)
            except DeviceUnavailable as exc:
                raise ConfigError(f"{exc}; set device: auto or cpu in the project, or pass --device cpu") from None
            self.log.info("device: %s (asked for %s)", self._resolved_device, self.project.device)
        return self._resolved_device

    def _commit(self, work_dir: Path, final: Path) -> None:
        """Swap the finished folder into place: old result to trash, new one in, trash gone."""
        final.parent.mkdir(parents=True, exist_ok=True)
        trash = self.state_dir / "trash" / f"{final.name}-{os.getpid()}"
        if final.exists():
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(final, trash)
        os.replace(work_dir, final)
        _fsync_dir(final.parent)
        shutil.rmtree(trash, ignore_errors=True)

    def _clean_work(self, report: RunReport) -> None:
        """Remove OUT/work when this run delivered and QC passed; otherwise say why it stays."""
        last = self.stages[-1].name
        if not report.ok:
            flagged = any(r.status == "qc_failed" for r in report.results)
            why = "QC flagged the delivery" if flagged else "a stage failed"
            self.log.info("work folder kept (--clean-work): %s", why)
            return
        if not report.results or report.results[-1].name != last:
            self.log.info("work folder kept (--clean-work): the run did not reach %s", last)
            return
        work = self.project.output / "work"
        if not work.is_dir():
            return
        # Marked first: a run killed while removing still tells the next run why the work is gone.
        write_json_atomic(self.state_dir / CLEANED_MARK, {"cleaned": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        freed_bytes = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
        shutil.rmtree(work)
        self.log.info("work folder removed (--clean-work): %s, %.2f GiB freed; a rerun rebuilds it", work,
                      freed_bytes / 2**30)

    def _clean_state(self) -> None:
        """Remove what killed runs left: their temporary folders were never complete."""
        for leftover in ("tmp", "trash"):
            folder = self.state_dir / leftover
            if folder.is_dir():
                for entry in folder.iterdir():
                    self.log.info("removing %s left by an interrupted run", entry)
                    shutil.rmtree(entry, ignore_errors=True)

    def _summary(self, stage: Stage, seconds: float) -> str:
        """Time, speed against the programme's length (that of the first WAV the stage read or wrote), files."""
        folder = stage_folder(self.project.output, stage)
        files = len([p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST])
        wavs = [path for path in [*self._input_paths(stage).values(), *(folder / name for name in stage.outputs)]
                if path.suffix in (".wav", ".flac")]
        if not wavs:
            return f"{seconds:.1f} s, {files} files"
        programme_s = audio_info(wavs[0]).duration_s
        return f"{seconds:.1f} s ({seconds / programme_s:.3f}x real time), {files} files in {folder}"


def _checked(result: StageResult, failed_checks: list[str], log: logging.Logger) -> StageResult:
    """``result``, turned into a failure when the stage's own checks failed."""
    if not failed_checks:
        return result
    message = f"{len(failed_checks)} QC check(s) failed: " + "; ".join(failed_checks)
    log.error("%s: %s", result.name, message, extra=FILE_ONLY)
    return StageResult(result.name, "qc_failed", result.seconds, message)


def _file_handler(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    return handler


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
