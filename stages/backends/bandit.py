"""Bandit v2 / BandIt Plus: speech, music and effects from one cinematic separation model.

The model (built with ``pymss-core`` from an MSST-style YAML config, weights
from a checkpoint) separates a mono signal into speech, music and
sfx/effects. It sees fixed-length chunks (the config's ``audio.chunk_size``
at its ``audio.sample_rate``), overlapping ``inference.num_overlap`` times:

- the stream is cut at 48 kHz into chunks of ``chunk_samples`` starting every
  ``hop_samples``, with ``chunk_samples - hop_samples`` zeros before the first
  sample, so every sample is covered by ``num_overlap`` chunks;
- each chunk is resampled to the model's rate, separated on the stage's
  device, and resampled back to exactly ``chunk_samples``;
- the chunk's stems are made to sum to the chunk's mixture (the residual the
  model leaves is shared among the stems in proportion to their power);
- the chunks are overlap-added with a window that is never zero and divided
  by the sum of the windows, so every output sample is a weighted average of
  consistent estimates and the stems still sum to the mix.

The chunking is :class:`~dubprep.stages.backends.streaming.ChunkedStream`'s;
one stream hears every searched signal, the signals a batch of the mono
network. ``model`` (a registered name, ``dubprep models list``, or a model
directory relative to the project file; None: ``bandit-v2-dnr3-multi``) is
located in the project's models dir when the project is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pymss_core import ModelTypeDetectionError, detect_model_type, get_model_from_config, load_config, unwrap_state_dict

from dubprep import models
from dubprep.audio_io import SAMPLE_RATE, resample
from dubprep.checksums import sha256_file
from dubprep.params import RelativeToProject
from dubprep.errors import ModelError
from dubprep.models import ModelFiles, model_files
from dubprep.stages.backends.separation import DIALOGUE, EFFECTS, MUSIC, SeparationBackend, SeparationStream, all_together
from dubprep.stages.backends.streaming import ChunkedStream, ChunkPlan, padded_tail, share_by_power, sine_squared_window

DEFAULT_MODEL = "bandit-v2-dnr3-multi"
ARCHITECTURES = ("bandit", "bandit_v2")
# The model's stem names -> the stage's three stems, in the order the separator returns them.
STEM_NAMES = {"speech": "speech", "music": "music", "sfx": "effects", "effects": "effects"}
STEMS = ("speech", "music", "effects")
# Lightning checkpoints (e.g. Zenodo's checkpoint-multi.ckpt) keep the network's weights under "model.".
_LIGHTNING_PREFIX = "model."


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


def _registered_bandit(value: str | None) -> str | None:
    """ValueError when ``value`` names a registered model of another architecture."""
    registered = models.registry().get(value)
    if registered is not None and registered.architecture not in ARCHITECTURES:
        runs = [m.name for m in models.registry().values() if m.architecture in ARCHITECTURES]
        raise ValueError(f"{value} is a {registered.architecture} model; the bandit backend runs: {', '.join(runs)}")
    return value


class BanditParams(BaseModel):
    """``model``: a registered name (``dubprep models list``) or a model directory; None: ``bandit-v2-dnr3-multi``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str | None, RelativeToProject(unless=lambda value, folder: value in models.registry())] = Field(
        default=None, validate_default=True
    )

    @field_validator("model", mode="after")
    @classmethod
    def _located(cls, value: str | None, info: ValidationInfo) -> str:
        """The model's directory: a registered one in the project's models dir, or the directory given."""
        _registered_bandit(value)
        return str(models.locate(value or DEFAULT_MODEL, (info.context or {}).get("models_dir")))


class Bandit(SeparationBackend):
    """Speech and music from a Bandit v2 / BandIt Plus model, all searched signals in one batch."""

    Params = BanditParams
    stems = (DIALOGUE, MUSIC)
    grouping = staticmethod(all_together)

    def weights_checksum(self, params: BanditParams) -> str:
        return checkpoint_checksum(Path(params.model))

    def open(self, params: BanditParams, channels: list[int], device: str) -> list[BanditStream]:
        model = load_model(Path(params.model), device)
        return [BanditStream(model, count) for count in channels]


class BanditStream(SeparationStream):
    """Signals (frames, signals) streamed through a :class:`BanditModel`: {'dialogue', 'music', 'effects'}: (k, signals) out.

    The outputs, concatenated, are sample-aligned with the input, exactly as
    long, and the three stems sum to it.
    """

    def __init__(self, model: BanditModel, signals: int) -> None:
        plan = ChunkPlan(
            model.chunk_samples, model.hop_samples, padded_tail, lead_samples=model.chunk_samples - model.hop_samples
        )
        window = sine_squared_window(model.chunk_samples)
        self._chunks = ChunkedStream(
            plan, lambda mixtures: separate_chunk(model, mixtures[0])[None], signals, len(STEMS), lambda _: window
        )

    def process(self, block: np.ndarray) -> dict[str, np.ndarray]:
        return self._stems(self._chunks.process(block))

    def flush(self) -> dict[str, np.ndarray]:
        return self._stems(self._chunks.flush())

    @staticmethod
    def _stems(stems: np.ndarray) -> dict[str, np.ndarray]:
        """Speech, music and effects (k, signals) of stems (3, signals, k)."""
        return {DIALOGUE: stems[0].T, MUSIC: stems[1].T, EFFECTS: stems[2].T}


def separate_chunk(model: BanditModel, mixture: np.ndarray) -> np.ndarray:
    """Speech, music and effects (3, signals, chunk) of a 48 kHz ``mixture`` (signals, chunk), summing to it."""
    frames = mixture.shape[1]
    audio = resample(mixture, SAMPLE_RATE, model.sample_rate)
    with torch.inference_mode():
        stems = model.network(torch.from_numpy(audio).to(model.device)[:, None, :])  # shape: (signals, stems, 1, t)
        stems = stems[:, list(model.stem_order), 0, :].cpu().numpy()  # shape: (signals, 3, model frames)
    stems = resample(stems, model.sample_rate, SAMPLE_RATE)[..., :frames]
    # Resampling may come back a sample short; the window is ~0 at the chunk's edges.
    stems = np.pad(stems, ((0, 0), (0, 0), (0, frames - stems.shape[-1])))
    return share_by_power(stems.transpose(1, 0, 2), mixture)  # shape: (3, signals, chunk)
