"""Sample peaks, clipped samples and the waveform envelope of a stem, in one pass over its files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from dubprep.audio_io import iter_aligned
from dubprep.progress import ProgressHook
from dubprep.qc.result import StemScan

ENVELOPE_COLUMNS = 1200  # one per pixel column of the waveform plots
_PCM_BITS = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32}


def full_scale(subtype: str) -> float:
    """Largest positive sample a format holds, as read into float32 (1 - 1 LSB; 1.0 for float)."""
    if subtype not in _PCM_BITS:
        return 1.0
    return float(np.float32(1.0 - 2.0 ** (1 - _PCM_BITS[subtype])))


def scan_stem(files: Sequence[Path], progress: ProgressHook) -> StemScan:
    """Peaks, clipped samples and the waveform envelope of one stem, in one pass."""
    infos = [sf.info(str(p)) for p in files]
    channels = sum(i.channels for i in infos)
    total = max(i.frames for i in infos)
    columns = min(ENVELOPE_COLUMNS, max(total, 1))
    scan = StemScan(
        files=tuple(files), frames=tuple(i.frames for i in infos), sample_rates=tuple(i.samplerate for i in infos),
        channels=channels, subtype=infos[0].subtype, peak=np.zeros(channels), clipped=np.zeros(channels, dtype=np.int64),
        env_min=np.zeros((columns, channels), dtype=np.float32), env_max=np.zeros((columns, channels), dtype=np.float32),
    )
    clip_level = min(full_scale(i.subtype) for i in infos)
    position = 0
    for (block,) in iter_aligned([files]):
        lowest, highest = _add_envelope(scan, block, position, total)
        # Counting is a full pass over the block; the envelope says when it can be skipped.
        if (highest >= clip_level).any() or (lowest <= -clip_level).any():
            scan.clipped += np.count_nonzero(np.abs(block) >= clip_level, axis=0)
        position += len(block)
        progress.advance(len(block))
    scan.peak = np.maximum(-scan.env_min.min(axis=0), scan.env_max.max(axis=0))
    return scan


def _add_envelope(scan: StemScan, block: np.ndarray, position: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``block`` (frames from ``position``) into the per-column minima and maxima.

    Returns the block's own minima and maxima per column touched; shape
    (columns touched, channels) each.
    """
    columns = len(scan.env_min)
    first, last = position * columns // total, (position + len(block) - 1) * columns // total
    ids = np.arange(first, last + 1)
    # Column c starts at frame ceil(c * total / columns).
    starts = np.maximum(-(-(ids * total) // columns) - position, 0)
    lowest = np.minimum.reduceat(block, starts, axis=0)
    highest = np.maximum.reduceat(block, starts, axis=0)
    scan.env_min[ids] = np.minimum(scan.env_min[ids], lowest)
    scan.env_max[ids] = np.maximum(scan.env_max[ids], highest)
    return lowest, highest
