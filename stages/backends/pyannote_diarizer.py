"""Speaker diarization with a pyannote.audio 4.x pipeline.

``pyannote_pipeline`` is either a local folder holding ``config.yaml`` and
the model folders it names (e.g. a downloaded copy of
pyannote/speaker-diarization-community-1: segmentation, embedding and PLDA
for VBx clustering), loaded without any download, or a Hugging Face id,
fetched with the token in the ``HF_TOKEN`` environment variable (a token is
never read from the project file). pyannote.audio's usage telemetry is
switched off.

Cache key: for a local folder, the sha256 of every file in it (hidden ones
such as ``.git`` left out); for a Hugging Face id, only the id: a new
revision published under the same id does not invalidate a cached result,
so use a local folder for reproducible deliveries.

Memory: pyannote processes a whole file at once. The programme is passed
as mono 16 kHz float32 (230 MB per hour), read block by block from the
stem, and pyannote keeps its per-chunk segmentation scores and embeddings
for all of it on top; a multi-hour reel needs a few GB of RAM, unlike the
builtin backend, which streams.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio
import yaml
from pyannote.audio import Pipeline
from pyannote.core import Annotation

from dubprep.cache import sha256_file
from dubprep.errors import ModelError
from dubprep.progress import ProgressHook
from dubprep.stages.backends.vad import MODEL_RATE, ArraySource, MonoSource, SpeechRegion

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
CONFIG = "config.yaml"
# Files pyannote.audio 4.0 reads from a "$model/<folder>" entry of config.yaml, by key.
_ASSETS = {"plda": ("xvec_transform.npz", "plda.npz")}
_MODEL_ASSETS = ("pytorch_model.bin",)
_READ_BLOCK = MODEL_RATE * 600  # 10 min of 16 kHz audio per read of the stem


@dataclass(frozen=True)
class PyannoteDiarization:
    """Turns labelled by cluster index i, row i of ``centroids``."""

    annotation: Annotation  # may overlap: two people talking at once
    exclusive: Annotation  # one speaker at a time, same labels
    centroids: np.ndarray  # shape: (speakers, dimension), unit norm (zero for a speaker without one)


def check_folder(folder: Path) -> None:
    """Raise a :class:`ModelError` naming the first file ``folder``'s pipeline needs and lacks."""
    config_path = folder / CONFIG
    if not config_path.is_file():
        raise ModelError(
            f"{config_path}: not found; pyannote_pipeline must be a pyannote.audio pipeline folder holding "
            "config.yaml and the model folders it names (copy the whole downloaded pipeline)"
        )
    try:
        params = yaml.safe_load(config_path.read_text(encoding="utf-8"))["pipeline"]["params"]
    except (yaml.YAMLError, KeyError, TypeError) as err:
        raise ModelError(f"{config_path}: not a pyannote.audio pipeline config ({err!r}); copy it again") from err
    for key, value in params.items():
        if isinstance(value, str) and value.startswith("$model/"):
            for name in _ASSETS.get(key, _MODEL_ASSETS):
                needed = folder / value.removeprefix("$model/") / name
                if not needed.is_file():
                    raise ModelError(
                        f"{needed}: not found, though {config_path} names it ({key}); copy the complete pipeline folder"
                    )


def pipeline_checksum(source: str) -> str:
    """sha256 of a local pipeline folder's files (relative paths and contents), or of a hub id."""
    folder = Path(source)
    digest = hashlib.sha256()
    if not folder.is_dir():
        digest.update(f"huggingface:{_hub_id(source)}".encode())
        return digest.hexdigest()
    check_folder(folder)
    relative = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    for name in relative:
        if not any(part.startswith(".") for part in name.split("/")):  # .git, .cache: not the pipeline
            digest.update(name.encode() + b"\0" + sha256_file(folder / name).encode())
    return digest.hexdigest()


def load_pipeline(source: str, device: str) -> Pipeline:
    """The pipeline named by ``source`` (a folder or a Hugging Face id), on ``device``."""
    # Read by pyannote.audio at every load and run; dubprep sends nothing anywhere.
    os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
    folder = Path(source)
    pipeline = _from_folder(folder) if folder.is_dir() else _from_hub(source)
    return pipeline.to(torch.device(device))


def _from_folder(folder: Path) -> Pipeline:
    check_folder(folder)
    try:
        return Pipeline.from_pretrained(folder, token=os.environ.get("HF_TOKEN"))
    except Exception as err:  # anything pyannote raises on a user-supplied folder is a problem of that folder
        raise ModelError(
            f"{folder}: pyannote.audio could not load this pipeline ({type(err).__name__}: {err}); "
            "it must be a pyannote.audio 4.x speaker diarization pipeline folder"
        ) from err


def _hub_id(source: str) -> str:
    """``source`` when it has the form of a Hugging Face id; it names no folder here."""
    if not HUB_ID.fullmatch(source):
        raise ModelError(
            f"diarize.pyannote_pipeline: {source}: no such folder; give a pipeline folder (relative to the "
            "project file) or a Hugging Face id such as pyannote/speaker-diarization-community-1"
        )
    return source


def _from_hub(source: str) -> Pipeline:
    _hub_id(source)
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ModelError(
            f"diarize.pyannote_pipeline: '{source}' is not a local folder; to fetch it from Hugging Face, "
            "accept its conditions there and set HF_TOKEN in the environment, or point pyannote_pipeline "
            "at a downloaded copy"
        )
    try:
        pipeline = Pipeline.from_pretrained(source, token=token)
    except OSError as err:  # huggingface_hub's HTTP, offline and cache-miss errors are OSErrors
        raise ModelError(
            f"diarize.pyannote_pipeline: could not fetch '{source}' from Hugging Face ({type(err).__name__}); "
            "check the id, that HF_TOKEN may read it and the network, or point pyannote_pipeline at a local copy"
        ) from err
    if pipeline is None:
        raise ModelError(f"diarize.pyannote_pipeline: Hugging Face returned no pipeline for '{source}'")
    return pipeline


class _ProgressBridge:
    """pyannote's ``hook(step, artifact, total=, completed=)`` as one dubprep progress bar per step."""

    def __init__(self, progress: ProgressHook) -> None:
        self.progress = progress
        self.step: str | None = None
        self.done = 0

    def __call__(self, step: str, artifact: object, file: object = None, total: int | None = None,
                 completed: int | None = None) -> None:
        if total is None or completed is None:
            return
        if step != self.step:
            self.step, self.done = step, 0
            self.progress.start(f"diarize: {step}", total)
        self.progress.advance(completed - self.done)
        self.done = completed
        if completed >= total:
            self.progress.finish()


def _programme(source: MonoSource) -> torch.Tensor:
    """The whole stem as mono 16 kHz, read in blocks; shape: (1, samples)."""
    starts = range(0, source.samples, _READ_BLOCK)
    blocks = [source.read(start, min(_READ_BLOCK, source.samples - start)) for start in starts]
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return torch.from_numpy(audio)[None]  # shape: (1, samples)


def diarize(
    pipeline: Pipeline, source: MonoSource, num_speakers: int | None, min_speakers: int, max_speakers: int,
    progress: ProgressHook, log: logging.Logger,
) -> PyannoteDiarization:
    """Run ``pipeline`` on ``source`` with dubprep's validated speaker count settings.

    Asked for more speakers than it has clean voice embeddings, pyannote's
    k-means raises; the pipeline then runs again choosing the count itself
    (at most the count asked for) and a warning says so.
    """
    file = {"waveform": _programme(source), "sample_rate": MODEL_RATE, "uri": "programme"}
    try:
        output = pipeline(
            file, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
            hook=_ProgressBridge(progress),
        )
    except ValueError as err:
        if "n_clusters" not in str(err):  # scikit-learn: n_samples=N should be >= n_clusters=K
            raise
        fewest, most = num_speakers or min_speakers, num_speakers or max_speakers
        log.warning("diarize: pyannote hears fewer distinct voices than the %d asked for; counting them itself", fewest)
        output = pipeline(file, min_speakers=1, max_speakers=most, hook=_ProgressBridge(progress))
    # speaker_embeddings rows follow speaker_diarization.labels() order.
    clusters = {label: index for index, label in enumerate(output.speaker_diarization.labels())}
    centroids = np.asarray(output.speaker_embeddings, np.float32)
    # A speaker pyannote found no clean speech for has a zero or NaN row: keep it as "no centroid".
    centroids[~np.isfinite(centroids).all(axis=1)] = 0.0
    centroids = _unit_rows(centroids)
    return PyannoteDiarization(
        output.speaker_diarization.rename_labels(clusters),
        output.exclusive_speaker_diarization.rename_labels(clusters),
        centroids,
    )


def embed_speech(pipeline: Pipeline, source: ArraySource, regions: list[SpeechRegion]) -> np.ndarray:
    """The pipeline's unit-norm speaker embedding of ``regions`` of ``source`` joined; shape: (dimension,)."""
    # pyannote.audio 4.0 keeps the pipeline's speaker embedding inference in ``_embedding``.
    embedding = pipeline._embedding
    speech = torch.from_numpy(np.concatenate([source.read(r.start, r.end - r.start) for r in regions]))
    if embedding.sample_rate != MODEL_RATE:
        speech = torchaudio.functional.resample(speech, MODEL_RATE, embedding.sample_rate)
    return _unit_rows(embedding(speech[None, None]))[0]  # shape: (1, 1, samples) in, (1, dimension) out


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); shape: as ``vectors``."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
