"""Offline speaker diarization: Silero VAD + Resemblyzer d-vectors + clustering.

Method (every window is read from disk on demand, so memory grows with the
amount of speech only, 1 KB per 0.1 s of speech):

1. Silero VAD finds speech regions (:mod:`dubprep.vad`).
2. Every 0.1 s of speech gets a Resemblyzer embedding of the 1.2 s of audio
   centred on it (:mod:`~dubprep.stages.backends.speaker_embedding`). 1.2 s was the best of 0.6-1.6 s at labelling frames from
   known speaker centroids, on pyannote's sample and on conversations of
   Debian's ARCTIC and Allison voices alike: shorter windows are noisy,
   longer ones blur turn changes.
3. Clustering runs on every 4th frame (0.4 s apart, at most
   ``_MAX_CLUSTERED`` of them): spectral clustering over-segments (cosine
   affinity, with pairs of windows that share audio masked out since shared
   samples make them alike whatever the speaker; pruning level chosen by
   the normalised maximum eigengap of Park et al. 2019), then clusters
   whose centroids are as alike as one speaker's are (cosine
   >= ``speaker_similarity``) are merged.
4. Every frame goes to its nearest centroid (k-means refinements). Centroids
   that refining makes as alike as one speaker's are merged; then a
   centroid whose frames are seldom heard alone (runs under 2 s that abut
   another speaker's) is dropped: its windows straddle turn changes. Runs
   of equal labels become turns of a pyannote ``Annotation``; a pause under
   0.3 s does not end a turn.

Measured same-speaker centroid similarity (4 s of speech each) is 0.91 or
more and different-speaker similarity 0.86 or less on those recordings;
0.9 sits between them.
"""

from __future__ import annotations

import importlib.resources
import itertools
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
from dubprep.stages.backends.speaker_embedding import DIMENSION, WINDOW_SAMPLES, embed_windows
from dubprep.vad import SpeechRegion, detect_speech

if TYPE_CHECKING:
    from pyannote.core import Annotation

# Imported when a run first clusters: a project validates without them.
cluster_lib, linalg, core = (lazy_module(n) for n in ("sklearn.cluster", "scipy.linalg", "pyannote.core"))

FRAME_SAMPLES = SPEECH_RATE // 10  # one label per 0.1 s
_CLUSTER_STRIDE = 4  # cluster frames 0.4 s apart: three windows either side overlap
_MAX_CLUSTERED = 1500  # spectral clustering is O(n^3): ~1 s per eigensolve at 1500
_MIN_CLUSTER_S = 3.0  # a centroid from less speech is too noisy to compare
_MAX_INITIAL_CLUSTERS = 20
_SPEAKER_RUN_FRAMES = 20  # 2 s: a run this long is a speaker talking, not windows straddling a turn change
_ALONE_SHARE = 0.25  # a cluster heard alone for less of its speech than this is no speaker
_BRIDGE_SAMPLES = SPEECH_RATE * 3 // 10  # a pause under 0.3 s is a breath within a line, not a turn's end
_CONNECTED = 1e-6  # second Laplacian eigenvalue above this: the pruned graph is connected


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
    return _centroids(embeddings, np.zeros(len(embeddings), int), 1)[0]


def _centroids(embeddings: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Unit-norm mean embedding of each label 0..count-1; shape: (count, 256)."""
    members = np.zeros((count, len(labels)))
    members[labels, np.arange(len(labels))] = 1.0
    sums = members @ embeddings  # shape: (count, 256)
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def _spectral_vectors(affinity: np.ndarray, count: int) -> np.ndarray:
    """First ``count`` Laplacian eigenvectors of the pruned affinity; shape: (n, count).

    Each row keeps its p strongest links; p is the one minimising
    (p / n) / (largest normalised eigengap), Park et al.'s NME criterion, so
    the pruning adapts to each recording instead of being a constant. Only
    p that leave the graph connected compete: a disconnected graph's first
    eigenvectors pick out its loose pieces (a few windows that happen to
    like each other), not speakers. The largest p, tried first, is kept
    if no p leaves the graph connected.
    """
    n = len(affinity)
    order = np.argsort(-affinity, axis=1)
    best_ratio, best_laplacian = np.inf, None
    for p in np.unique(np.geomspace(2, max(2, n // 4), 12).astype(int))[::-1]:
        pruned = np.zeros_like(affinity)
        np.put_along_axis(pruned, order[:, :p], 1.0, axis=1)
        pruned = (pruned + pruned.T) / 2
        laplacian = np.diag(pruned.sum(axis=1)) - pruned
        values = linalg.eigh(laplacian, eigvals_only=True, subset_by_index=[0, count])
        ratio = (p / n) / (np.diff(values).max() / (values[-1] + 1e-10) + 1e-10)
        if best_laplacian is None or (values[1] > _CONNECTED and ratio < best_ratio):
            best_ratio, best_laplacian = ratio, laplacian
    _, vectors = linalg.eigh(best_laplacian, subset_by_index=[0, count - 1])
    return vectors


def _over_cluster(embeddings: np.ndarray, centres: np.ndarray, min_size: int) -> np.ndarray:
    """Spectral clusters of at least ``min_size`` members, more than there are speakers.

    ``centres`` (16 kHz samples) tell which windows share audio.
    """
    count = min(_MAX_INITIAL_CLUSTERS, len(embeddings) // min_size)
    if count < 2:
        return np.zeros(len(embeddings), int)
    affinity = embeddings @ embeddings.T
    share_audio = np.abs(centres[:, None] - centres[None, :]) < WINDOW_SAMPLES
    affinity[share_audio] = 0.0
    vectors = _spectral_vectors(affinity, count)
    labels = cluster_lib.KMeans(count, n_init=10, random_state=0).fit_predict(vectors)
    sizes = np.bincount(labels, minlength=count)
    large = np.flatnonzero(sizes >= min_size)
    if len(large) == 0:
        return np.zeros(len(embeddings), int)
    centroids = _centroids(embeddings, labels, count)
    for small in np.flatnonzero(sizes < min_size):
        labels[labels == small] = large[np.argmax(centroids[large] @ centroids[small])]
    return np.unique(labels, return_inverse=True)[1]


def _mixture(centroids: np.ndarray, similarity: float, candidates: np.ndarray) -> tuple[int, int, int] | None:
    """(c, a, b) when centroid c is as close to the mean of a and b as one speaker is to itself.

    Only the ``candidates`` (indices) may be c.
    """
    best, found = similarity, None
    for c in candidates:
        others = [o for o in range(len(centroids)) if o != c]
        for a, b in itertools.combinations(others, 2):
            middle = centroids[a] + centroids[b]
            score = float(centroids[c] @ middle / np.linalg.norm(middle))
            if score >= best:
                best, found = score, (c, a, b)
    return found


def _merge(embeddings: np.ndarray, labels: np.ndarray, similarity: float, low: int, high: int) -> np.ndarray:
    """Merge the most alike clusters while alike (or above ``high``), down to ``low``."""
    labels = labels.copy()
    while labels.max() + 1 > low:
        centroids = _centroids(embeddings, labels, labels.max() + 1)
        alike = centroids @ centroids.T
        np.fill_diagonal(alike, -1.0)
        a, b = np.unravel_index(np.argmax(alike), alike.shape)
        if alike[a, b] < similarity and len(centroids) <= high:
            break
        labels[labels == b] = a
        labels = np.unique(labels, return_inverse=True)[1]
    return labels


def cluster(
    embeddings: np.ndarray, centres: np.ndarray, similarity: float, low: int, high: int
) -> np.ndarray:
    """Speaker index of each clustered window; ``low``..``high`` speakers when possible.

    ``centres`` are the windows' centres (16 kHz samples). With
    ``low == high`` (a given speaker count) the merging ignores
    ``similarity`` and stops at that count.
    """
    spacing = np.median(np.diff(centres)) if len(centres) > 1 else FRAME_SAMPLES
    min_size = max(2, round(_MIN_CLUSTER_S * SPEECH_RATE / spacing))
    labels = _over_cluster(embeddings, centres, min_size)
    return _merge(embeddings, labels, -np.inf if low == high else similarity, low, high)


def _refine(embeddings: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Three k-means steps over all frames (empty clusters dropped); labels and centroids."""
    for _ in range(3):
        present, labels = np.unique(np.argmax(embeddings @ centroids.T, axis=1), return_inverse=True)
        centroids = _centroids(embeddings, labels, len(present))
    return np.argmax(embeddings @ centroids.T, axis=1), centroids


def assign(
    embeddings: np.ndarray, centroids: np.ndarray, stretches: np.ndarray, similarity: float, low: int
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centroid label of every frame, and the refined centroids.

    Refining over all frames can make two centroids as alike as one
    speaker's (>= ``similarity``): they are merged. Once no pair is, a
    centroid whose frames straddle turn changes (:func:`_straddler`) is
    dropped. Either way the frames are assigned again; never below ``low``
    clusters. ``stretches`` is each frame's stretch (:class:`Frames`).
    """
    while True:
        labels, centroids = _refine(embeddings, centroids)
        alike = centroids @ centroids.T
        np.fill_diagonal(alike, -1.0)
        if len(centroids) <= low:
            return labels, centroids
        if alike.max() >= similarity:
            a, b = np.unravel_index(np.argmax(alike), alike.shape)
            labels[labels == b] = a
            labels = np.unique(labels, return_inverse=True)[1]
            centroids = _centroids(embeddings, labels, int(labels.max()) + 1)
            continue
        straddler = _straddler(centroids, labels, stretches, similarity)
        if straddler is None:
            return labels, centroids
        centroids = np.delete(centroids, straddler, axis=0)


def _straddler(centroids: np.ndarray, labels: np.ndarray, stretches: np.ndarray, similarity: float) -> int | None:
    """A label whose windows straddle other speakers' turn changes, if any.

    That is one heard alone (:func:`_heard_alone`) for under
    ``_ALONE_SHARE`` of its frames, or for under half of them while its
    centroid is as alike to the mean of two others as one speaker is to
    itself: its windows hear those two at once.
    """
    alone = _heard_alone(labels, stretches, len(centroids))
    if alone.min() < _ALONE_SHARE:
        return int(np.argmin(alone))
    mixture = _mixture(centroids, similarity, np.flatnonzero(alone < 0.5))
    return None if mixture is None else mixture[0]


def _heard_alone(labels: np.ndarray, stretches: np.ndarray, count: int) -> np.ndarray:
    """Per label 0..count-1: share of its frames in runs of ``_SPEAKER_RUN_FRAMES`` or more, or whole stretches.

    A window straddles a turn change for at most its own 1.2 s, so a
    cluster of straddling windows comes in short runs up against other
    speakers' runs, while a speaker holds the label for whole sentences,
    or says a short line between pauses. Without this test, music left in
    the dialogue stem made one speaker's centroid look like the mean of two
    others and dropped a real speaker; and it left a sixth "speaker" of
    40 s of all five voices in 0.4-s runs, only one of 118 heard alone
    (benchmarks/diarization.py, 15 minutes of five voices over music and
    effects). Shape: (count,).
    """
    first, last = _runs(labels, stretches)
    lengths = last - first
    owner = labels[first]
    whole = lengths == np.bincount(stretches)[stretches[first]]  # runs never cross stretches
    alone = (lengths >= _SPEAKER_RUN_FRAMES) | whole
    heard = np.bincount(owner, weights=lengths, minlength=count)
    return np.bincount(owner, weights=lengths * alone, minlength=count) / np.maximum(heard, 1)  # none heard: 0


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
    stride = max(_CLUSTER_STRIDE, -(-len(embeddings) // _MAX_CLUSTERED))
    sampled = embeddings[::stride]
    low, high = min(speakers[0], len(sampled)), min(speakers[1], len(sampled))
    labels = cluster(sampled, frames.centres[::stride], similarity, low, high)
    initial = _centroids(sampled, labels, int(labels.max()) + 1)
    labels, centroids = assign(embeddings, initial, frames.stretches, np.inf if low == high else similarity, low)
    if len(centroids) < speakers[0]:
        log.warning("heard %d speaker(s), fewer than the %d asked for", len(centroids), speakers[0])
    # One label per frame: the turns are their own exclusive turns.
    turns = to_annotation(frames, labels, URI)
    return Diarization(turns, turns, centroids)


class BuiltinParams(BaseModel):
    """Two voice clusters whose centroids have a cosine similarity of
    ``speaker_similarity`` or more are one speaker: lower it if one actor is
    split in two, raise it if two actors are merged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    speaker_similarity: float = Field(default=0.9, gt=0.0, lt=1.0)


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
