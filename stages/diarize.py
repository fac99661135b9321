"""Diarize: who speaks when, on the dialogue stem.

The ``builtin`` backend (:mod:`dubprep.stages.backends.builtin_diarizer`)
runs offline with weights that ship in wheels. Labels are SPK01, SPK02, ...
in order of first appearance; turns are written as RTTM and JSON with an
overlap flag, and each speaker's centroid embedding as ``speakers.npz``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from typing import Literal

import numpy as np
from pyannote.core import Annotation
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dubprep.media import MediaInfo
from dubprep.stage import Stage, StageContext
from dubprep.stages.backends import builtin_diarizer


class DiarizeParams(BaseModel):
    """Speaker count control and the backend's few settings.

    ``num_speakers`` fixes the count; otherwise it lies in [min, max] and is
    chosen by ``distance_threshold`` (cosine distance at which clusters stop
    merging). ``vad_threshold`` is Silero's speech probability cut.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["builtin"] = "builtin"
    num_speakers: int | None = Field(default=None, ge=1, le=50)
    min_speakers: int = Field(default=1, ge=1, le=50)
    max_speakers: int = Field(default=10, ge=1, le=50)
    vad_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    distance_threshold: float = Field(default=0.3, gt=0.0, lt=2.0)

    @model_validator(mode="after")
    def _ordered(self) -> DiarizeParams:
        if self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers {self.min_speakers} is above max_speakers {self.max_speakers}")
        return self


class DiarizeStage(Stage):
    name = "diarize"
    inputs = ("DX.wav", "media.json")
    outputs = ("turns.rttm", "turns.json", "speakers.npz")
    Params = DiarizeParams

    def code_modules(self, params: DiarizeParams) -> tuple[str, ...]:
        return (__name__, builtin_diarizer.__name__)

    def model_checksum(self, params: DiarizeParams) -> str:
        digest = hashlib.sha256()
        for package, name in (("silero_vad.data", "silero_vad.jit"), ("resemblyzer", "pretrained.pt")):
            digest.update((importlib.resources.files(package) / name).read_bytes())
        return digest.hexdigest()

    def run(self, ctx: StageContext) -> None:
        params: DiarizeParams = ctx.params
        settings = builtin_diarizer.Settings(
            vad_threshold=params.vad_threshold, min_speech_s=0.25, min_silence_s=0.3, hop_s=0.25,
            distance_threshold=params.distance_threshold, num_speakers=params.num_speakers,
            min_speakers=params.min_speakers, max_speakers=params.max_speakers,
        )
        media = MediaInfo.load(ctx.inputs["media.json"])
        annotation, centroids = builtin_diarizer.diarize(ctx.inputs["DX.wav"], media, settings)
        annotation, names = label_by_appearance(annotation)
        if not names:
            ctx.log.warning("diarize: no speech found in %s; no speaker turns", ctx.inputs["DX.wav"])
        if params.num_speakers and len(names) < params.num_speakers:
            ctx.log.warning("diarize: num_speakers %d asked, %d heard", params.num_speakers, len(names))
        with open(ctx.output("turns.rttm"), "w") as f:
            annotation.write_rttm(f)
        ctx.output("turns.json").write_text(json.dumps(turns_json(annotation, list(names.values())), indent=2) + "\n")
        np.savez(ctx.output("speakers.npz"), **{names[k]: v for k, v in centroids.items() if k in names})
        ctx.log.info("diarize: %d speakers, %d turns", len(names), len(annotation))


def label_by_appearance(annotation: Annotation) -> tuple[Annotation, dict[int, str]]:
    """Rename cluster labels SPK01, SPK02, ... by first appearance."""
    names: dict[int, str] = {}
    for segment, _, label in annotation.itertracks(yield_label=True):
        names.setdefault(label, f"SPK{len(names) + 1:02d}")
    return annotation.rename_labels(mapping=names), names


def turns_json(annotation: Annotation, speakers: list[str]) -> dict:
    """{"speakers": [...], "turns": [{speaker, start_s, end_s, overlap}]} sorted by start."""
    overlap = annotation.get_overlap()
    turns = [
        {"speaker": label, "start_s": round(segment.start, 3), "end_s": round(segment.end, 3),
         "overlap": bool(overlap.crop(segment).duration() > 0) if overlap else False}
        for segment, _, label in annotation.itertracks(yield_label=True)
    ]
    return {"speakers": speakers, "turns": sorted(turns, key=lambda t: (t["start_s"], t["speaker"]))}
