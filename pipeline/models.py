"""The model registry: which models dubprep knows, where they live, whether they are intact.

``models.yaml`` (shipped with the package) lists each known model: its name,
architecture, sample rate, stems, the files it needs and their sha256 where
one is pinned, and where users get it. Weights are never downloaded: a user
puts a model NAME's files in ``<models dir>/NAME/``. The models dir is, in
order: the project's ``models: {dir: PATH}``, the ``DUBPREP_MODELS_DIR``
environment variable, ``~/.cache/dubprep/models``. A bundled model (dfn3)
lives inside the Python package that ships it.

A model reference (``separate.model``) is a registered name or the path of a
directory. A directory named like a registered model is that model (its
files are looked up by their registered names); any other directory holds an
MSST-style model: exactly one YAML config and one checkpoint file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from dubprep import cache
from dubprep.errors import ModelError

ENV_VAR = "DUBPREP_MODELS_DIR"
DEFAULT_DIR = Path("~/.cache/dubprep/models")
CHECKPOINT_SUFFIXES = (".ckpt", ".chpt", ".pt", ".pth")


class ModelsParams(BaseModel):
    """A project's ``models`` key: ``dir``, where registered models live (None: $DUBPREP_MODELS_DIR or the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: Path | None = None


class ModelFile(BaseModel):
    """One file of a model: its name and, where pinned, its sha256 (hex)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    sha256: str | None = None


class Bundled(BaseModel):
    """Where a bundled model's files are: ``folder`` inside the installed Python ``package``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str
    folder: str


class ModelEntry(BaseModel):
    """A registered model; ``config`` is None when the checkpoint carries its own.

    ``stems``: what a separation model outputs (none for a speech
    recogniser). ``assets``: further files the model needs (a tokenizer, a
    vocabulary). ``languages``: the only languages a speech model was
    trained on (empty: whichever it knows).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    architecture: str
    sample_rate: int
    stems: tuple[str, ...] = ()
    config: ModelFile | None = None
    checkpoint: ModelFile
    assets: tuple[ModelFile, ...] = ()
    languages: tuple[str, ...] = ()
    source: str
    bundled: Bundled | None = None

    @property
    def files(self) -> tuple[ModelFile, ...]:
        own = (self.checkpoint,) if self.config is None else (self.config, self.checkpoint)
        return own + self.assets


@dataclass(frozen=True)
class ModelFiles:
    """The files a model directory holds; ``entry`` is its registry entry, if any."""

    config: Path
    checkpoint: Path
    entry: ModelEntry | None


@dataclass(frozen=True)
class FileCheck:
    """One file checked against the registry: ``actual`` is None when the file is missing."""

    path: Path
    expected: str | None
    actual: str | None

    @property
    def status(self) -> Literal["ok", "missing", "mismatch", "unverified"]:
        if self.actual is None:
            return "missing"
        if self.expected is None:
            return "unverified"
        return "ok" if self.actual == self.expected else "mismatch"


@functools.cache
def registry() -> dict[str, ModelEntry]:
    """Every registered model by name, from the shipped ``models.yaml``."""
    text = (resources.files("dubprep") / "models.yaml").read_text(encoding="utf-8")
    entries = [ModelEntry.model_validate(item) for item in yaml.safe_load(text)]
    return {entry.name: entry for entry in entries}


def entry(name: str) -> ModelEntry:
    """The registered model ``name``; ModelError listing the known names otherwise."""
    known = registry()
    if name not in known:
        raise ModelError(f"unknown model '{name}'; known models: {', '.join(known)} (see: dubprep models list)")
    return known[name]


def models_dir(configured: Path | None = None) -> Path:
    """The models dir: ``configured`` (the project's), else $DUBPREP_MODELS_DIR, else ~/.cache/dubprep/models."""
    if configured is not None:
        return configured
    from_env = os.environ.get(ENV_VAR)
    return Path(from_env).expanduser() if from_env else DEFAULT_DIR.expanduser()


def entry_directory(model: ModelEntry, directory: Path) -> Path:
    """Where ``model``'s files are: inside its package when bundled, else ``directory/NAME``."""
    if model.bundled is not None:
        return Path(str(resources.files(model.bundled.package) / model.bundled.folder))
    return directory / model.name


def locate(reference: str, configured_dir: Path | None = None) -> Path:
    """The directory of a model reference: a registered name (in the models dir) or a directory path."""
    if reference in registry():
        return entry_directory(registry()[reference], models_dir(configured_dir))
    return Path(reference).expanduser()


@functools.cache
def _sha256_cached(path: Path, size: int, mtime_ns: int) -> str:
    return cache.sha256_file(path)


def sha256_file(path: Path) -> str:
    """sha256 (hex) of ``path``, read in blocks; remembered until the file's size or mtime changes."""
    stat = path.stat()
    return _sha256_cached(path.absolute(), stat.st_size, stat.st_mtime_ns)


def check_files(model: ModelEntry, directory: Path) -> list[FileCheck]:
    """Each of ``model``'s files in ``directory`` against its pinned sha256."""
    checks = []
    for item in model.files:
        path = directory / item.file
        checks.append(FileCheck(path, item.sha256, sha256_file(path) if path.is_file() else None))
    return checks


def missing_message(model: ModelEntry, missing: list[FileCheck]) -> str:
    """One line for files of ``model`` that are not there: each file (and its hash, if pinned), where to get them."""
    files = ", ".join(f"{c.path}" + (f" (expected sha256 {c.expected})" if c.expected else "") for c in missing)
    return f"model {model.name}: not found: {files}; get {'it' if len(missing) == 1 else 'them'}: {model.source}"


def failure_message(model: ModelEntry, check: FileCheck) -> str:
    """One line for a missing or mismatching file: the file, the expected hash, where to get it."""
    if check.status == "missing":
        return missing_message(model, [check])
    return (
        f"model {model.name}: {check.path} has sha256 {check.actual}, expected {check.expected}; "
        f"the file is corrupt or another version; get it again: {model.source}"
    )


def require_files(model: ModelEntry, directory: Path) -> None:
    """ModelError naming every one of ``model``'s files missing from ``directory``, or the first altered one.

    Only files with a pinned sha256 are read: a project is validated in
    seconds even when a multi-gigabyte checkpoint has no checksum to compare.
    """
    missing = [FileCheck(directory / f.file, f.sha256, None) for f in model.files if not (directory / f.file).is_file()]
    if missing:
        raise ModelError(missing_message(model, missing))
    for item in model.files:
        if item.sha256 is not None:
            check = FileCheck(directory / item.file, item.sha256, sha256_file(directory / item.file))
            if check.status == "mismatch":
                raise ModelError(failure_message(model, check))


def model_files(directory: Path) -> ModelFiles:
    """The config and checkpoint in a model ``directory``; ModelError saying what is missing."""
    model = registry().get(directory.name)
    if model is not None and model.config is not None:
        require_files(model, directory)
        return ModelFiles(directory / model.config.file, directory / model.checkpoint.file, model)
    if not directory.is_dir():
        raise ModelError(
            f"model directory {directory} not found; give separate.model a registered name "
            f"({', '.join(registry())}) or a directory holding a YAML config and a checkpoint"
        )
    configs = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    checkpoints = sorted(p for p in directory.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(configs) != 1 or len(checkpoints) != 1:
        raise ModelError(
            f"model directory {directory}: needs exactly one YAML config and one checkpoint "
            f"({', '.join(CHECKPOINT_SUFFIXES)}); found {len(configs)} and {len(checkpoints)}"
        )
    return ModelFiles(configs[0], checkpoints[0], None)


def installed(model: ModelEntry, directory: Path) -> bool:
    """True when every one of ``model``'s files is in ``directory``."""
    return all((directory / item.file).is_file() for item in model.files)


def listing(directory: Path) -> list[str]:
    """The table ``dubprep models list`` prints: name, architecture, rate, stems, installed, path."""
    rows = [("NAME", "ARCHITECTURE", "RATE_HZ", "STEMS", "INSTALLED", "PATH")]
    for model in registry().values():
        where = entry_directory(model, directory)
        yes_no = "yes" if installed(model, where) else "no"
        stems = ",".join(model.stems) or "-"
        rows.append((model.name, model.architecture, str(model.sample_rate), stems, yes_no, str(where)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]) for row in rows]


def verify(names: tuple[str, ...], directory: Path) -> tuple[list[str], str | None]:
    """What ``dubprep models verify`` prints: a line per file, and the first failure's message (or None).

    ``names`` empty: every model with a folder in ``directory`` (and the bundled ones).
    """
    chosen = [entry(name) for name in names] or [
        model for model in registry().values() if entry_directory(model, directory).is_dir()
    ]
    lines: list[str] = []
    failure = None
    for model in chosen:
        for check in check_files(model, entry_directory(model, directory)):
            found = f"sha256 {check.actual}" if check.actual else "not found"
            note = " (no pinned sha256 to compare with)" if check.status == "unverified" else ""
            lines.append(f"{model.name}: {check.status:<10} {check.path}  {found}{note}")
            if failure is None and check.status in ("missing", "mismatch"):
                failure = failure_message(model, check)
    return lines, failure
