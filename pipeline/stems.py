"""The work stems: what extract and separate keep, and the M&E and effects computed from them on read.

A 2-hour 5.1 programme is 8.3 GB a stem in float32, and the work folder
held five (mix, DX, ME, MX, FX). It now holds three, as 24-bit FLAC:
extract's ``mix.flac`` and separate's ``DX.flac`` and ``MX.flac``. ME =
mix - DX and FX = ME - MX are computed here, block by block, by every
stage that reads them (diarize, transcribe, assemble, QC).

Why 24-bit and why exact: every stored sample is a multiple of 2**-23 in
[-1, 1) (:func:`to_grid`; separate rounds DX and MX to it before deriving
anything from them), and the difference of two such samples is a
multiple of 2**-23 below 2 in magnitude, which float32 (24-bit
significand) holds exactly. So DX + ME and DX + MX + FX give back the
stored mix to the last bit, and a 24-bit delivery of them re-sums
bit-exactly wherever no stem passes full scale. An FX sample at or past
+-2 (music and M&E near full scale with opposite signs) would round to
2**-22; a 24-bit delivery clips it anyway. A 16- or 24-bit integer source
at 48 kHz is stored losslessly; a float source (a lossy codec, float PCM)
or a resampled one is rounded to 24 bits (below -144 dBFS) and any sample
past full scale is clipped; extract logs which happened.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dubprep.audio_io import BLOCK_FRAMES, MonoReader, iter_aligned, open_flac_writer

MIX = "mix.flac"
DX = "DX.flac"
MX = "MX.flac"
_STORED = {"mix": MIX, "DX": DX, "MX": MX}
# The stored files each asset is read or computed from.
_NEEDS = {"mix": ("mix",), "DX": ("DX",), "MX": ("MX",), "ME": ("mix", "DX"), "FX": ("mix", "DX", "MX")}
_FULL_SCALE = 2.0**23


def to_grid(block: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``block`` rounded to the 24-bit grid and clipped to [-1, 1 - 2**-23]: (float32 block, rounded, clipped).

    ``rounded`` counts samples the rounding changed, ``clipped`` samples past full scale.
    """
    scaled = np.rint(block.astype(np.float64) * _FULL_SCALE)
    clipped = int(np.count_nonzero((scaled > _FULL_SCALE - 1) | (scaled < -_FULL_SCALE)))
    grid = (np.clip(scaled, -_FULL_SCALE, _FULL_SCALE - 1) / _FULL_SCALE).astype(np.float32)
    return grid, int(np.count_nonzero(grid != block)), clipped


class WorkWriter:
    """A 24-bit FLAC work file written in blocks; counts the samples rounding and clipping changed."""

    def __init__(self, path: Path, channels: int) -> None:
        self.path = path
        self.rounded = 0
        self.clipped = 0
        self._file = open_flac_writer(path, channels)

    def write(self, block: np.ndarray) -> np.ndarray:
        """Append ``block`` (frames, channels); returns it as stored (on the 24-bit grid), for what is derived from it."""
        grid, rounded, clipped = to_grid(block)
        self.rounded += rounded
        self.clipped += clipped
        self._file.write(grid)  # a full disk raises OSError (audio_io's writer)
        return grid

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> WorkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class WorkStems:
    """The stored work files (``mix``, ``DX``, ``MX``: whichever a stage reads), and every stem made from them."""

    files: dict[str, Path]

    @classmethod
    def of(cls, inputs: Mapping[str, Path]) -> WorkStems:
        """The work files among a stage's ``inputs`` (artifact name -> path)."""
        return cls({asset: inputs[name] for asset, name in _STORED.items() if name in inputs})

    def stored(self, asset: str) -> Path:
        """The file an asset is stored in ('mix', 'DX', 'MX')."""
        return self.files[asset]

    def blocks(self, assets: Sequence[str], block_frames: int = BLOCK_FRAMES) -> Iterator[dict[str, np.ndarray]]:
        """Each of ``assets`` ('mix', 'DX', 'ME', 'MX', 'FX') block by block: dicts of float32 (frames, channels)."""
        names = sorted({name for asset in assets for name in _NEEDS[asset]})
        for blocks in iter_aligned([(self.files[name],) for name in names], block_frames):
            read = dict(zip(names, blocks))
            if "ME" in assets or "FX" in assets:
                read["ME"] = read["mix"] - read["DX"]  # exact: see the module's docstring
            if "FX" in assets:
                read["FX"] = read["ME"] - read["MX"]
            yield {asset: read[asset] for asset in assets}

    def read_all(self, assets: Sequence[str]) -> dict[str, np.ndarray]:
        """Whole stems in memory, each (frames, channels) float32: for clips (benchmarks, tests), not programmes."""
        channels = sf.info(str(next(iter(self.files.values())))).channels
        blocks = list(self.blocks(assets))
        return {
            asset: np.concatenate([b[asset] for b in blocks]) if blocks else np.zeros((0, channels), np.float32)
            for asset in assets
        }

    def mono(self, asset: str, channel_names: tuple[str, ...]) -> MonoSource:
        """``asset`` ('DX' or 'ME') as mono 16 kHz, read at any span as :class:`~dubprep.audio_io.MonoReader` reads."""
        if asset == "ME":
            return DifferenceReader(MonoReader.open(self.files["mix"], channel_names),
                                    MonoReader.open(self.files["DX"], channel_names))
        return MonoReader.open(self.files[asset], channel_names)


@dataclass(frozen=True)
class DifferenceReader:
    """``plus`` minus ``minus``, each read as mono 16 kHz: the M&E as mix - DX (downmix and filter are linear)."""

    plus: MonoReader
    minus: MonoReader

    @property
    def samples(self) -> int:
        return min(self.plus.samples, self.minus.samples)

    def read(self, start: int, frames: int) -> np.ndarray:
        """Samples ``start`` .. ``start + frames`` as float32; shape: (frames,)."""
        return self.plus.read(start, frames) - self.minus.read(start, frames)


MonoSource = MonoReader | DifferenceReader
