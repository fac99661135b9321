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

import functools
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from traceback import walk_tb as traceback_frames
from typing import Annotated

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dubprep.scratch import private_tempdir

with private_tempdir():  # lightning (torchinductor_root) and onnxruntime (.ses) write into TMPDIR when imported
    from pyannote.audio import Pipeline
    from pyannote.audio.pipelines.speaker_verification import PretrainedSpeakerEmbedding

from dubprep.audio_io import SPEECH_RATE, ArraySource, MonoReader, resample
from dubprep.checksums import sha256_folder
from dubprep.errors import ModelError
from dubprep.params import RelativeToProject
from dubprep.progress import ProgressHook
from dubprep.stages.backends.diarization import URI, Diarization, DiarizationBackend
from dubprep.vad import SpeechRegion

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
CONFIG = "config.yaml"
# Files pyannote.audio 4.0 reads from a "$model/<folder>" entry of config.yaml, by key.
_ASSETS = {"plda": ("xvec_transform.npz", "plda.npz")}
_MODEL_ASSETS = ("pytorch_model.bin",)
_READ_BLOCK = SPEECH_RATE * 600  # 10 min of 16 kHz audio per read of the stem


def _not_a_folder(value: str, folder: Path) -> bool:
    """A ``pyannote_pipeline`` that is no folder next to the project file is a Hugging Face id."""
    return not (folder / value).is_dir()


class PyannoteParams(BaseModel):
    """``pyannote_pipeline`` (required): a pipeline folder (relative to the project file) or a Hugging Face id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pyannote_pipeline: Annotated[str | None, RelativeToProject(unless=_not_a_folder)] = Field(
        default=None, validate_default=True
    )

    @field_validator("pyannote_pipeline")
    @classmethod
    def _given(cls, value: str | None) -> str:
        if not value:
            raise ValueError(
                "backend pyannote needs pyannote_pipeline: a pipeline folder holding config.yaml and its "
                "models, or a Hugging Face id such as pyannote/speaker-diarization-community-1"
            )
        return value


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
    if not folder.is_dir():
        return hashlib.sha256(f"huggingface:{_hub_id(source)}".encode()).hexdigest()
    check_folder(folder)
    return sha256_folder(folder)


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


def _programme(source: MonoReader) -> torch.Tensor:
    """The whole stem as mono 16 kHz, read in blocks; shape: (1, samples)."""
    starts = range(0, source.samples, _READ_BLOCK)
    blocks = [source.read(start, min(_READ_BLOCK, source.samples - start)) for start in starts]
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return torch.from_numpy(audio)[None]  # shape: (1, samples)


def _raised_by_kmeans(error: ValueError) -> bool:
    """Whether ``error`` comes from the k-means pyannote runs to force a speaker count.

    Asked for more speakers than it has clean voice embeddings, that
    k-means refuses to run; told by where it was raised, not its wording.
    """
    frames = [frame for frame, _ in traceback_frames(error.__traceback__)]
    return bool(frames) and frames[-1].f_globals.get("__name__", "").startswith("sklearn.cluster")


class Pyannote(DiarizationBackend):
    """A pyannote.audio 4.x pipeline from a local folder or Hugging Face."""

    Params = PyannoteParams

    def weights_checksum(self, params: PyannoteParams) -> str:
        return pipeline_checksum(params.pyannote_pipeline)

    def open(self, params: BaseModel, device: str, log: logging.Logger, progress: ProgressHook) -> PyannoteDiarizer:
        pipeline = load_pipeline(params.pyannote_pipeline, device)
        return PyannoteDiarizer(pipeline, params.num_speakers, log, progress, device)


@dataclass(frozen=True)
class PyannoteDiarizer:
    """A loaded pipeline with the project's speaker count settings."""

    pipeline: Pipeline
    num_speakers: int | None
    log: logging.Logger
    progress: ProgressHook
    device: str

    def diarize(self, source: MonoReader, speakers: tuple[int, int]) -> Diarization:
        """Run the pipeline on ``source`` with dubprep's validated speaker count settings.

        Asked for more speakers than it has clean voice embeddings, pyannote's
        k-means raises; the pipeline then runs again choosing the count itself
        (at most the count asked for) and a warning says so.
        """
        file = {"waveform": _programme(source), "sample_rate": SPEECH_RATE, "uri": URI}
        fewest, most = speakers
        try:
            output = self.pipeline(
                file, num_speakers=self.num_speakers, min_speakers=fewest, max_speakers=most,
                hook=_ProgressBridge(self.progress),
            )
        except ValueError as err:
            if not _raised_by_kmeans(err):
                raise
            self.log.warning("diarize: pyannote hears fewer distinct voices than the %d asked for; counting them itself", fewest)
            output = self.pipeline(file, min_speakers=1, max_speakers=most, hook=_ProgressBridge(self.progress))
        # speaker_embeddings rows follow speaker_diarization.labels() order.
        clusters = {label: index for index, label in enumerate(output.speaker_diarization.labels())}
        centroids = np.asarray(output.speaker_embeddings, np.float32)
        # A speaker pyannote found no clean speech for has a zero or NaN row: keep it as "no centroid".
        centroids[~np.isfinite(centroids).all(axis=1)] = 0.0
        turns = output.speaker_diarization.rename_labels(clusters)
        if turns and len(turns.labels()) < fewest:
            self.log.warning("heard %d speaker(s), fewer than the %d asked for", len(turns.labels()), fewest)
        return Diarization(turns, output.exclusive_speaker_diarization.rename_labels(clusters), _unit_rows(centroids))

    @functools.cached_property
    def _embedding(self) -> PretrainedSpeakerEmbedding:
        """The pipeline's speaker model, loaded from the pipeline's public ``embedding`` setting."""
        return PretrainedSpeakerEmbedding(self.pipeline.embedding, device=torch.device(self.device))

    def embed(self, source: ArraySource, regions: list[SpeechRegion]) -> np.ndarray:
        """The pipeline's speaker model's unit-norm embedding of ``regions`` of ``source`` joined; shape: (dimension,)."""
        embedding = self._embedding
        speech = np.concatenate([source.read(r.start, r.end - r.start) for r in regions])
        speech = torch.from_numpy(resample(speech, SPEECH_RATE, embedding.sample_rate))
        return _unit_rows(embedding(speech[None, None]))[0]  # shape: (1, 1, samples) in, (1, dimension) out


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); shape: as ``vectors``."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
