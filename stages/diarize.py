"""Diarize: who speaks when, on the dialogue stem.

Two backends. ``builtin`` runs offline with weights that ship in wheels:
Silero VAD (:mod:`dubprep.stages.backends.vad`) and Resemblyzer embeddings
clustered with an automatic speaker count
(:mod:`dubprep.stages.backends.builtin_diarizer`). ``pyannote`` runs a
pyannote.audio 4.x pipeline from a local folder or Hugging Face
(:mod:`dubprep.stages.backends.pyannote_diarizer`). Speakers with a
reference clip are named after it, the others are SPK01, SPK02, ... in
order of first appearance (:mod:`dubprep.stages.backends.speaker_names`).
Turns are written as RTTM and JSON with an overlap flag, and each
speaker's unit-norm centroid embedding as ``speakers.npz``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import soundfile as sf
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from dubprep.cache import sha256_file
from dubprep.lazy import lazy_module
from dubprep.media import MediaInfo
from dubprep.progress import NullProgress
from dubprep.stage import Stage, StageContext

if TYPE_CHECKING:
    from pyannote.core import Annotation, Timeline

    from dubprep.stages.backends.builtin_diarizer import Diarization
    from dubprep.stages.backends.pyannote_diarizer import PyannoteDiarization
    from dubprep.stages.backends.speaker_names import Embedder

    Turns = Diarization | PyannoteDiarization

# Loaded when a run first uses them: the parameters below validate without torch.
builtin_diarizer, pyannote_diarizer, speaker_names, vad = (
    lazy_module(f"dubprep.stages.backends.{name}") for name in ("builtin_diarizer", "pyannote_diarizer", "speaker_names", "vad")
)

URI = "programme"


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
    """Backend, speaker count control, speaker names and the settings that change results.

    ``num_speakers`` fixes the count; otherwise it is found within
    [``min_speakers``, ``max_speakers``]. ``pyannote_pipeline`` (backend
    ``pyannote`` only, and required there) is a pipeline folder (relative to
    the project file) or a Hugging Face id. ``vad_threshold`` is Silero's
    speech probability cut (raise it for noisy stems); two builtin voice
    clusters whose centroids have a cosine similarity of
    ``speaker_similarity`` or more are one speaker: lower it if one actor is
    split in two, raise it if two actors are merged. ``speakers`` maps an
    actor's name to a reference clip of their voice (relative to the project
    file); a speaker takes the name when the clip's embedding has a cosine
    similarity of ``reference_similarity`` or more with its centroid. The
    default suits the builtin backend; another pipeline's embedding model
    has its own scale (every clip's similarity is logged).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["builtin", "pyannote"] = "builtin"
    pyannote_pipeline: str | None = None
    num_speakers: int | None = Field(default=None, ge=1, le=50)
    min_speakers: int = Field(default=1, ge=1, le=50)
    max_speakers: int = Field(default=10, ge=1, le=50)
    vad_threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    speaker_similarity: float = Field(default=0.9, gt=0.0, lt=1.0)
    speakers: dict[SpeakerName, ClipPath] = Field(default_factory=dict)
    reference_similarity: float = Field(default=0.88, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> DiarizeParams:
        if self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers {self.min_speakers} is above max_speakers {self.max_speakers}")
        if self.backend == "pyannote" and not self.pyannote_pipeline:
            raise ValueError(
                "backend pyannote needs pyannote_pipeline: a pipeline folder holding config.yaml and its "
                "models, or a Hugging Face id such as pyannote/speaker-diarization-community-1"
            )
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


class DiarizeStage(Stage):
    name = "diarize"
    inputs = ("DX.wav", "media.json")
    outputs = ("turns.rttm", "turns.json", "speakers.npz")
    Params = DiarizeParams

    def code_modules(self, params: DiarizeParams) -> tuple[str, ...]:
        backend = builtin_diarizer if params.backend == "builtin" else pyannote_diarizer
        return (__name__, vad.__name__, speaker_names.__name__, backend.__name__)

    def model_checksum(self, params: DiarizeParams) -> str:
        """Backend weights, Silero VAD (builtin, reference clips) and every reference clip."""
        digest = hashlib.sha256()
        digest.update((importlib.resources.files("silero_vad.data") / "silero_vad.jit").read_bytes())
        if params.backend == "builtin":
            digest.update((importlib.resources.files("resemblyzer") / "pretrained.pt").read_bytes())
        else:
            digest.update(pyannote_diarizer.pipeline_checksum(params.pyannote_pipeline).encode())
        for name, clip in sorted(params.speakers.items()):
            digest.update(f"{name}\0{sha256_file(clip)}".encode())
        return digest.hexdigest()

    def check(self, params: DiarizeParams) -> None:
        """Every reference clip holds speech (Silero VAD): found before separation, not hours after."""
        speaker_names.load_clips(params.speakers, params.vad_threshold, NullProgress())

    def run(self, ctx: StageContext) -> None:
        params: DiarizeParams = ctx.params
        media = MediaInfo.load(ctx.inputs["media.json"])
        source = vad.MonoSource.open(ctx.inputs["DX.wav"], media.channel_names)
        clips = speaker_names.load_clips(params.speakers, params.vad_threshold, ctx.progress)
        turns, embed = BACKENDS[params.backend](ctx, source)
        if not turns.annotation:
            ctx.log.warning("diarize: no speech found in %s; writing no speaker turns", ctx.inputs["DX.wav"])
        names = speaker_names.match_names(turns.centroids, clips, embed, params.reference_similarity, ctx.log)
        labels = speaker_names.speaker_labels(turns.annotation, names)
        write_outputs(ctx, turns, labels)
        ctx.log.info("diarize: %d speakers, %d turns", len(labels), len(turns.annotation))


def _builtin(ctx: StageContext, source: vad.MonoSource) -> tuple[Turns, Embedder]:
    """Silero VAD, Resemblyzer embeddings and clustering; the embedder is Resemblyzer's."""
    params: DiarizeParams = ctx.params
    regions = vad.detect_speech(source, params.vad_threshold, ctx.progress)
    embed = functools.partial(builtin_diarizer.embed_speech, device=ctx.device, progress=ctx.progress)
    if not regions:
        from pyannote.core import Annotation

        return builtin_diarizer.Diarization(Annotation(uri=URI), np.zeros((0, 256), np.float32)), embed
    turns = builtin_diarizer.diarize_regions(
        source, regions, params.speaker_range, params.speaker_similarity, ctx.device, ctx.log, ctx.progress
    )
    return turns, embed


def _pyannote(ctx: StageContext, source: vad.MonoSource) -> tuple[Turns, Embedder]:
    """The pyannote pipeline; the embedder is the pipeline's own embedding model."""
    params: DiarizeParams = ctx.params
    pipeline = pyannote_diarizer.load_pipeline(params.pyannote_pipeline, ctx.device)
    turns = pyannote_diarizer.diarize(
        pipeline, source, params.num_speakers, params.min_speakers, params.max_speakers, ctx.progress, ctx.log
    )
    heard, fewest = len(turns.annotation.labels()), params.speaker_range[0]
    if turns.annotation and heard < fewest:
        ctx.log.warning("heard %d speaker(s), fewer than the %d asked for", heard, fewest)
    return turns, functools.partial(pyannote_diarizer.embed_speech, pipeline)


BACKENDS = {"builtin": _builtin, "pyannote": _pyannote}


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


def write_outputs(ctx: StageContext, turns: Turns, labels: dict[int, str]) -> None:
    """turns.rttm (turns, may overlap), turns.json and speakers.npz (one centroid per label)."""
    annotation = turns.annotation.rename_labels(mapping=labels)
    exclusive = turns.exclusive.rename_labels(mapping=labels)
    annotation.uri = exclusive.uri = URI
    with open(ctx.output("turns.rttm"), "w") as f:
        annotation.write_rttm(f)
    document = turns_json(annotation, exclusive, list(labels.values()))
    ctx.output("turns.json").write_text(json.dumps(document, indent=2) + "\n")
    np.savez(ctx.output("speakers.npz"), **{label: turns.centroids[cluster] for cluster, label in labels.items()})
