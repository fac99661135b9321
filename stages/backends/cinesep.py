"""CineSep as a separate backend: dialogue, music and effects from a stereo mix in one network.

The network (:mod:`dubprep.stages.backends.cinesep_net`) is small enough to
ship inside the package (``weights/cinesep.pt``, sha256 pinned in the model
registry, ``models.yaml``, as ``cinesep``) and was trained with the recipe
in ``training/`` on Debian-packaged audio only.

Streaming: the mix is cut into chunks of ``CHUNK_SAMPLES`` (4 s, the
training length) every ``HOP_SAMPLES`` (3 s); each chunk is separated on
its own and the overlapping 1 s is cross-faded by :func:`overlap_add`. Every
chunk's stems sum to that chunk of the mix, and a weighted average of such
estimates does too, so the stems re-sum to the mix; a final
:func:`~dubprep.stages.backends.cinesep_net.project_to_mix` in float32 makes
that exact to rounding. Memory is a few chunks whatever the length.

Interface for the stage (one :class:`CineSepStream` per stereo pair or mono
channel)::

    net = load_shipped(device)                  # ModelError if the weights are missing/altered
    stream = CineSepStream(net, channels=2)     # channels: 1 or 2
    for block in blocks:                         # (frames, channels) float32
        write(stream.process(block))             # (3, k, channels): dialogue, music, effects
    write(stream.flush())                        # the rest; outputs total exactly the input frames

The stems lag the input by up to one chunk (4 s) inside the stream; the
outputs, concatenated, are sample-aligned with the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dubprep import models
from dubprep.errors import ModelError
from dubprep.stages.backends.cinesep_net import SAMPLE_RATE, STEMS, CineSepNet, NetConfig, project_to_mix
from dubprep.stages.backends.overlap_add import Chunk, Piece, overlap_add

MODEL_NAME = "cinesep"
CHUNK_SAMPLES = 4 * SAMPLE_RATE
FADE_SAMPLES = SAMPLE_RATE  # overlap between consecutive chunks
HOP_SAMPLES = CHUNK_SAMPLES - FADE_SAMPLES
_BATCH_CHUNKS = 4  # chunks per forward pass: a 10-s block is about three


def chunk_weights(length: int) -> np.ndarray:
    """Cross-fade weights (length,) of a chunk: raised-cosine ramps over ``FADE_SAMPLES`` at both ends.

    Every weight is above zero (the ramps start half a sample in), so a
    frame covered by a single chunk, at the very start or end of the mix,
    still has a normaliser above zero.
    """
    weights = np.ones(length)
    ramp = np.sin(np.pi / 2 * (np.arange(min(FADE_SAMPLES, length)) + 0.5) / FADE_SAMPLES) ** 2
    weights[: len(ramp)] = np.minimum(weights[: len(ramp)], ramp)
    weights[length - len(ramp) :] = np.minimum(weights[length - len(ramp) :], ramp[::-1])
    return weights


def verify_weights(path: Path, expected_sha256: str) -> None:
    """ModelError naming ``expected_sha256`` if ``path`` is missing or its sha256 differs."""
    if not path.is_file():
        raise ModelError(
            f"cinesep weights not found at {path} (expected sha256 {expected_sha256}); "
            f"reinstall dubprep, or re-export them with: python -m training.export"
        )
    actual = models.sha256_file(path)
    if actual != expected_sha256:
        raise ModelError(
            f"cinesep weights at {path} have sha256 {actual}, expected {expected_sha256}; the file is "
            f"corrupt or from another version: reinstall dubprep, or re-export with: python -m training.export"
        )


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


class CineSepStream:
    """Streaming separation of one mono or stereo 48 kHz signal into dialogue, music and effects.

    :meth:`process` takes consecutive float32 blocks (frames, channels) and
    returns the stems (3, k, channels) completed so far (stems in the order
    of :data:`STEMS`); :meth:`flush` returns the rest. Concatenated, the
    outputs are exactly as long as the input and sample-aligned with it; the
    three stems sum to the input. Mono is separated as a centred stereo pair.
    """

    def __init__(self, net: CineSepNet, channels: int) -> None:
        if channels not in (1, 2):
            raise ValueError(f"cinesep separates mono or stereo signals, not {channels} channels")
        self._net = net
        self._channels = channels
        self._device = next(net.parameters()).device
        self._buffer = np.zeros((0, 2), dtype=np.float32)  # input from frame _emitted on
        self._next_offset = 0  # where the next chunk starts
        self._fed = 0
        self._emitted = 0
        self._pieces: list[Piece] = []

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``block`` (frames, channels); return the stems now complete (3, k, channels)."""
        stereo = np.repeat(block, 2, axis=1) if self._channels == 1 else block
        self._buffer = np.concatenate([self._buffer, stereo.astype(np.float32)])
        self._fed += len(block)
        ready = []
        offset = self._next_offset
        while offset + CHUNK_SAMPLES <= self._fed:
            ready.append(Chunk(offset, CHUNK_SAMPLES))
            offset += HOP_SAMPLES
        self._run(ready)
        return self._emit(self._next_offset)

    def flush(self) -> np.ndarray:
        """Separate what is left (the last chunks, shorter); return the remaining stems (3, k, channels)."""
        remaining = []
        offset = self._next_offset
        while offset < self._fed:
            remaining.append(Chunk(offset, min(CHUNK_SAMPLES, self._fed - offset)))
            if offset + CHUNK_SAMPLES >= self._fed:
                break
            offset += HOP_SAMPLES
        self._run(remaining)
        return self._emit(self._fed)

    def _run(self, chunks: list[Chunk]) -> None:
        """Separate ``chunks`` (from the buffer) and keep their estimates; move past them."""
        for first in range(0, len(chunks), _BATCH_CHUNKS):
            batch = chunks[first : first + _BATCH_CHUNKS]
            mixes = np.zeros((len(batch), 2, CHUNK_SAMPLES), dtype=np.float32)
            for row, chunk in enumerate(batch):
                start = chunk.offset_samples - self._emitted
                mixes[row, :, : chunk.length_samples] = self._buffer[start : start + chunk.length_samples].T
            with torch.inference_mode():
                stems = self._net(torch.from_numpy(mixes).to(self._device)).cpu().numpy()  # shape: (n, 3, 2, CHUNK)
            for row, chunk in enumerate(batch):
                estimate = stems[row, :, :, : chunk.length_samples]  # shape: (3, 2, length)
                self._pieces.append((chunk, estimate, chunk_weights(chunk.length_samples)))
        if chunks:
            self._next_offset = chunks[-1].offset_samples + HOP_SAMPLES

    def _emit(self, until: int) -> np.ndarray:
        """The stems of frames [emitted, until): no chunk still to come covers them."""
        until = min(until, self._fed)
        if until <= self._emitted:
            return np.zeros((len(STEMS), 0, self._channels), dtype=np.float32)
        span = Chunk(self._emitted, until - self._emitted)
        mix, self._buffer = self._buffer[: span.length_samples], self._buffer[span.length_samples :]
        averaged = torch.from_numpy(overlap_add(span, self._pieces))  # shape: (3, 2, frames)
        # Re-sum exactly in float32: the average of chunk estimates sums to the mix only to rounding.
        stems = project_to_mix(averaged, torch.from_numpy(mix.T)).transpose(1, 2).numpy()  # shape: (3, frames, 2)
        self._pieces = [piece for piece in self._pieces if piece[0].end_samples > until]
        self._emitted = until
        if self._channels == 1:
            stems = stems.mean(axis=2, keepdims=True)  # shape: (3, frames, 1)
        return np.ascontiguousarray(stems, dtype=np.float32)
