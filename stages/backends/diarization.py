"""The diarization backend contract, its result type, and the registry of diarization backends.

The diarize stage reads the dialogue stem as mono 16 kHz
(:class:`~dubprep.audio_io.MonoReader`), hands it to the backend the
project names, and turns the backend's :class:`Diarization` into named
turns (reference clips are embedded by the backend's own speaker model,
:meth:`Diarizer.embed`), RTTM, JSON and centroids. A backend is a
:class:`DiarizationBackend` subclass in a module of its own, listed in
:data:`DIARIZERS`.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel

from dubprep.audio_io import ArraySource, MonoReader
from dubprep.progress import ProgressHook
from dubprep.lazy import lazy_module
from dubprep.params import NoParams
from dubprep.registry import Registry
from dubprep.vad import SpeechRegion

if TYPE_CHECKING:
    from pyannote.core import Annotation, Timeline

core = lazy_module("pyannote.core")  # imported when a run first makes turns: a project validates without it
URI = "programme"


@dataclass(frozen=True)
class Diarization:
    """Speaker turns labelled by cluster index i, whose centroid is row i of ``centroids``.

    ``turns`` may overlap: where two people talk at once, a second speaker
    holds the same frames. ``exclusive`` gives each moment to one speaker at
    most, with the same labels. ``centroids`` (speakers, dimension) are unit
    norm in the backend's embedding space (a zero row: no clean speech to
    embed that speaker from).
    """

    turns: Annotation
    exclusive: Annotation
    centroids: np.ndarray

    @classmethod
    def empty(cls, dimension: int) -> Diarization:
        """No speech, no speakers."""
        return cls(core.Annotation(uri=URI), core.Annotation(uri=URI), np.zeros((0, dimension), np.float32))

    def write(self, labels: dict[int, str], rttm: Path, turns: Path, centroids: Path) -> None:
        """The turns under ``labels`` (cluster -> name) as RTTM (may overlap) and JSON, and one centroid per label (npz)."""
        annotation = self.turns.rename_labels(mapping=labels)
        exclusive = self.exclusive.rename_labels(mapping=labels)
        annotation.uri = exclusive.uri = URI
        with open(rttm, "w") as f:
            annotation.write_rttm(f)
        turns.write_text(json.dumps(turns_json(annotation, exclusive, list(labels.values())), indent=2) + "\n")
        np.savez(centroids, **{label: self.centroids[cluster] for cluster, label in labels.items()})


def turns_json(annotation: Annotation, exclusive: Annotation, speakers: list[str]) -> dict:
    """{"speakers": [...], "turns": [...], "exclusive_turns": [...]}, each turn {speaker, start_s, end_s, overlap}.

    ``turns`` may overlap (two people talking at once); ``exclusive_turns``
    give each moment to one speaker at most, with the same labels. A turn is
    flagged when any other speaker talks during part of it (in ``turns``).
    """
    overlap = annotation.get_overlap()
    return {
        "speakers": speakers,
        "turns": _turn_list(annotation, overlap),
        "exclusive_turns": _turn_list(exclusive, overlap),
    }


def _turn_list(annotation: Annotation, overlap: Timeline) -> list[dict]:
    turns = [
        {
            "speaker": label,
            "start_s": round(segment.start, 3),
            "end_s": round(segment.end, 3),
            "overlap": bool(overlap.crop(segment).duration() > 0),
        }
        for segment, _, label in annotation.itertracks(yield_label=True)
    ]
    return sorted(turns, key=lambda t: (t["start_s"], t["speaker"]))


class Diarizer(Protocol):
    """A loaded backend: diarizes a programme and embeds a reference clip in the same space."""

    def diarize(self, source: MonoReader, speakers: tuple[int, int]) -> Diarization:
        """Turns of ``source`` with (fewest, most) ``speakers``."""

    def embed(self, source: ArraySource, regions: list[SpeechRegion]) -> np.ndarray:
        """One unit-norm embedding (dimension,) of the speech ``regions`` of a clip, comparable with centroids."""


class DiarizationBackend(ABC):
    """A diarization model behind the stage; subclasses implement :meth:`open`.

    ``Params``: the backend's own parameters (keys of the project's
    ``diarize`` section besides the stage's, which it also receives).
    """

    Params: ClassVar[type[BaseModel]] = NoParams

    def code_modules(self, params: BaseModel) -> tuple[str, ...]:
        """Modules whose code defines this backend's result (their imports inside dubprep count too)."""
        return (type(self).__module__,)

    def weights_checksum(self, params: BaseModel) -> str:
        """Checksum of the weights :meth:`open` will load ('' when none); ModelError if they are unusable."""
        return ""

    @abstractmethod
    def open(self, params: BaseModel, device: str, log: logging.Logger, progress: ProgressHook) -> Diarizer:
        """The backend loaded on ``device``."""


DIARIZERS: Registry[DiarizationBackend] = Registry(
    "diarization",
    {
        "builtin": "dubprep.stages.backends.builtin_diarizer:Builtin",
        "pyannote": "dubprep.stages.backends.pyannote_diarizer:Pyannote",
    },
)
