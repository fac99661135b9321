"""The null tests: mix - (DX + ME) and mix - (DX + MX + FX), of the delivered files and of the work stems."""

from __future__ import annotations

import math

import numpy as np

from dubprep.audio_io import BLOCK_FRAMES, iter_aligned
from dubprep.progress import ProgressHook
from dubprep.qc.result import NULL_SUMS, SEPARATED, NullTest, QcInputs, amplitude_db


def null_tests(inputs: QcInputs, progress: ProgressHook) -> list[NullTest]:
    """mix - (sum) for each of NULL_SUMS over the frames all files share, delivered and work stems, in one pass."""
    mix_energy = 0.0
    delivered_energy, separation_energy, residual_peak = (np.zeros(len(NULL_SUMS)) for _ in range(3))
    frames = 0
    # Quarter blocks: seven files at once, and float64 residuals, since float32 rounding (~-160 dBFS) would
    # show in a residual that should sit at the 24-bit floor.
    block_frames = BLOCK_FRAMES // 4
    work = inputs.work.blocks(("mix", *SEPARATED), block_frames)
    for stems, separated in zip(iter_aligned([inputs.stems[a] for a in SEPARATED], block_frames), work):
        length = min(len(stems[0]), len(separated["mix"]))  # the frames all files share
        delivered = {asset: block[:length] for asset, block in zip(SEPARATED, stems)}
        separated = {asset: block[:length] for asset, block in separated.items()}
        mix = separated["mix"]
        mix64 = mix.astype(np.float64)
        mix_energy += float(np.square(mix64).sum())
        for index, assets in enumerate(NULL_SUMS):
            residual = _residual(mix64, [delivered[a] for a in assets])
            delivered_energy[index] += float(np.square(residual).sum())
            separation_energy[index] += float(np.square(_residual(mix64, [separated[a] for a in assets])).sum())
            residual_peak[index] = max(residual_peak[index], float(np.abs(residual).max()))
        frames += len(mix)
        progress.advance(len(mix))
    return [
        NullTest(
            stems=assets,
            delivered_depth_db=_depth_db(mix_energy, delivered_energy[index]),
            separation_depth_db=_depth_db(mix_energy, separation_energy[index]),
            residual_peak_dbfs=amplitude_db(residual_peak[index]),
            frames=frames,
        )
        for index, assets in enumerate(NULL_SUMS)
    ]


def _residual(mix64: np.ndarray, stems: list[np.ndarray]) -> np.ndarray:
    """``mix64`` minus each stem in turn, in float64 (a float32 sum of the stems would round first)."""
    residual = mix64.copy()
    for stem in stems:
        residual -= stem
    return residual


def _depth_db(signal_energy: float, residual_energy: float) -> float:
    """How far the residual lies below the signal, in dB: inf when it is exactly zero."""
    if residual_energy == 0.0:
        return math.inf
    if signal_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / residual_energy)
