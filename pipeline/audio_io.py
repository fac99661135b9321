"""Streaming WAV I/O with soundfile.

Nothing here reads a whole file: a 2-hour 5.1 programme at 48 kHz in float32
is 8 GB, so stages read and write in blocks. Files that would pass the 4 GiB
RIFF limit are written as RF64, which soundfile, ffmpeg and Pro Tools read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 48_000
BLOCK_FRAMES = 48_000 * 10  # 10 s per block: small in memory, few Python calls
_RIFF_LIMIT_BYTES = 2**32 - 1 - 1024  # headroom for the header chunks
_SFC_SET_ADD_PEAK_CHUNK = 0x1050
_BYTES_PER_SAMPLE = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


@dataclass(frozen=True)
class AudioInfo:
    """Shape and rate of a WAV file."""

    frames: int
    channels: int
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def audio_info(path: Path) -> AudioInfo:
    """Frames, channels and sample rate of ``path`` without reading samples."""
    info = sf.info(str(path))
    return AudioInfo(frames=info.frames, channels=info.channels, sample_rate=info.samplerate)


def container_for(frames: int, channels: int, subtype: str) -> str:
    """'WAV' when the data fits a RIFF file, 'RF64' when it does not."""
    data_bytes = frames * channels * _BYTES_PER_SAMPLE[subtype]
    return "WAV" if data_bytes < _RIFF_LIMIT_BYTES else "RF64"


def open_writer(
    path: Path, frames: int, channels: int, subtype: str = "FLOAT", sample_rate: int = SAMPLE_RATE
) -> sf.SoundFile:
    """Open ``path`` for writing ``frames`` x ``channels`` samples in blocks.

    The file holds only the format and data chunks: libsndfile's PEAK chunk
    carries the wall-clock time, which would make identical audio hash
    differently and defeat the cache. soundfile has no public switch for it,
    so the libsndfile command is sent through its handle.
    """
    writer = _Writer(
        str(path),
        mode="w",
        samplerate=sample_rate,
        channels=channels,
        subtype=subtype,
        format=container_for(frames, channels, subtype),
    )
    sf._snd.sf_command(writer._file, _SFC_SET_ADD_PEAK_CHUNK, sf._ffi.NULL, sf._snd.SF_FALSE)
    return writer


class _Writer(sf.SoundFile):
    """A SoundFile whose failed writes raise OSError, as Python's own files do.

    libsndfile reports a full disk or a file past the file system's size
    limit (FAT32, RLIMIT_FSIZE) only as a generic system error; the errno
    its failed write() left names the reason, and as an OSError it reaches
    the engine's "free disk space or choose another --output" message.
    """

    def write(self, data: np.ndarray) -> None:
        try:
            super().write(data)
        except sf.LibsndfileError as exc:
            code = sf._ffi.errno  # cffi keeps the errno of this thread's last C call
            if not code:
                raise
            raise OSError(code, os.strerror(code), self.name) from exc


def iter_blocks(path: Path, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Yield float32 blocks of ``path``; shape of each: (frames, channels)."""
    with sf.SoundFile(str(path)) as f:
        while True:
            block = f.read(block_frames, dtype="float32", always_2d=True)
            if len(block) == 0:
                return
            yield block


def read_span(path: Path, start_frame: int, frames: int) -> np.ndarray:
    """Read ``frames`` samples from ``start_frame``; shape: (frames, channels)."""
    with sf.SoundFile(str(path)) as f:
        f.seek(start_frame)
        return f.read(frames, dtype="float32", always_2d=True)
