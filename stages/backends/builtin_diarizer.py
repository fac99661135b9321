"""Offline speaker diarization: Silero VAD + Resemblyzer d-vectors + clustering.

Method (every window is read from disk on demand, so memory grows with the
amount of speech only, 1 KB per 0.1 s of speech):

1. Silero VAD finds speech regions (:mod:`dubprep.stages.backends.vad`).
2. Every 0.1 s of speech gets a Resemblyzer embedding of the 1.2 s of audio
   centred on it. 1.2 s was the best of 0.6-1.6 s at labelling frames from
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

import functools
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from pyannote.core import Annotation, Segment
from sklearn.cluster import KMeans

from dubprep.errors import ModelError
from dubprep.progress import ProgressHook
from dubprep.stages.backends.vad import MODEL_RATE, MonoSource, Source, SpeechRegion

FRAME_SAMPLES = MODEL_RATE // 10  # one label per 0.1 s
WINDOW_SAMPLES = MODEL_RATE * 12 // 10  # 1.2 s of audio per embedding
MEL_HOP_SAMPLES = MODEL_RATE // 100  # Resemblyzer's mel hop, 10 ms
MEL_FFT_SAMPLES = MODEL_RATE * 25 // 1000  # and its 25-ms mel window
_MEL_BANDS = 40
WINDOW_MEL_FRAMES = WINDOW_SAMPLES // MEL_HOP_SAMPLES + 1  # 121: its spectrogram of 1.2 s (centred frames)
# Frames whose 25 ms reach past a window's ends, where Resemblyzer hears zeros.
_EDGE_FRAMES = np.array([0, 1, WINDOW_MEL_FRAMES - 2, WINDOW_MEL_FRAMES - 1])
_CLUSTER_STRIDE = 4  # cluster frames 0.4 s apart: three windows either side overlap
_MAX_CLUSTERED = 1500  # spectral clustering is O(n^3): ~1 s per eigensolve at 1500
_MIN_CLUSTER_S = 3.0  # a centroid from less speech is too noisy to compare
_MAX_INITIAL_CLUSTERS = 20
_SPEAKER_RUN_FRAMES = 20  # 2 s: a run this long is a speaker talking, not windows straddling a turn change
_ALONE_SHARE = 0.25  # a cluster heard alone for less of its speech than this is no speaker
_BRIDGE_SAMPLES = MODEL_RATE * 3 // 10  # a pause under 0.3 s is a breath within a line, not a turn's end
_CONNECTED = 1e-6  # second Laplacian eigenvalue above this: the pruned graph is connected
_TARGET_DBFS = -30.0  # Resemblyzer's training level (audio_norm_target_dBFS)
_BATCH = 64  # windows per encoder call
_BATCH_SPAN = MODEL_RATE * 8  # and at most 8 s of audio read for them


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


@dataclass(frozen=True)
class Diarization:
    """Turns labelled by cluster index and each cluster's unit-norm centroid."""

    annotation: Annotation
    centroids: np.ndarray  # shape: (speakers, 256), row i is label i

    @property
    def exclusive(self) -> Annotation:
        """Turns with one speaker at a time: one label per frame makes them the turns themselves."""
        return self.annotation


@functools.cache
def load_encoder(device: str) -> torch.nn.Module:
    """Resemblyzer's speaker encoder from the weights inside its wheel, on ``device``."""
    from resemblyzer import VoiceEncoder

    try:
        return VoiceEncoder(device=device, verbose=False).eval()
    except Exception as err:  # resemblyzer raises a bare Exception for missing weights
        raise ModelError(
            f"resemblyzer: its bundled pretrained.pt could not be loaded ({err}); reinstall it "
            "with 'pip install --force-reinstall resemblyzer==0.1.4'"
        ) from err


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


def _mel_batch(audio: np.ndarray, window_starts: np.ndarray) -> torch.Tensor:
    """Level-normalised mel spectrograms of windows of ``audio``, as Resemblyzer makes them; shape: (windows, 121, 40).

    Windows whose starts (samples into ``audio``) differ by whole 10-ms mel
    hops are rows of one spectrogram: one STFT per such group (windows of a
    speech region are 0.1 s apart, so a batch has about a group per region
    it spans) instead of one per window, which overlap twelvefold. Only the
    two outermost frames at either end of a window, where Resemblyzer pads
    the window with zeros, are computed apart. Resemblyzer's mel is power,
    so levelling a window's audio to -30 dBFS is scaling its rows by the
    squared gain.
    """
    from resemblyzer.audio import wav_to_mel_spectrogram

    needed = int(window_starts.max()) + WINDOW_SAMPLES
    audio = np.pad(audio, (0, max(0, needed - len(audio))))
    windows = np.empty((len(window_starts), WINDOW_MEL_FRAMES, _MEL_BANDS), np.float32)
    phases = window_starts % MEL_HOP_SAMPLES
    for phase in np.unique(phases):
        group = phases == phase
        first, last = int(window_starts[group].min()), int(window_starts[group].max())
        mel = wav_to_mel_spectrogram(audio[first : last + WINDOW_SAMPLES])  # shape: (1 + span // 160, 40)
        rows = (window_starts[group] - first)[:, None] // MEL_HOP_SAMPLES + np.arange(WINDOW_MEL_FRAMES)
        windows[group] = mel[rows]  # shape: (group windows, 121, 40)
    windows[:, _EDGE_FRAMES] = _edge_frames(audio, window_starts)
    squares = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    rms = np.sqrt((squares[window_starts + WINDOW_SAMPLES] - squares[window_starts]) / WINDOW_SAMPLES) + 1e-9
    gain = (10 ** (_TARGET_DBFS / 20) / rms) ** 2  # shape: (windows,)
    return torch.from_numpy((windows * gain[:, None, None]).astype(np.float32))


def _edge_frames(audio: np.ndarray, window_starts: np.ndarray) -> np.ndarray:
    """Mel frames ``_EDGE_FRAMES`` of each window alone, zeros beyond its ends; shape: (windows, 4, 40).

    librosa's centred STFT as Resemblyzer calls it: periodic Hann window,
    power spectrum, Slaney mel filters.
    """
    import librosa

    basis = _mel_basis()
    starts = window_starts[:, None, None]
    centres = starts + _EDGE_FRAMES[:, None] * MEL_HOP_SAMPLES  # shape: (windows, 4, 1)
    at = centres - MEL_FFT_SAMPLES // 2 + np.arange(MEL_FFT_SAMPLES)  # shape: (windows, 4, 400)
    inside = (at >= starts) & (at < starts + WINDOW_SAMPLES)
    segments = np.where(inside, audio[np.clip(at, 0, len(audio) - 1)], 0.0)
    hann = librosa.filters.get_window("hann", MEL_FFT_SAMPLES, fftbins=True)
    power = np.abs(np.fft.rfft(segments * hann, axis=-1)) ** 2  # shape: (windows, 4, 201)
    return power @ basis.T


@functools.cache
def _mel_basis() -> np.ndarray:
    """Resemblyzer's mel filters; shape: (40, 201)."""
    import librosa

    return librosa.filters.mel(sr=MODEL_RATE, n_fft=MEL_FFT_SAMPLES, n_mels=_MEL_BANDS)


def _batches(window_starts: np.ndarray) -> Iterator[slice]:
    """Runs of up to ``_BATCH`` windows that start within ``_BATCH_SPAN`` of the run's first."""
    first = 0
    while first < len(window_starts):
        limit = np.searchsorted(window_starts, window_starts[first] + _BATCH_SPAN, side="right")
        last = min(first + _BATCH, max(first + 1, limit))
        yield slice(first, last)
        first = last


def embed_frames(source: Source, frames: Frames, device: str, progress: ProgressHook) -> np.ndarray:
    """Unit-norm embedding of the 1.2 s around every frame; shape: (frames, 256).

    Windows are clamped inside the programme, so a frame near its start or
    end is embedded from the first or last 1.2 s. Audio is read per batch
    of neighbouring windows (at most ~9 s), never for the whole file.
    """
    encoder = load_encoder(device)
    window_starts = np.clip(frames.centres - WINDOW_SAMPLES // 2, 0, max(0, source.samples - WINDOW_SAMPLES))
    out = np.zeros((len(window_starts), 256), np.float32)
    progress.start("diarize: speaker embeddings", len(window_starts))
    with torch.inference_mode():
        for batch in _batches(window_starts):
            starts = window_starts[batch]
            audio = source.read(int(starts[0]), int(starts[-1] - starts[0]) + WINDOW_SAMPLES)
            out[batch] = encoder(_mel_batch(audio, starts - starts[0]).to(device)).cpu().numpy()
            progress.advance(len(starts))
    progress.finish()
    return out


def embed_speech(source: Source, regions: list[SpeechRegion], device: str, progress: ProgressHook) -> np.ndarray:
    """One unit-norm embedding of all of ``regions``: the mean of their frames' embeddings; shape: (256,).

    Built like a cluster centroid, so it compares with the centroids of
    :func:`diarize_regions` (e.g. a reference clip of a known actor).
    """
    embeddings = embed_frames(source, speech_frames(regions), device, progress)
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
        values = scipy.linalg.eigh(laplacian, eigvals_only=True, subset_by_index=[0, count])
        ratio = (p / n) / (np.diff(values).max() / (values[-1] + 1e-10) + 1e-10)
        if best_laplacian is None or (values[1] > _CONNECTED and ratio < best_ratio):
            best_ratio, best_laplacian = ratio, laplacian
    _, vectors = scipy.linalg.eigh(best_laplacian, subset_by_index=[0, count - 1])
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
    labels = KMeans(count, n_init=10, random_state=0).fit_predict(vectors)
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
    min_size = max(2, round(_MIN_CLUSTER_S * MODEL_RATE / spacing))
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
    annotation = Annotation(uri=uri)
    for first, last in zip(*_runs(labels, frames.stretches)):
        segment = Segment(frames.starts[first] / MODEL_RATE, frames.ends[last - 1] / MODEL_RATE)
        annotation[segment] = int(labels[first])
    return annotation


def diarize_regions(
    source: MonoSource,
    regions: list[SpeechRegion],
    speakers: tuple[int, int],
    similarity: float,
    device: str,
    log: logging.Logger,
    progress: ProgressHook,
) -> Diarization:
    """Speaker turns over ``regions`` of ``source`` with ``speakers`` = (fewest, most); models on ``device``."""
    frames = speech_frames(regions)
    embeddings = embed_frames(source, frames, device, progress)
    stride = max(_CLUSTER_STRIDE, -(-len(embeddings) // _MAX_CLUSTERED))
    sampled = embeddings[::stride]
    low, high = min(speakers[0], len(sampled)), min(speakers[1], len(sampled))
    labels = cluster(sampled, frames.centres[::stride], similarity, low, high)
    initial = _centroids(sampled, labels, int(labels.max()) + 1)
    labels, centroids = assign(embeddings, initial, frames.stretches, np.inf if low == high else similarity, low)
    if len(centroids) < speakers[0]:
        log.warning("heard %d speaker(s), fewer than the %d asked for", len(centroids), speakers[0])
    return Diarization(to_annotation(frames, labels, "programme"), centroids)
