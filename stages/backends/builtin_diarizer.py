"""Offline speaker diarization: Silero VAD + Resemblyzer d-vectors + NME spectral clustering + Viterbi.

Method (every window is read from disk on demand, so memory grows with the
amount of speech only, 1 KB per 0.1 s of speech):

1. Silero VAD finds speech regions (:mod:`dubprep.vad`).
2. Every 0.1 s of speech gets a Resemblyzer embedding of the 1.2 s of audio
   centred on it (:mod:`~dubprep.stages.backends.speaker_embedding`). 1.2 s was the best of 0.6-1.6 s at labelling frames from
   known speaker centroids, on pyannote's sample and on conversations of
   Debian's ARCTIC and Allison voices alike: shorter windows are noisy,
   longer ones blur turn changes.
3. The speaker count and first clusters come from normalised maximum
   eigengap spectral clustering of every ``stride``-th frame (at most
   ``_MAX_CLUSTERED`` of them), which picks its own pruning and count per
   recording (:mod:`~dubprep.stages.backends.speaker_clustering`).
4. Every frame is labelled by Viterbi resegmentation against the clusters'
   centroids, with a cost per change of speaker within a stretch of speech;
   clusters as alike as one speaker's (cosine >= ``speaker_similarity``)
   are merged and a cluster with under ``_MIN_SPEAKER_S`` of speech is
   dropped. Runs of equal labels become turns of a pyannote
   ``Annotation``; a pause under 0.3 s does not end a turn.
"""

from __future__ import annotations

import importlib.resources
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from dubprep.audio_io import SPEECH_RATE, ArraySource, MonoReader, Source
from dubprep.checksums import sha256_file
from dubprep.lazy import lazy_module
from dubprep.progress import ProgressHook
from dubprep.stages.backends.diarization import URI, Diarization, DiarizationBackend
from dubprep.stages.backends.speaker_clustering import Resegmentation, centroids_of, nme_spectral_clustering, resegment
from dubprep.stages.backends.speaker_embedding import DIMENSION, WINDOW_SAMPLES, embed_windows
from dubprep.vad import SpeechRegion, detect_speech

if TYPE_CHECKING:
    from pyannote.core import Annotation

# Imported when a run first makes turns: a project validates without it.
core = lazy_module("pyannote.core")

FRAME_SAMPLES = SPEECH_RATE // 10  # one label per 0.1 s
_MIN_STRIDE = 2  # cluster frames at least 0.2 s apart
_MAX_CLUSTERED = 500  # NME tries 12 prunings, each a full eigensolve: O(n^3)
_MIN_SPEAKER_S = 4.0  # a cluster with less speech is dropped (chosen on the tune conversations: 2.5-4 s tried)
_CHANGE_COST = 0.2  # Viterbi cost of a change of speaker within a stretch, in cosine units (tune: 0.1-0.4 tried)
_BRIDGE_SAMPLES = SPEECH_RATE * 3 // 10  # a pause under 0.3 s is a breath within a line, not a turn's end


@dataclass(frozen=True)
class Frames:
    """Speech frames: centre and span (16 kHz samples) and stretch index, one row each.

    A stretch is speech with no pause of ``_BRIDGE_SAMPLES`` or more: VAD
    regions closer than that share one, so a speaker's turn runs on across
    such a pause, while one that long (or a change of speaker) ends it.
    """

    centres: np.ndarray  # shape: (frames,)
    starts: np.ndarray  # shape: (frames,)
    ends: np.ndarray  # shape: (frames,)
    stretches: np.ndarray  # shape: (frames,)


def speech_frames(regions: list[SpeechRegion]) -> Frames:
    """Cut every region into 0.1 s frames (the last one of a region may be shorter)."""
    starts, ends, owners = [], [], []
    pauses = np.array([later.start - earlier.end for earlier, later in zip(regions, regions[1:])])
    stretches = np.r_[0, np.cumsum(pauses >= _BRIDGE_SAMPLES)].astype(int)  # shape: (regions,)
    for region, stretch in zip(regions, stretches):
        edges = np.append(np.arange(region.start, region.end, FRAME_SAMPLES), region.end)
        starts.append(edges[:-1])
        ends.append(edges[1:])
        owners.append(np.full(len(edges) - 1, stretch))
    start, end = np.concatenate(starts), np.concatenate(ends)
    return Frames((start + end) // 2, start, end, np.concatenate(owners))


def embed_speech(source: Source, regions: list[SpeechRegion], device: str, progress: ProgressHook) -> np.ndarray:
    """One unit-norm embedding of all of ``regions``: the mean of their frames' embeddings; shape: (256,).

    Built like a cluster centroid, so it compares with the centroids of
    :func:`diarize_regions` (e.g. a reference clip of a known actor).
    """
    embeddings = embed_windows(source, speech_frames(regions).centres, device, progress)
    return centroids_of(embeddings, np.zeros(len(embeddings), int), 1)[0]


def _runs(labels: np.ndarray, stretches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last frame of each run of equal labels within a stretch; shapes: (runs,)."""
    cut = np.flatnonzero((np.diff(labels) != 0) | (np.diff(stretches) != 0)) + 1
    return np.r_[0, cut], np.r_[cut, len(labels)]


def to_annotation(frames: Frames, labels: np.ndarray, uri: str) -> Annotation:
    """Runs of equal labels within a stretch as turns (seconds)."""
    annotation = core.Annotation(uri=uri)
    for first, last in zip(*_runs(labels, frames.stretches)):
        segment = core.Segment(frames.starts[first] / SPEECH_RATE, frames.ends[last - 1] / SPEECH_RATE)
        annotation[segment] = int(labels[first])
    return annotation


def label_frames(
    embeddings: np.ndarray, frames: Frames, speakers: tuple[int, int], similarity: float
) -> tuple[np.ndarray, np.ndarray]:
    """Speaker label of every frame and the speakers' centroids, ``speakers`` = (fewest, most).

    No more speakers are found than there is speech for, ``_MIN_SPEAKER_S`` each.
    """
    min_speaker_frames = round(_MIN_SPEAKER_S * SPEECH_RATE / FRAME_SAMPLES)
    most = max(1, len(embeddings) // min_speaker_frames)
    low, high = min(speakers[0], most), min(speakers[1], most)
    stride = max(_MIN_STRIDE, -(-len(embeddings) // _MAX_CLUSTERED))
    centres = frames.centres[::stride]
    apart = np.abs(centres[:, None] - centres[None, :]) >= WINDOW_SAMPLES  # shape: (clustered, clustered)
    labels = nme_spectral_clustering(embeddings[::stride], apart, low, high)
    initial = centroids_of(embeddings[::stride], labels, int(labels.max()) + 1)
    free_change = np.r_[True, np.diff(frames.stretches) != 0]  # a pause may end one speaker's turn at no cost
    return resegment(embeddings, initial, free_change, low, Resegmentation(_CHANGE_COST, similarity, min_speaker_frames))


def diarize_regions(
    source: MonoReader,
    regions: list[SpeechRegion],
    speakers: tuple[int, int],
    similarity: float,
    device: str,
    log: logging.Logger,
    progress: ProgressHook,
) -> Diarization:
    """Speaker turns over ``regions`` of ``source`` with ``speakers`` = (fewest, most); models on ``device``."""
    frames = speech_frames(regions)
    embeddings = embed_windows(source, frames.centres, device, progress)
    labels, centroids = label_frames(embeddings, frames, speakers, similarity)
    if len(centroids) < speakers[0]:
        log.warning("heard %d speaker(s), fewer than the %d asked for", len(centroids), speakers[0])
    # One label per frame: the turns are their own exclusive turns.
    turns = to_annotation(frames, labels, URI)
    return Diarization(turns, turns, centroids)


class BuiltinParams(BaseModel):
    """Two voice clusters whose centroids have a cosine similarity of
    ``speaker_similarity`` or more are one speaker: lower it if one actor is
    split in two, raise it if two actors are merged. No tune conversation
    needed a merge; the most alike two real speakers there were 0.889.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    speaker_similarity: float = Field(default=0.95, gt=0.0, lt=1.0)


class Builtin(DiarizationBackend):
    """Silero VAD, Resemblyzer embeddings and clustering: offline, weights from wheels."""

    Params = BuiltinParams

    def weights_checksum(self, params: BaseModel) -> str:
        return sha256_file(Path(str(importlib.resources.files("resemblyzer") / "pretrained.pt")))

    def open(self, params: BaseModel, device: str, log: logging.Logger, progress: ProgressHook) -> BuiltinDiarizer:
        return BuiltinDiarizer(params, device, log, progress)


@dataclass(frozen=True)
class BuiltinDiarizer:
    """The builtin backend with a project's settings (``params`` has the diarize stage's keys too)."""

    params: BaseModel
    device: str
    log: logging.Logger
    progress: ProgressHook

    def diarize(self, source: MonoReader, speakers: tuple[int, int]) -> Diarization:
        regions = detect_speech(source, self.params.vad_threshold, self.progress)
        if not regions:
            return Diarization.empty(DIMENSION)
        return diarize_regions(
            source, regions, speakers, self.params.speaker_similarity, self.device, self.log, self.progress
        )

    def embed(self, source: ArraySource, regions: list[SpeechRegion]) -> np.ndarray:
        return embed_speech(source, regions, self.device, self.progress)
