"""The contract between the engine and a stage, and the list of stages.

A stage declares the artifacts it reads (outputs of earlier stages, by name),
the artifacts it writes, a frozen pydantic model of its parameters and its
position in the pipeline, and registers itself with :func:`register`. The
engine, the project schema and the command line all read :func:`stages`:
a new stage is one new module in ``stages/``. The engine resolves inputs,
gives the stage an empty work folder, and after ``run`` returns it hashes
the outputs, writes the manifest and moves the folder into place. Stages own
audio; they never touch caching or locking.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from dubprep.params import with_backend
from dubprep.progress import NullProgress, ProgressHook
from dubprep.registry import Registry


@dataclass(frozen=True)
class StageContext:
    """Everything a stage may use while it runs.

    ``inputs`` maps each declared input artifact name to its file (an
    optional input only when a stage of this run writes it); ``work_dir`` is an
    empty folder where every declared output must be written
    (``work_dir / name``); ``media`` is the input media file, for the stage
    that reads it; ``device`` is the torch device for its models ('cpu' or
    'cuda:N', resolved from the project's ``device``). A stage that checks
    its own result (QC) lists failed checks in ``failed_checks``: the engine
    still commits the outputs, records the failures in the manifest and
    fails the run.
    """

    params: BaseModel
    inputs: dict[str, Path]
    work_dir: Path
    media: Path
    log: logging.Logger
    device: str = "cpu"
    progress: ProgressHook = field(default_factory=NullProgress)
    failed_checks: list[str] = field(default_factory=list)

    def output(self, name: str) -> Path:
        """Path where the stage writes its declared output ``name``."""
        return self.work_dir / name


class Stage(ABC):
    """Base class of the stages.

    Subclasses set ``name``, ``position`` (stages run in increasing
    position), ``inputs``, ``outputs`` and ``Params``, implement :meth:`run`
    and are decorated with :func:`register`. An ``optional`` stage runs only
    in a project that has its key; a stage reads its ``optional_inputs``
    when a stage of the run writes them. Every declared output must
    exist when ``run`` returns; further files the stage writes in its work
    folder (e.g. one stem per speaker) are recorded in the manifest as well.
    A stage's result lives in ``OUT/work/<name>/`` unless ``folder`` names
    another folder of the output (the delivering stage: 'deliverables').
    A stage whose models are backends sets ``backends``: its parameters
    then take the chosen backend's own keys, and the backend's code and
    weights key its cache.
    """

    name: ClassVar[str]
    position: ClassVar[int]
    # An optional stage runs only when the project has its key (its parameters are not None).
    optional: ClassVar[bool] = False
    inputs: ClassVar[tuple[str, ...]] = ()
    # Read when a stage of this run writes them (the transcript, when the project transcribes).
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[BaseModel]]
    folder: ClassVar[str | None] = None
    backends: ClassVar[Registry[Any] | None] = None

    @classmethod
    def params_model(cls, section: Mapping[str, Any]) -> type[BaseModel]:
        """The model that validates ``section``, this stage's keys in a project (its backend's keys included)."""
        if cls.backends is None:
            return cls.Params
        name = section.get("backend", cls.backends.default)
        if name not in cls.backends.names():
            return cls.Params  # which reports the unknown name
        return with_backend(cls.Params, cls.backends.get(name).Params)

    @classmethod
    def validate_params(cls, section: Mapping[str, Any], context: dict[str, Any] | None = None) -> BaseModel:
        """This stage's parameters from ``section``; pydantic's ValidationError if they are not valid."""
        return cls.params_model(section).model_validate(dict(section), context=context)

    def backend(self, params: BaseModel) -> Any:
        """The backend ``params`` chooses."""
        assert self.backends is not None, f"the {self.name} stage has no backends"
        return self.backends.get(params.backend)

    def code_modules(self, params: BaseModel) -> tuple[str, ...]:
        """Dotted names of the modules whose code defines this stage's result (with what they import)."""
        if self.backends is None:
            return (type(self).__module__,)
        return (type(self).__module__, *self.backend(params).code_modules(params))

    def model_checksum(self, params: BaseModel) -> str:
        """Checksum of the model weights the stage will use ('' when none)."""
        return "" if self.backends is None else self.backend(params).weights_checksum(params)

    def check(self, params: BaseModel) -> None:
        """Check what the parameters name beyond their schema (a clip holds speech), before any stage works.

        Raises a DubprepError naming the file. The engine calls it at the
        start of a run, and ``dubprep validate`` too, so a bad setting of the
        last stage is not found after hours of the first.
        """

    @abstractmethod
    def run(self, ctx: StageContext) -> None:
        """Write every declared output into ``ctx.work_dir``."""


_REGISTERED: dict[str, Stage] = {}
_STAGE_PACKAGE = "dubprep.stages"


def register(cls: type[Stage]) -> type[Stage]:
    """Class decorator: put a stage in the pipeline (one instance, found by its ``name``)."""
    _REGISTERED[cls.name] = cls()
    return cls


def stages() -> tuple[Stage, ...]:
    """Every registered stage in pipeline order; the modules of ``dubprep.stages`` are imported first."""
    package = importlib.import_module(_STAGE_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.ispkg:
            importlib.import_module(f"{_STAGE_PACKAGE}.{module.name}")
    return tuple(sorted(_REGISTERED.values(), key=lambda stage: stage.position))


def stage_names() -> tuple[str, ...]:
    return tuple(stage.name for stage in stages())


def stage_named(name: str) -> Stage:
    return next(stage for stage in stages() if stage.name == name)
