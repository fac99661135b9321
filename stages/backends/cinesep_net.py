"""CineSep: a compact network that splits a 48 kHz stereo mix into dialogue, music and effects.

Shared by the separate backend (:mod:`dubprep.stages.backends.cinesep`) and
the training recipe (``training/``), so both run exactly the same maths.

How it works, per chunk of stereo audio (batch, 2, samples):

1. STFT of L and R (2048-sample Hann window, 512 hop: 23.4 Hz bins, 10.7 ms).
2. Features: the log power of mid (L+R)/2 and side (L-R)/2 in ``BANDS``
   bands, narrow where speech harmonics are (47 Hz below 1 kHz) and wide
   where only texture is (1.5 kHz above 16 kHz). Mid and side carry the
   panning cue: film dialogue sits in the phantom centre.
3. A linear encoder, a stack of residual dilated convolutions over time
   (about 1.35 s of context either side, see :class:`TimeBlock`) and a
   decoder that gives, per stem, channel and band, a logit.
4. A softmax over the three stems per band: the stems' masks sum to one.
   Band masks are spread over the bins by linear interpolation between band
   centres (a convex combination, so they still sum to one per bin).
5. Each stem's mask times the complex L/R spectra, inverse STFT.

Because the masks sum to one, the three stems sum to the mix up to STFT
round-off; :func:`project_to_mix` spreads that residual equally over the
stems so the sum is the mix to float precision (mixture consistency).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
from torch import nn

from dubprep.audio_io import SAMPLE_RATE
FFT_SAMPLES = 2048
HOP_SAMPLES = 512
BINS = FFT_SAMPLES // 2 + 1
STEMS = ("dialogue", "music", "effects")
# (upper edge in Hz, band width in bins): narrow bands where speech harmonics are resolved.
_BAND_PLAN = ((1000, 2), (2000, 4), (4000, 8), (8000, 16), (16000, 32), (SAMPLE_RATE // 2 + 1, 64))
_LOG_FLOOR = 1e-10  # power floor: -100 dB, below any 24-bit signal
_LOG_CENTRE, _LOG_SCALE = -5.0, 3.0  # puts log10 band powers of programme audio roughly in -2..2


@functools.cache
def band_edges() -> tuple[int, ...]:
    """Bin indices where bands start, plus ``BINS`` at the end."""
    edges, bin_index = [0], 0
    for upper_hz, width in _BAND_PLAN:
        upper_bin = min(BINS, round(upper_hz * FFT_SAMPLES / SAMPLE_RATE))
        while bin_index < upper_bin:
            bin_index = min(bin_index + width, BINS)
            edges.append(bin_index)
    return tuple(edges)


BANDS = len(band_edges()) - 1


@functools.cache
def _pooling() -> torch.Tensor:
    """(BANDS, BINS): the mean over each band's bins."""
    edges = band_edges()
    pool = torch.zeros(BANDS, BINS)
    for band, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        pool[band, lo:hi] = 1.0 / (hi - lo)
    return pool


@functools.cache
def _spreading() -> torch.Tensor:
    """(BINS, BANDS): linear interpolation between band centres; every row sums to one."""
    edges = torch.tensor(band_edges(), dtype=torch.float64)
    centres = (edges[:-1] + edges[1:] - 1) / 2
    bins = torch.arange(BINS, dtype=torch.float64).clamp(centres[0], centres[-1])
    upper = torch.searchsorted(centres, bins, right=True).clamp(1, BANDS - 1)
    lower = upper - 1
    frac = (bins - centres[lower]) / (centres[upper] - centres[lower])
    spread = torch.zeros(BINS, BANDS, dtype=torch.float64)
    rows = torch.arange(BINS)
    spread[rows, lower] += 1 - frac
    spread[rows, upper] += frac
    return spread.float()


@dataclass(frozen=True)
class NetConfig:
    """Sizes of the network; saved with the weights so a checkpoint rebuilds its own network.

    ``dilations``: one residual block per entry, its time dilation in frames.
    """

    hidden: int = 128
    expansion: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class TimeBlock(nn.Module):
    """Residual block over time: norm, widen, dilated depthwise convolution (kernel 3), narrow.

    Convolutions rather than a recurrent layer: they train several times
    faster on a CPU, where a GRU's step-by-step backward pass dominates.
    """

    def __init__(self, channels: int, expansion: int, dilation: int) -> None:
        super().__init__()
        wide = channels * expansion
        self.norm = nn.GroupNorm(1, channels)
        self.widen = nn.Conv1d(channels, wide, 1)
        self.temporal = nn.Conv1d(wide, wide, 3, padding=dilation, dilation=dilation, groups=wide)
        self.narrow = nn.Conv1d(wide, channels, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, channels, frames) -> same shape."""
        return x + self.narrow(self.act(self.temporal(self.act(self.widen(self.norm(x))))))


class CineSepNet(nn.Module):
    """Stereo mix (batch, 2, samples) -> stems (batch, 3, 2, samples) that sum to the mix."""

    def __init__(self, config: NetConfig = NetConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Sequential(nn.Linear(2 * BANDS, config.hidden), nn.LayerNorm(config.hidden), nn.GELU())
        self.blocks = nn.Sequential(*(TimeBlock(config.hidden, config.expansion, d) for d in config.dilations))
        self.decoder = nn.Sequential(
            nn.Linear(config.hidden, config.hidden), nn.GELU(), nn.Linear(config.hidden, len(STEMS) * 2 * BANDS)
        )
        self.register_buffer("window", torch.hann_window(FFT_SAMPLES), persistent=False)
        self.register_buffer("pooling", _pooling(), persistent=False)
        self.register_buffer("spreading", _spreading(), persistent=False)

    def masks(self, spectra: torch.Tensor) -> torch.Tensor:
        """Masks (batch, 3, 2, BINS, frames) in [0, 1], summing to one over stems.

        ``spectra``: the mix's L/R spectra (batch, 2, BINS, frames).
        """
        mid_side = torch.stack([spectra[:, 0] + spectra[:, 1], spectra[:, 0] - spectra[:, 1]], dim=1) / 2
        power = torch.matmul(self.pooling, mid_side.abs().square())  # shape: (batch, 2, BANDS, frames)
        batch, _, _, frames = power.shape
        features = (torch.log10(power + _LOG_FLOOR) - _LOG_CENTRE) / _LOG_SCALE
        features = features.reshape(batch, 2 * BANDS, frames).transpose(1, 2)  # shape: (batch, frames, 2 * BANDS)
        encoded = self.encoder(features).transpose(1, 2)  # shape: (batch, hidden, frames)
        hidden = self.blocks(encoded).transpose(1, 2)  # shape: (batch, frames, hidden)
        logits = self.decoder(hidden).reshape(batch, frames, len(STEMS), 2, BANDS)  # shape: (b, t, stems, ch, bands)
        band_masks = torch.softmax(logits, dim=2).permute(0, 2, 3, 4, 1)  # shape: (batch, stems, 2, BANDS, frames)
        return torch.matmul(self.spreading, band_masks)

    def stft(self, audio: torch.Tensor) -> torch.Tensor:
        """Spectra (..., BINS, frames) of ``audio`` (..., samples)."""
        flat = audio.reshape(-1, audio.shape[-1])  # shape: (signals, samples)
        spectra = torch.stft(flat, FFT_SAMPLES, HOP_SAMPLES, window=self.window, return_complex=True)
        return spectra.reshape(*audio.shape[:-1], BINS, spectra.shape[-1])  # shape: (..., BINS, frames)

    def separate_spectra(self, spectra: torch.Tensor) -> torch.Tensor:
        """Stem spectra as real pairs (batch, 3, 2, BINS, frames, 2) from mix spectra (batch, 2, BINS, frames).

        Real pairs, because a real mask times a complex tensor would first
        copy the mask into a complex one.
        """
        return self.masks(spectra).unsqueeze(-1) * torch.view_as_real(spectra).unsqueeze(1)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        batch, channels, samples = mix.shape
        stems = torch.view_as_complex(self.separate_spectra(self.stft(mix)))  # shape: (batch, 3, 2, BINS, frames)
        flat = stems.reshape(-1, BINS, stems.shape[-1])  # shape: (batch * 3 * 2, BINS, frames)
        waves = torch.istft(flat, FFT_SAMPLES, HOP_SAMPLES, window=self.window, length=samples)
        stems = waves.reshape(batch, len(STEMS), channels, samples)  # shape: (batch, 3, 2, samples)
        return project_to_mix(stems, mix)


def project_to_mix(stems: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Stems (..., 3, channels, samples) plus an equal share of ``mix - sum(stems)`` each, so they sum to the mix."""
    residual = mix - stems.sum(dim=-3)
    return stems + (residual / stems.shape[-3]).unsqueeze(-3)


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
