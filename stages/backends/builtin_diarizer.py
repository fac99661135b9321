"""Offline diarization from wheel-shipped weights: Silero VAD + Resemblyzer + clustering.

1. Silero VAD gives a speech probability every 32 ms over the whole stem,
   streamed in blocks (one float per 32 ms is all that is kept).
2. Inside each speech region, Resemblyzer embeds overlapping 1.6 s partials
   every ``hop_s``; the region's audio is read from disk when it is needed.
3. Average-linkage clustering on cosine distance gives the speakers; the
   count is cut by distance, then held within [min, max] (or fixed).
4. Each partial's centre span takes its cluster's label; the spans make a
   pyannote ``Annotation``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pyannote.core import Annotation, Segment
from resemblyzer import VoiceEncoder
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.signal import resample_poly
from silero_vad import load_silero_vad

from dubprep.audio_io import BLOCK_FRAMES, SAMPLE_RATE, iter_blocks, read_span
from dubprep.media import MediaInfo

VAD_RATE = 16_000
VAD_CHUNK = 512  # samples at 16 kHz: Silero's window, 32 ms
_DOWNSAMPLE = SAMPLE_RATE // VAD_RATE


@dataclass(frozen=True)
class Settings:
    """What the backend needs from the stage's parameters."""

    vad_threshold: float
    min_speech_s: float
    min_silence_s: float
    hop_s: float
    distance_threshold: float
    num_speakers: int | None
    min_speakers: int
    max_speakers: int


def mono_16k(block: np.ndarray, media: MediaInfo) -> np.ndarray:
    """Downmix (frames, channels) at 48 kHz, LFE excluded, to mono 16 kHz; shape: (frames // 3,)."""
    keep = [i for i, name in enumerate(media.channel_names) if name != "LFE"]
    mono = block[:, keep].mean(axis=1)  # shape: (frames,)
    return resample_poly(mono, 1, _DOWNSAMPLE).astype(np.float32)


def speech_probabilities(dx: Path, media: MediaInfo) -> np.ndarray:
    """Silero speech probability per 32 ms chunk over the whole stem; shape: (chunks,)."""
    model = load_silero_vad()
    probabilities: list[float] = []
    carry = np.zeros(0, dtype=np.float32)
    with torch.inference_mode():
        for block in iter_blocks(dx, BLOCK_FRAMES):
            samples = np.concatenate([carry, mono_16k(block, media)])
            whole = len(samples) // VAD_CHUNK * VAD_CHUNK
            chunks = torch.from_numpy(samples[:whole]).reshape(-1, VAD_CHUNK)  # shape: (chunks, 512)
            probabilities.extend(float(model(chunk[None], VAD_RATE)) for chunk in chunks)
            carry = samples[whole:]
    return np.asarray(probabilities, dtype=np.float32)


def speech_regions(probabilities: np.ndarray, settings: Settings) -> list[tuple[float, float]]:
    """(start_s, end_s) runs above the threshold; short gaps bridged, short runs dropped."""
    chunk_s = VAD_CHUNK / VAD_RATE
    active = np.concatenate([[False], probabilities >= settings.vad_threshold, [False]])
    edges = np.flatnonzero(np.diff(active.astype(np.int8)))
    runs = [(start * chunk_s, end * chunk_s) for start, end in zip(edges[::2], edges[1::2])]
    bridged: list[tuple[float, float]] = []
    for start, end in runs:
        if bridged and start - bridged[-1][1] < settings.min_silence_s:
            bridged[-1] = (bridged[-1][0], end)
        else:
            bridged.append((start, end))
    return [(s, e) for s, e in bridged if e - s >= settings.min_speech_s]


def window_embeddings(
    dx: Path, media: MediaInfo, regions: list[tuple[float, float]], settings: Settings
) -> Iterator[tuple[Segment, np.ndarray]]:
    """(span a partial stands for, its 256-d unit embedding) for every partial in every region."""
    encoder = VoiceEncoder(device="cpu", verbose=False)
    for start_s, end_s in regions:
        start = round(start_s * SAMPLE_RATE)
        audio = mono_16k(read_span(dx, start, round(end_s * SAMPLE_RATE) - start), media)
        _, partials, splits = encoder.embed_utterance(audio, return_partials=True, rate=1.0 / settings.hop_s)
        for embedding, split in zip(partials, splits):
            centre_s = start_s + (split.start + split.stop) / 2 / VAD_RATE
            span = Segment(max(start_s, centre_s - settings.hop_s / 2), min(end_s, centre_s + settings.hop_s / 2))
            if span.duration > 0:
                yield span, embedding


def cluster(embeddings: np.ndarray, settings: Settings) -> np.ndarray:
    """Cluster index per embedding (rows of ``embeddings``, unit vectors)."""
    if len(embeddings) < 2:
        return np.zeros(len(embeddings), dtype=int)
    tree = linkage(embeddings, method="average", metric="cosine")
    if settings.num_speakers is not None:
        return fcluster(tree, t=min(settings.num_speakers, len(embeddings)), criterion="maxclust") - 1
    labels = fcluster(tree, t=settings.distance_threshold, criterion="distance") - 1
    count = int(np.clip(labels.max() + 1, settings.min_speakers, min(settings.max_speakers, len(embeddings))))
    if count != labels.max() + 1:
        labels = fcluster(tree, t=count, criterion="maxclust") - 1
    return reassign(embeddings, labels)


def reassign(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each embedding to its nearest cluster centroid: cleans up single-link chains."""
    centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in np.unique(labels)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return np.argmax(embeddings @ centroids.T, axis=1)


def diarize(dx: Path, media: MediaInfo, settings: Settings) -> tuple[Annotation, dict[int, np.ndarray]]:
    """Speaker turns labelled by cluster index, and each cluster's centroid embedding."""
    regions = speech_regions(speech_probabilities(dx, media), settings)
    windows = list(window_embeddings(dx, media, regions, settings))
    annotation = Annotation(uri="programme")
    if not windows:
        return annotation, {}
    spans = [span for span, _ in windows]
    embeddings = np.stack([embedding for _, embedding in windows])  # shape: (windows, 256)
    labels = cluster(embeddings, settings)
    for span, label in zip(spans, labels):
        annotation[span] = int(label)
    centroids = {int(k): embeddings[labels == k].mean(axis=0) for k in np.unique(labels)}
    return annotation.support(), centroids
