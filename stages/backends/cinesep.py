"""CineSep as a separate backend: dialogue, music and effects from a stereo mix in one network.

The network (:mod:`dubprep.stages.backends.cinesep_net`) is small enough to
ship inside the package (``weights/cinesep.pt``, sha256 pinned in the model
registry, ``models.yaml``, as ``cinesep``) and was trained with the recipe
in ``training/`` on Debian-packaged audio only.

Streaming: :class:`~dubprep.stages.backends.streaming.ChunkedStream` cuts
the signal into chunks of ``CHUNK_SAMPLES`` (4 s, the training length)
every ``HOP_SAMPLES`` (3 s), the last ones cut short at the end; each chunk
is separated on its own and the overlapping 1 s is cross-faded. Every
chunk's stems sum to that chunk of the mix, and a weighted average of such
estimates does too; :func:`~dubprep.stages.backends.cinesep_net.project_to_mix`
in float32 makes that exact to rounding. A stereo pair is heard whole (the
network does its own mid/side analysis), a mono channel as a centred pair.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from dubprep import models
from dubprep.audio_io import SAMPLE_RATE
from dubprep.checksums import verified_sha256
from dubprep.errors import ModelError
from dubprep.stages.backends.cinesep_net import STEMS, CineSepNet, NetConfig, project_to_mix
from dubprep.stages.backends.separation import DIALOGUE, EFFECTS, MUSIC, SeparationBackend, SeparationStream, stereo_pairs
from dubprep.stages.backends.streaming import ChunkedStream, ChunkPlan, crossfade_weights, trimmed_tail

MODEL_NAME = "cinesep"
CHUNK_SAMPLES = 4 * SAMPLE_RATE
FADE_SAMPLES = SAMPLE_RATE  # overlap between consecutive chunks
HOP_SAMPLES = CHUNK_SAMPLES - FADE_SAMPLES
_BATCH_CHUNKS = 4  # chunks per forward pass: a 10-s block is about three
_REEXPORT = "reinstall dubprep, or re-export them with: python -m training.export"


def verify_weights(path: Path, expected_sha256: str) -> None:
    """ModelError naming ``expected_sha256`` if ``path`` is missing or its sha256 differs."""
    verified_sha256(path, expected_sha256, "cinesep weights", _REEXPORT)


def load_net(path: Path, expected_sha256: str, device: str = "cpu") -> CineSepNet:
    """The network saved at ``path`` (checked against ``expected_sha256``), in eval mode on ``device``."""
    verify_weights(path, expected_sha256)
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        config = saved["config"]
        net = CineSepNet(NetConfig(**{**config, "dilations": tuple(config["dilations"])}))
        net.load_state_dict(saved["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"cinesep weights at {path} do not load ({exc}); re-export with: python -m training.export"
        ) from exc
    return net.to(device).eval()


def shipped_weights() -> tuple[Path, str]:
    """Path and pinned sha256 of the weights bundled with dubprep (registry entry ``cinesep``)."""
    entry = models.entry(MODEL_NAME)
    if entry.checkpoint.sha256 is None:
        raise ModelError(f"model registry entry {MODEL_NAME} pins no sha256; re-export with: python -m training.export")
    folder = models.entry_directory(entry, models.models_dir())
    return folder / entry.checkpoint.file, entry.checkpoint.sha256


def load_shipped(device: str = "cpu") -> CineSepNet:
    return load_net(*shipped_weights(), device=device)


def weights_checksum() -> str:
    """The pinned sha256 of the shipped weights (for the stage's cache key)."""
    return shipped_weights()[1]


class CineSep(SeparationBackend):
    """dubprep's own network: dialogue and music of each stereo pair, or of a channel heard alone."""

    stems = (DIALOGUE, MUSIC)
    grouping = staticmethod(stereo_pairs)
    mid_side = False

    def weights_checksum(self, params: BaseModel) -> str:
        return weights_checksum()

    def open(self, params: BaseModel, channels: list[int], device: str) -> list[CineSepStream]:
        net = load_shipped(device)
        return [CineSepStream(net, count) for count in channels]


class CineSepStream(SeparationStream):
    """Streaming separation of one mono or stereo 48 kHz signal into dialogue, music and effects.

    :meth:`process` takes consecutive float32 blocks (frames, channels) and
    returns {'dialogue', 'music', 'effects'}: (k, channels), the samples
    completed so far; :meth:`flush` returns the rest. Concatenated, the
    outputs are exactly as long as the input and sample-aligned with it, and
    the three stems sum to it.
    """

    def __init__(self, net: CineSepNet, channels: int) -> None:
        if channels not in (1, 2):
            raise ValueError(f"cinesep separates mono or stereo signals, not {channels} channels")
        self._net = net
        self._channels = channels
        self._device = next(net.parameters()).device
        plan = ChunkPlan(CHUNK_SAMPLES, HOP_SAMPLES, trimmed_tail, batch_chunks=_BATCH_CHUNKS)
        self._chunks = ChunkedStream(
            plan, self._separate, 2, len(STEMS), functools.partial(crossfade_weights, fade_samples=FADE_SAMPLES),
            _projected,
        )

    def process(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Feed ``block`` (frames, channels); return the stems now complete, (k, channels) each."""
        stereo = np.repeat(block, 2, axis=1) if self._channels == 1 else block
        return self._stems(self._chunks.process(stereo))

    def flush(self) -> dict[str, np.ndarray]:
        """Separate what is left (the last chunks, shorter); return the remaining stems."""
        return self._stems(self._chunks.flush())

    def _separate(self, mixtures: np.ndarray) -> np.ndarray:
        """Stems (chunks, 3, 2, CHUNK_SAMPLES) of stereo mixtures (chunks, 2, CHUNK_SAMPLES)."""
        with torch.inference_mode():
            return self._net(torch.from_numpy(mixtures).to(self._device)).cpu().numpy()

    def _stems(self, stems: np.ndarray) -> dict[str, np.ndarray]:
        """Each stem (k, channels) of stereo stems (3, 2, k): mono takes the pair's mean."""
        if self._channels == 1:
            stems = stems.mean(axis=1, keepdims=True)  # shape: (3, 1, k)
        return {name: np.ascontiguousarray(stem.T) for name, stem in zip((DIALOGUE, MUSIC, EFFECTS), stems)}


def _projected(stems: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """Stems (3, 2, k) that sum to ``mixture`` (2, k) exactly in float32 (the network's own projection)."""
    return project_to_mix(torch.from_numpy(stems), torch.from_numpy(mixture)).numpy()
