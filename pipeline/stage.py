"""The contract between the engine and a stage.

A stage declares the artifacts it reads (outputs of earlier stages, by name),
the artifacts it writes, and a frozen pydantic model of its parameters. The
engine resolves inputs, gives the stage an empty work folder, and after
``run`` returns it hashes the outputs, writes the manifest and moves the
folder into place. Stages own audio; they never touch caching or locking.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from dubprep.progress import NullProgress, ProgressHook


@dataclass(frozen=True)
class StageContext:
    """Everything a stage may use while it runs.

    ``inputs`` maps each declared input artifact name to its file;
    ``work_dir`` is an empty folder where every declared output must be
    written (``work_dir / name``); ``media`` is the input media file, for
    the stage that reads it; ``device`` is the torch device for its models
    ('cpu' or 'cuda:N', resolved from the project's ``device``). A stage that checks its own result (QC) lists
    failed checks in ``failed_checks``: the engine still commits the
    outputs, records the failures in the manifest and fails the run.
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

    Subclasses set ``name``, ``inputs``, ``outputs`` and ``Params`` and
    implement :meth:`run`. Every declared output must exist when ``run``
    returns; further files the stage writes in its work folder (e.g. one
    stem per speaker) are recorded in the manifest as well.
    """

    name: ClassVar[str]
    # An optional stage runs only when the project has its key (its parameters are not None).
    optional: ClassVar[bool] = False
    inputs: ClassVar[tuple[str, ...]] = ()
    # Read when a stage of this run writes them (the transcript, when the project transcribes).
    optional_inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[BaseModel]]

    def code_modules(self, params: BaseModel) -> tuple[str, ...]:
        """Dotted names of the modules whose source defines this stage's result."""
        return (type(self).__module__,)

    def model_checksum(self, params: BaseModel) -> str:
        """Checksum of the model weights the stage will use ('' when none)."""
        return ""

    def check(self, params: BaseModel) -> None:
        """Check what the parameters name beyond their schema (a clip holds speech), before any stage works.

        Raises a DubprepError naming the file. The engine calls it at the
        start of a run, and ``dubprep validate`` too, so a bad setting of the
        last stage is not found after hours of the first.
        """

    @abstractmethod
    def run(self, ctx: StageContext) -> None:
        """Write every declared output into ``ctx.work_dir``."""
