"""Speaker labels: names from reference clips, SPK01, SPK02, ... for the rest.

A project may give a short clip of each known actor (``diarize.speakers``,
e.g. ``ALICE: refs/alice.wav``). Each clip is read as mono 16 kHz with
soundfile (WAV, FLAC, AIFF, OGG; not MP4/AAC), trimmed to its speech by
Silero VAD and embedded by the diarization backend's own speaker model, so
it compares with the clusters' centroids. Clusters and clips are paired one
to one by the Hungarian method on cosine similarity (the pairing with the
largest total similarity); a pair names its cluster only when its
similarity reaches ``reference_similarity``. Every other cluster is SPK01,
SPK02, ... in order of first appearance among the unnamed ones: named
speakers take no numbers, so one unknown voice next to ALICE and BOB is
SPK01.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from dubprep.audio_io import SPEECH_RATE, ArraySource, resample
from dubprep.errors import MediaError, StageError
from dubprep.lazy import lazy_module
from dubprep.progress import ProgressHook
from dubprep.vad import SpeechRegion, detect_speech

if TYPE_CHECKING:
    from pyannote.core import Annotation

optimize = lazy_module("scipy.optimize")  # imported when names are first matched

# Embeds the speech ``regions`` of a clip into one unit-norm vector; shape: (dimension,).
Embedder = Callable[[ArraySource, list[SpeechRegion]], np.ndarray]


@dataclass(frozen=True, eq=False)
class ReferenceClip:
    """One actor's clip as mono 16 kHz audio and the speech found in it."""

    name: str
    path: Path
    source: ArraySource
    regions: list[SpeechRegion]


def read_mono_16k(path: Path, name: str) -> np.ndarray:
    """``path`` downmixed to mono and resampled to 16 kHz; shape: (samples,)."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise MediaError(
            f"{path}: the reference clip of {name} cannot be read ({err}); give a WAV, FLAC, AIFF or OGG file"
        ) from err
    return resample(audio.mean(axis=1), rate, SPEECH_RATE)


def load_clips(speakers: dict[str, Path], vad_threshold: float, progress: ProgressHook) -> list[ReferenceClip]:
    """Every reference clip read and trimmed to its speech; a clip without speech is an error."""
    clips = []
    for name, path in speakers.items():
        source = ArraySource(read_mono_16k(path, name))
        regions = detect_speech(source, vad_threshold, progress)
        if not regions:
            raise StageError(
                f"{path}: no speech found in the reference clip of {name}; give a few seconds of {name} speaking alone"
            )
        clips.append(ReferenceClip(name, path, source, regions))
    return clips


def match_names(
    centroids: np.ndarray, clips: list[ReferenceClip], embed: Embedder, threshold: float, log: logging.Logger
) -> dict[int, str]:
    """Cluster index -> actor name for the clusters a reference clip matches.

    ``centroids`` has one unit-norm row per cluster; ``embed`` is the
    backend's speaker model, returning unit-norm vectors. Logs every clip's
    similarity, so ``reference_similarity`` can be set from a run.
    """
    if not clips or not len(centroids):
        return {}
    references = np.stack([embed(clip.source, clip.regions) for clip in clips])  # shape: (clips, dimension)
    similarity = centroids @ references.T  # cosine; shape: (clusters, clips)
    rows, columns = optimize.linear_sum_assignment(similarity, maximize=True)
    paired = {int(column): int(row) for row, column in zip(rows, columns)}
    named = {row: clips[column].name for column, row in paired.items() if similarity[row, column] >= threshold}
    for column, clip in enumerate(clips):
        row = paired.get(column, int(np.argmax(similarity[:, column])))
        if named.get(row) == clip.name:
            log.info("diarize: %s named from %s (similarity %.3f)", clip.name, clip.path, similarity[row, column])
        else:
            log.warning(
                "diarize: no speaker matches the reference clip of %s (%s): similarity %.3f, below "
                "reference_similarity %.3f or a closer clip took that speaker",
                clip.name, clip.path, similarity[row, column], threshold,
            )
    return named


def speaker_labels(annotation: Annotation, names: dict[int, str]) -> dict[int, str]:
    """Label of every cluster in ``annotation``, in order of first appearance: its name, else SPKnn."""
    labels: dict[int, str] = {}
    for _, _, cluster in annotation.itertracks(yield_label=True):
        if cluster not in labels:
            unnamed = sum(1 for seen in labels if seen not in names)
            labels[cluster] = names.get(cluster, f"SPK{unnamed + 1:02d}")
    return labels
