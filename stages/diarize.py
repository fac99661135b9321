"""Diarize: who speaks when, on the dialogue stem.

The ``builtin`` backend runs offline with weights that ship in wheels:
Silero VAD (:mod:`dubprep.stages.backends.vad`) and Resemblyzer embeddings
clustered with an automatic speaker count
(:mod:`dubprep.stages.backends.builtin_diarizer`). Labels are SPK01,
SPK02, ... in order of first appearance; turns are written as RTTM and JSON
with an overlap flag, and each speaker's centroid embedding as
``speakers.npz``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from typing import Literal

import numpy as np
from pyannote.core import Annotation, Timeline
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dubprep.media import MediaInfo
from dubprep.stage import Stage, StageContext
from dubprep.stages.backends import builtin_diarizer, vad

URI = "programme"


class DiarizeParams(BaseModel):
    """Speaker count control and the two settings that change results.

    ``num_speakers`` fixes the count; otherwise it is found within
    [``min_speakers``, ``max_speakers``]. ``vad_threshold`` is Silero's
    speech probability cut (raise it for noisy stems). Two voice clusters
    whose centroids have a cosine similarity of ``speaker_similarity`` or
    more are one speaker: lower it if one actor is split in two, raise it
    if two actors are merged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["builtin"] = "builtin"
    num_speakers: int | None = Field(default=None, ge=1, le=50)
    min_speakers: int = Field(default=1, ge=1, le=50)
    max_speakers: int = Field(default=10, ge=1, le=50)
    vad_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    speaker_similarity: float = Field(default=0.9, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> DiarizeParams:
        if self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers {self.min_speakers} is above max_speakers {self.max_speakers}")
        return self

    @property
    def speaker_range(self) -> tuple[int, int]:
        """(fewest, most) speakers to find."""
        if self.num_speakers is not None:
            return self.num_speakers, self.num_speakers
        return self.min_speakers, self.max_speakers


class DiarizeStage(Stage):
    name = "diarize"
    inputs = ("DX.wav", "media.json")
    outputs = ("turns.rttm", "turns.json", "speakers.npz")
    Params = DiarizeParams

    def code_modules(self, params: DiarizeParams) -> tuple[str, ...]:
        return (__name__, vad.__name__, builtin_diarizer.__name__)

    def model_checksum(self, params: DiarizeParams) -> str:
        digest = hashlib.sha256()
        for package, name in (("silero_vad.data", "silero_vad.jit"), ("resemblyzer", "pretrained.pt")):
            digest.update((importlib.resources.files(package) / name).read_bytes())
        return digest.hexdigest()

    def run(self, ctx: StageContext) -> None:
        params: DiarizeParams = ctx.params
        media = MediaInfo.load(ctx.inputs["media.json"])
        source = vad.MonoSource.open(ctx.inputs["DX.wav"], media.channel_names)
        regions = vad.detect_speech(source, params.vad_threshold, ctx.progress)
        if regions:
            result = builtin_diarizer.diarize_regions(
                source, regions, params.speaker_range, params.speaker_similarity, ctx.device, ctx.log, ctx.progress
            )
            annotation, centroids = result.annotation, result.centroids
        else:
            ctx.log.warning("diarize: no speech found in %s; writing no speaker turns", ctx.inputs["DX.wav"])
            annotation, centroids = Annotation(uri=URI), np.zeros((0, 256), np.float32)
        annotation, names = label_by_appearance(annotation)
        write_outputs(ctx, annotation, names, centroids)
        ctx.log.info("diarize: %d speakers, %d turns", len(names), len(annotation))


def label_by_appearance(annotation: Annotation) -> tuple[Annotation, dict[int, str]]:
    """Rename cluster indices SPK01, SPK02, ... by first appearance."""
    names: dict[int, str] = {}
    for _, _, label in annotation.itertracks(yield_label=True):
        names.setdefault(label, f"SPK{len(names) + 1:02d}")
    renamed = annotation.rename_labels(mapping=names)
    renamed.uri = URI
    return renamed, names


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


def write_outputs(ctx: StageContext, annotation: Annotation, names: dict[int, str], centroids: np.ndarray) -> None:
    """turns.rttm, turns.json and speakers.npz (one 256-d centroid per label)."""
    with open(ctx.output("turns.rttm"), "w") as f:
        annotation.write_rttm(f)
    speakers = list(names.values())
    # The builtin backend gives one speaker per moment: its turns are already exclusive.
    ctx.output("turns.json").write_text(json.dumps(turns_json(annotation, annotation, speakers), indent=2) + "\n")
    np.savez(ctx.output("speakers.npz"), **{names[index]: centroids[index] for index in names})
