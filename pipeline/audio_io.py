"""Audio in and out: streaming WAV I/O with soundfile, and every resampling and downmix.

Nothing here reads a whole file: a 2-hour 5.1 programme at 48 kHz in float32
is 8 GB, so stages read and write in blocks. Files that would pass the 4 GiB
RIFF limit are written as RF64, which soundfile, ffmpeg and Pro Tools read.

Resampling is scipy's, in three forms: :func:`resample` for any ratio (a
reference clip, a model's rate); :class:`MonoReader`, a stem downmixed
without its LFE and read as mono 16 kHz at any span (the diarizer's speech
models, which read windows out of order); :class:`Decimator`, 48 kHz ->
16 kHz in consecutive blocks (QC's speech detector, on the signals
:func:`centre_signals` picks). The two 16 kHz paths keep the low-pass
filters their published results were measured with.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from dubprep.errors import MediaError
from dubprep.lazy import lazy_module

# Imported when first resampled with: reading and writing WAVs does not wait for scipy.
signal = lazy_module("scipy.signal")

SAMPLE_RATE = 48_000
SPEECH_RATE = 16_000  # what the speech models (Silero VAD, Resemblyzer, pyannote) hear
_FIR_HALF_TAPS = 20  # MonoReader's filter half-length in output samples: ~1.3 ms each side
BLOCK_FRAMES = SAMPLE_RATE * 10  # 10 s per block: small in memory, few Python calls
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


def open_flac_writer(path: Path, channels: int, sample_rate: int = SAMPLE_RATE) -> sf.SoundFile:
    """Open ``path`` for writing 24-bit FLAC in blocks (the work files: see :mod:`dubprep.stems`)."""
    return _Writer(str(path), mode="w", samplerate=sample_rate, channels=channels, subtype="PCM_24", format="FLAC")


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


def iter_aligned(groups: Sequence[Sequence[Path]], block_frames: int = BLOCK_FRAMES) -> Iterator[list[np.ndarray]]:
    """Blocks of several stems in step: one array per group, its files' channels side by side.

    Yields lists of float32 arrays, each of shape (frames, channels of the
    group), all with the same frames; stops at the end of the shortest file.
    """
    with ExitStack() as stack:
        files = [[stack.enter_context(sf.SoundFile(str(p))) for p in group] for group in groups]
        while True:
            blocks = [[f.read(block_frames, dtype="float32", always_2d=True) for f in group] for group in files]
            frames = min(len(b) for group in blocks for b in group)
            if frames == 0:
                return
            yield [np.concatenate([b[:frames] for b in group], axis=1) for group in blocks]
            if frames < block_frames:
                return


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``audio`` (..., samples) at ``to_rate``, float32: polyphase FIR (scipy's Kaiser design); as is when equal."""
    if from_rate == to_rate:
        return audio
    common = gcd(from_rate, to_rate)
    return signal.resample_poly(audio, to_rate // common, from_rate // common, axis=-1).astype(np.float32)


def without_lfe(channel_names: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of every channel but the LFE, which carries no dialogue, only rumble."""
    return tuple(i for i, name in enumerate(channel_names) if name != "LFE")


def centre_signals(block: np.ndarray, layout: str) -> np.ndarray:
    """Where dialogue sits: the phantom centre (L+R)/2, and C in 5.1/7.1; shape (frames, signals).

    The surrounds and LFE rarely carry dialogue and would only dilute it.
    """
    if layout == "mono":
        return block[:, :1]
    centre = 0.5 * (block[:, 0] + block[:, 1])
    if layout == "stereo":
        return centre[:, None]  # shape: (frames, 1)
    return np.stack([block[:, 2], centre], axis=1)  # shape: (frames, 2)


def fold_to_mono(block: np.ndarray, channel_names: tuple[str, ...]) -> np.ndarray:
    """DX folded to one channel: ``block`` shape (frames, channels) -> (frames, 1).

    Stereo: the mean of L and R, so a line centred between them keeps its
    level (their sum would be 6 dB hotter and clip on loud lines). 5.1 and
    7.1: the sum of every channel but the LFE, not a mean, because dialogue
    sits mostly in C and a mean would lower it by the channel count (5.1's
    five: -14 dB); the LFE holds no dialogue. Never normalised: a clip
    that still passes full scale is reported by QC's clipping check.
    """
    if len(channel_names) == 2:
        return block.mean(axis=1, keepdims=True)  # shape: (frames, 1)
    return block[:, list(without_lfe(channel_names))].sum(axis=1, keepdims=True)  # shape: (frames, 1)


@functools.cache
def _antialias_fir(factor: int) -> np.ndarray:
    """Linear-phase low-pass for ``factor``:1 decimation; shape: (taps,).

    Cut-off at 90 % of the new Nyquist (7.2 kHz at 16 kHz): speech energy
    above that does not matter to the speech models, and the transition band
    then stays below 8 kHz so nothing folds back.
    """
    if factor == 1:
        return np.ones(1, dtype=np.float32)
    taps = 2 * _FIR_HALF_TAPS * factor + 1
    return signal.firwin(taps, 0.9 / factor).astype(np.float32)


@dataclass(frozen=True)
class MonoReader:
    """A stem read as mono 16 kHz: the mean of ``channels`` (indices), decimated by ``factor``.

    Any span can be read on its own: output sample n is the zero-phase
    filtered source at frame ``n * factor``, the filter's context taken from
    the file around the span (zeros outside it), so spans read one after
    another join exactly as if the file had been filtered whole.
    """

    path: Path
    channels: tuple[int, ...]
    factor: int
    samples: int  # length in 16 kHz samples (a partial last period is dropped)

    @classmethod
    def open(cls, path: Path, channel_names: tuple[str, ...]) -> MonoReader:
        """``path`` downmixed without its LFE; MediaError when its rate or channels do not fit."""
        info = sf.info(str(path))
        if info.samplerate % SPEECH_RATE:
            raise MediaError(
                f"{path}: sample rate {info.samplerate} Hz is not a multiple of 16 kHz; "
                "re-run the extract stage, which writes 48 kHz"
            )
        if info.channels != len(channel_names):
            raise MediaError(
                f"{path}: {info.channels} channels where media.json names {len(channel_names)}; "
                "re-run the separate stage"
            )
        factor = info.samplerate // SPEECH_RATE
        return cls(path, without_lfe(channel_names), factor, info.frames // factor)

    def read(self, start: int, frames: int) -> np.ndarray:
        """16 kHz samples ``start`` .. ``start + frames`` as float32; shape: (frames,)."""
        fir = _antialias_fir(self.factor)
        half = (len(fir) - 1) // 2
        first = start * self.factor - half
        count = frames * self.factor + 2 * half
        with sf.SoundFile(str(self.path)) as f:
            f.seek(max(0, first))
            block = f.read(count - max(0, -first), dtype="float32", always_2d=True)
        padded = np.zeros(count, dtype=np.float32)
        offset = max(0, -first)
        padded[offset : offset + len(block)] = block[:, list(self.channels)].mean(axis=1)
        filtered = np.convolve(padded, fir, mode="valid")  # one value per source frame
        return filtered[:: self.factor][:frames].astype(np.float32)


@dataclass(frozen=True, eq=False)
class ArraySource:
    """Mono 16 kHz audio already in memory (a short clip), read like a :class:`MonoReader`."""

    audio: np.ndarray  # shape: (samples,)

    @property
    def samples(self) -> int:
        return len(self.audio)

    def read(self, start: int, frames: int) -> np.ndarray:
        """Samples ``start`` .. ``start + frames``; shape: (frames,)."""
        return self.audio[start : start + frames]


Source = MonoReader | ArraySource

_STREAM_FACTOR = SAMPLE_RATE // SPEECH_RATE


@functools.cache
def _stream_fir() -> np.ndarray:
    """63-tap low-pass below 16 kHz's 8 kHz Nyquist, run causally: its 31-sample (0.65 ms) delay is left in."""
    return signal.firwin(63, 7_200, fs=SAMPLE_RATE).astype(np.float32)


class Decimator:
    """48 kHz -> 16 kHz in consecutive blocks: anti-alias FIR whose state carries across blocks, then every third sample."""

    def __init__(self) -> None:
        self.state: np.ndarray | None = None
        self.position = 0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """``block`` shape (frames, signals) at 48 kHz -> (about frames / 3, signals) at 16 kHz."""
        if self.state is None:
            self.state = np.zeros((len(_stream_fir()) - 1, block.shape[1]), dtype=np.float32)
        filtered, self.state = signal.lfilter(_stream_fir(), [1.0], block, axis=0, zi=self.state)
        first = -self.position % _STREAM_FACTOR  # keep the 48 kHz sample grid across blocks
        self.position += len(block)
        return filtered[first::_STREAM_FACTOR].astype(np.float32)
