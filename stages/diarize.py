"""Diarize: who speaks when, on the dialogue stem.

The dialogue stem is read as mono 16 kHz without its LFE
(:class:`~dubprep.audio_io.MonoReader`) and diarized by the backend the
project names (:data:`~dubprep.stages.backends.diarization.DIARIZERS`).
Speakers
with a reference clip are named after it, the clip embedded by the
backend's own speaker model; the others are SPK01, SPK02, ... in order of
first appearance (:mod:`dubprep.stages.backends.speaker_names`). Turns are
written as RTTM and JSON with an overlap flag, and each speaker's unit-norm
centroid embedding as ``speakers.npz``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated

import soundfile as sf
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from dubprep import vad
from dubprep.media import MediaInfo
from dubprep.params import RelativeToProject
from dubprep.progress import NullProgress
from dubprep.stage import Stage, StageContext, register
from dubprep.stages.backends import speaker_names
from dubprep.stages.backends.diarization import DIARIZERS
from dubprep.stems import DX, WorkStems


def _speaker_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("a speaker name must not be empty")
    if re.fullmatch(r"SPK[0-9]+", name, flags=re.IGNORECASE):
        raise ValueError(f"{name} is kept for unnamed speakers; choose another name")
    return name


def _existing_clip(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"reference clip not found: {path}; fix the path (relative to the project file)")
    try:
        sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        raise ValueError(f"reference clip {path} is not audio soundfile reads; give a WAV, FLAC, AIFF or OGG file") from None
    return path


SpeakerName = Annotated[str, AfterValidator(_speaker_name)]
ClipPath = Annotated[Path, AfterValidator(_existing_clip)]


class DiarizeParams(BaseModel):
    """Backend, speaker count, speaker names and the settings that change results.

    ``backend``: a name in :data:`~dubprep.stages.backends.diarization.DIARIZERS`,
    whose own keys (its ``Params``) sit beside these. ``num_speakers`` fixes
    the count; otherwise it is found within [``min_speakers``, ``max_speakers``].
    ``vad_threshold`` is the voice activity detector's speech probability
    cut (raise it for noisy stems), for a backend that runs it and for the
    reference clips.
    ``speakers`` maps an actor's name to a reference clip of their voice
    (relative to the project file); a speaker takes the name when the
    clip's embedding has a cosine similarity of ``reference_similarity`` or
    more with its centroid. The default suits the default backend; another
    backend's embedding model has its own scale (every clip's similarity is
    logged).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = DIARIZERS.default
    num_speakers: int | None = Field(default=None, ge=1, le=50)
    min_speakers: int = Field(default=1, ge=1, le=50)
    max_speakers: int = Field(default=10, ge=1, le=50)
    vad_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    speakers: Annotated[dict[SpeakerName, ClipPath], RelativeToProject()] = Field(default_factory=dict)
    reference_similarity: float = Field(default=0.88, gt=0.0, lt=1.0)

    @field_validator("backend")
    @classmethod
    def _registered(cls, value: str) -> str:
        return DIARIZERS.check(value)

    @model_validator(mode="after")
    def _consistent(self) -> DiarizeParams:
        if self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers {self.min_speakers} is above max_speakers {self.max_speakers}")
        folded = [name.upper() for name in self.speakers]
        clashes = sorted({name for name in folded if folded.count(name) > 1})
        if clashes:
            raise ValueError(f"speaker names differ only in case: {', '.join(clashes)}; stems would share a name")
        return self

    @property
    def speaker_range(self) -> tuple[int, int]:
        """(fewest, most) speakers to find."""
        if self.num_speakers is not None:
            return self.num_speakers, self.num_speakers
        return self.min_speakers, self.max_speakers


@register
class DiarizeStage(Stage):
    name = "diarize"
    position = 30
    inputs = (DX, "media.json")
    outputs = ("turns.rttm", "turns.json", "speakers.npz")
    Params = DiarizeParams
    backends = DIARIZERS

    def model_checksum(self, params: DiarizeParams) -> str:
        """The backend's weights, and the voice activity detector's, which trims the reference clips."""
        return f"{super().model_checksum(params)}+vad:{vad.weights_checksum()}"

    def check(self, params: DiarizeParams) -> None:
        """Every reference clip holds speech: found before separation, not hours after."""
        speaker_names.load_clips(params.speakers, params.vad_threshold, NullProgress())

    def run(self, ctx: StageContext) -> None:
        params: DiarizeParams = ctx.params
        cpu_start_s = time.process_time()
        media = MediaInfo.load(ctx.inputs["media.json"])
        source = WorkStems.of(ctx.inputs).mono("DX", media.channel_names)
        clips = speaker_names.load_clips(params.speakers, params.vad_threshold, ctx.progress)
        diarizer = self.backend(params).open(params, ctx.device, ctx.log, ctx.progress)
        result = diarizer.diarize(source, params.speaker_range)
        if not result.turns:
            ctx.log.warning("diarize: no speech found in %s; writing no speaker turns", ctx.inputs[DX])
        names = speaker_names.match_names(result.centroids, clips, diarizer.embed, params.reference_similarity, ctx.log)
        labels = speaker_names.speaker_labels(result.turns, names)
        result.write(labels, ctx.output("turns.rttm"), ctx.output("turns.json"), ctx.output("speakers.npz"))
        # CPU seconds of all this process's threads: less disturbed than wall time by other work on the machine.
        cpu_s = time.process_time() - cpu_start_s
        ctx.log.info("diarize: %d speakers, %d turns, %.1f CPU s", len(labels), len(result.turns), cpu_s)
