"""Bandit v2 / BandIt Plus: speech, music and effects from one cinematic separation model.

The model (built with ``pymss-core`` from an MSST-style YAML config, weights
from a checkpoint) separates a mono signal into speech, music and
sfx/effects. It sees fixed-length chunks (the config's ``audio.chunk_size``
at its ``audio.sample_rate``), overlapping ``inference.num_overlap`` times:

- the stream is cut at 48 kHz into chunks of ``chunk_samples`` starting every
  ``hop_samples``, with ``chunk_samples - hop_samples`` zeros before the first
  sample, so every sample is covered by ``num_overlap`` chunks;
- each chunk is resampled to the model's rate (torchaudio), separated on the
  stage's device, and resampled back to exactly ``chunk_samples``;
- the chunk's stems are made to sum to the chunk's mixture (the residual the
  model leaves is shared among the stems in proportion to their power);
- the chunks are overlap-added with a window that is never zero and divided
  by the sum of the windows, so every output sample is a weighted average of
  consistent estimates and the stems still sum to the mix.

Only the chunks that overlap samples not yet written are kept, so memory
does not grow with the programme's length; the output is sample-aligned with
the input and exactly as long.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio
import yaml
from pymss_core import ModelTypeDetectionError, detect_model_type, get_model_from_config, load_config, unwrap_state_dict

from dubprep.errors import ModelError
from dubprep.models import ModelFiles, model_files, sha256_file
from dubprep.stages.backends.overlap_add import Chunk, Piece, overlap_add

SAMPLE_RATE = 48_000
DEFAULT_MODEL = "bandit-v2-dnr3-multi"
ARCHITECTURES = ("bandit", "bandit_v2")
# The model's stem names -> the stage's three stems, in the order the separator returns them.
STEM_NAMES = {"speech": "speech", "music": "music", "sfx": "effects", "effects": "effects"}
STEMS = ("speech", "music", "effects")
# Lightning checkpoints (e.g. Zenodo's checkpoint-multi.ckpt) keep the network's weights under "model.".
_LIGHTNING_PREFIX = "model."


def chunk_window(length_samples: int) -> np.ndarray:
    """sin^2 window sampled half a sample off its zeros: positive everywhere, (length_samples,) float32."""
    return (np.sin(np.pi * (np.arange(length_samples) + 0.5) / length_samples) ** 2).astype(np.float32)


def consistent(stems: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """``stems`` (signals, 3, frames) corrected to sum to ``mixture`` (signals, frames).

    The residual ``mixture - sum(stems)`` goes to the stems in proportion to
    their power over the chunk (equally when all are silent), so a stem the
    model left silent gets none of it.
    """
    residual = mixture - stems.sum(axis=1)  # shape: (signals, frames)
    power = np.sum(stems.astype(np.float64) ** 2, axis=-1, keepdims=True)  # shape: (signals, 3, 1)
    total = power.sum(axis=1, keepdims=True)  # shape: (signals, 1, 1)
    share = np.divide(power, total, out=np.full_like(power, 1 / len(STEMS)), where=total > 0)
    return (stems + share.astype(np.float32) * residual[:, None, :]).astype(np.float32)


@dataclass(frozen=True)
class BanditModel:
    """A loaded network with its chunking, ready on ``device``."""

    network: torch.nn.Module
    sample_rate: int
    chunk_samples: int  # at 48 kHz
    hop_samples: int  # at 48 kHz
    stem_order: tuple[int, ...]  # index in the network's output of speech, music, effects
    device: str


def checkpoint_checksum(directory: Path) -> str:
    """sha256 of the checkpoint in a model ``directory``."""
    return sha256_file(model_files(directory).checkpoint)


def load_model(directory: Path, device: str) -> BanditModel:
    """The model in ``directory`` on ``device``; ModelError (one line) if anything does not fit."""
    files = model_files(directory)
    architecture = _architecture(files)
    try:
        network, config = get_model_from_config(architecture, str(files.config))
    except (TypeError, ValueError, AssertionError, KeyError, AttributeError) as exc:
        raise ModelError(f"{files.config}: does not describe a {architecture} model ({exc}); fix the config") from None
    stem_order = _stem_order(files.config, list(network.stems))
    rate, chunk_model, overlaps = _chunking(files.config, config)
    hop_samples = max(1, round(chunk_model * SAMPLE_RATE / rate / overlaps))
    network.load_state_dict(_state_dict(files, network, architecture))
    return BanditModel(
        network=network.eval().to(device),
        sample_rate=rate,
        chunk_samples=hop_samples * overlaps,
        hop_samples=hop_samples,
        stem_order=stem_order,
        device=device,
    )


def _architecture(files: ModelFiles) -> str:
    """The architecture the config describes: a Bandit one, and the registered one for a registered model."""
    try:
        architecture = detect_model_type(load_config(str(files.config)))
    except (OSError, UnicodeError, ValueError, yaml.YAMLError, ModelTypeDetectionError) as exc:
        raise ModelError(f"{files.config}: not a readable model config ({exc}); use the config released with the checkpoint") from None
    expected = files.entry.architecture if files.entry else None
    if architecture not in ARCHITECTURES or expected not in (None, architecture):
        wanted = expected or " or ".join(ARCHITECTURES)
        raise ModelError(f"{files.config}: describes a {architecture} model, not {wanted}; use the config released with the checkpoint")
    return architecture


def _state_dict(files: ModelFiles, network: torch.nn.Module, architecture: str) -> dict[str, torch.Tensor]:
    """The checkpoint's weights, checked key by key and shape by shape against ``network``."""
    try:
        # weights_only: a checkpoint is data; never run code pickled into a downloaded file.
        state = unwrap_state_dict(torch.load(files.checkpoint, map_location="cpu", weights_only=True))
    except Exception as exc:  # torch.load raises anything from EOFError to RuntimeError on a bad file
        reason = (str(exc).splitlines() or [""])[0].split(". ")[0][:120]  # its first sentence
        raise ModelError(
            f"{files.checkpoint}: cannot be read as a PyTorch checkpoint ({type(exc).__name__}: {reason}); "
            f"the file is truncated or corrupt, or holds more than weights: download it again"
        ) from None
    expected = network.state_dict()
    if isinstance(state, dict) and all(_LIGHTNING_PREFIX + key in state for key in expected):
        state = {key: state[_LIGHTNING_PREFIX + key] for key in expected}
    keys = set(state) if isinstance(state, dict) else set()
    missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
    wrong_shape = [k for k in sorted(keys & set(expected)) if getattr(state[k], "shape", None) != expected[k].shape]
    if missing or unexpected or wrong_shape:
        example = (missing or unexpected or wrong_shape)[0]
        raise ModelError(
            f"{files.checkpoint}: does not fit the {architecture} model of {files.config.name} "
            f"({len(missing)} weights missing, {len(unexpected)} unexpected, {len(wrong_shape)} of another shape, "
            f"e.g. '{example}'); the checkpoint is another architecture or size: use the config released with it"
        )
    return state


def _chunking(path: Path, config: dict) -> tuple[int, int, int]:
    """The config's model rate (Hz), chunk length (model samples) and overlap count."""
    values = []
    for section, key in (("audio", "sample_rate"), ("audio", "chunk_size"), ("inference", "num_overlap")):
        value = config.get(section, {}).get(key)
        if not isinstance(value, int) or value <= 0:
            raise ModelError(f"{path}: {section}.{key} must be a positive whole number, got {value!r}")
        values.append(value)
    return values[0], values[1], values[2]


def _stem_order(path: Path, names: list[str]) -> tuple[int, ...]:
    """Where speech, music and effects are among the network's stems ``names``."""
    roles = [STEM_NAMES.get(name) for name in names]
    if sorted(r for r in roles if r) != sorted(STEMS) or len(names) != len(STEMS):
        raise ModelError(f"{path}: stems {names}; dubprep needs speech, music and sfx (or effects)")
    return tuple(roles.index(stem) for stem in STEMS)


class BanditSeparator:
    """Streams mono 48 kHz signals through a :class:`BanditModel`.

    Feed consecutive blocks, one (frames,) array per signal, to
    :meth:`process`, and call :meth:`flush` once at the end: the concatenated
    outputs, each (signals, 3, k) with speech, music and effects, are
    sample-aligned with the input, exactly as long, and sum to it.
    """

    def __init__(self, model: BanditModel, signals: int) -> None:
        self._model = model
        self._window = chunk_window(model.chunk_samples)
        lead = model.chunk_samples - model.hop_samples
        self._input = np.zeros((signals, lead), dtype=np.float32)  # the stream from _input_start on
        self._input_start = 0
        self._pieces: deque[Piece] = deque(maxlen=model.chunk_samples // model.hop_samples)
        self._next_offset = 0  # where the next chunk starts
        self._written_to = lead  # stream samples before this are output (the lead is padding)
        self._end = lead  # one past the last fed sample

    def process(self, blocks: list[np.ndarray]) -> np.ndarray:
        """Feed one block (frames,) per signal; return the stems now complete (signals, 3, k)."""
        block = np.stack(blocks).astype(np.float32, copy=False)  # shape: (signals, frames)
        self._input = np.concatenate([self._input, block], axis=1)
        self._end += block.shape[1]
        done = []
        while self._next_offset + self._model.chunk_samples <= self._input_start + self._input.shape[1]:
            done.append(self._run_chunk())
        return self._joined(done)

    def flush(self) -> np.ndarray:
        """Run the last chunks over zeros past the end; return the remaining stems (signals, 3, k)."""
        done = []
        while self._written_to < self._end:
            missing = self._next_offset + self._model.chunk_samples - (self._input_start + self._input.shape[1])
            pad = np.zeros((self._input.shape[0], max(0, missing)), dtype=np.float32)
            self._input = np.concatenate([self._input, pad], axis=1)
            done.append(self._run_chunk())
        return self._joined(done)

    def _run_chunk(self) -> np.ndarray:
        """Separate the next chunk; return the stems of the fed samples no later chunk covers."""
        chunk = Chunk(self._next_offset, self._model.chunk_samples)
        start = chunk.offset_samples - self._input_start
        mixture = self._input[:, start : start + chunk.length_samples]  # shape: (signals, chunk)
        self._pieces.append((chunk, consistent(separate_chunk(self._model, mixture), mixture), self._window))
        self._next_offset += self._model.hop_samples
        # The first chunks end inside the lead (padding): nothing of theirs is ready alone.
        ready_to = max(self._written_to, min(self._next_offset, self._end))
        span = Chunk(self._written_to, ready_to - self._written_to)
        self._written_to = ready_to
        drop = self._next_offset - self._input_start
        self._input, self._input_start = self._input[:, drop:], self._next_offset
        return overlap_add(span, list(self._pieces))

    def _joined(self, parts: list[np.ndarray]) -> np.ndarray:
        if not parts:
            return np.zeros((self._input.shape[0], len(STEMS), 0), dtype=np.float32)
        return np.concatenate(parts, axis=-1)


def separate_chunk(model: BanditModel, mixture: np.ndarray) -> np.ndarray:
    """Speech, music and effects (signals, 3, chunk) of a 48 kHz ``mixture`` (signals, chunk)."""
    frames = mixture.shape[1]
    audio = torch.from_numpy(np.ascontiguousarray(mixture)).to(model.device)
    with torch.inference_mode():
        if model.sample_rate != SAMPLE_RATE:
            audio = torchaudio.functional.resample(audio, SAMPLE_RATE, model.sample_rate)
        stems = model.network(audio[:, None, :])  # shape: (signals, model stems, 1, model frames)
        stems = stems[:, list(model.stem_order), 0, :]  # shape: (signals, 3, model frames)
        if model.sample_rate != SAMPLE_RATE:
            stems = torchaudio.functional.resample(stems, model.sample_rate, SAMPLE_RATE)
        stems = stems[..., :frames].cpu().numpy()
    # Resampling may come back a sample short; the window is ~0 at the chunk's edges.
    return np.pad(stems, ((0, 0), (0, 0), (0, frames - stems.shape[-1])))
