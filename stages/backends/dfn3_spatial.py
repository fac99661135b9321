"""DeepFilterNet3 refined by the programme's own spatial cues: a multichannel Wiener filter.

DeepFilterNet3 hears one signal at a time and cannot tell dialogue in the
centre from music that plays there too. A mix's channels can: dialogue sits
at one place in the image (the phantom centre, or C and its bleed into L/R),
music and effects spread elsewhere. This backend hears a group of channels
whole and

1. runs DeepFilterNet3 (the ``dfn3`` backend's streams, opened through the
   registry) on reference signals: a stereo pair's mid and side, turned back
   into L and R; otherwise the group's first signal (C, which the grouping
   puts first), whose dialogue reaches the other channels through a spread
   estimated per frequency, E[x_i d_C*] / E[|d_C|^2];
2. cuts the group into chunks of ``CHUNK_SAMPLES`` (the averaging time) and,
   in the STFT domain of each, estimates per frequency the spatial covariance
   of the dialogue estimate d and of the rest n = x - d (each normalised to
   trace = channels), and per time-frequency point their powers v_s, v_n;
3. applies W = v_s R_s (v_s R_s + mu v_n R_n)^-1 to the mix, ``PASSES`` times
   (each re-estimating 2 from the last W x); mu = ``NOISE_WEIGHT`` under 1
   keeps the dialogue whole rather than remove every trace of the M&E. R_n is
   regularised by ``FLOOR`` times its mean eigenvalue. W is computed through
   a joint diagonalisation per frequency (R_n = L L^H, L^-1 R_s L^-H =
   U diag(lam) U^H), so a time-frequency point costs two small matrix
   products and M gains v_s lam / (v_s lam + mu v_n), no matrix inversion.

Per group size: 1 signal (mono, or 5.1/7.1 with ``dialogue_channels:
center``) is DeepFilterNet3 alone (there is no image to use); 2 (stereo
L, R) uses mid and side; 3 or more (``front``: C L R; ``all``: C and every
channel but LFE) DeepFilterNet3 on C and the filter over the whole group. Chunks overlap by ``FADE_SAMPLES``
and are cross-faded (:class:`~dubprep.stages.backends.streaming.ChunkedStream`),
so memory and latency are bounded by a chunk whatever the programme's
length. The dialogue is W x, so DX + ME still sums to the mix.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from pydantic import BaseModel

from dubprep.audio_io import SAMPLE_RATE
from dubprep.stages.backends import dfn3, mefx
from dubprep.stages.backends.separation import (
    DIALOGUE,
    SEPARATORS,
    SeparationBackend,
    SeparationStream,
    all_together,
)
from dubprep.stages.backends.streaming import (
    ChunkedStream,
    ChunkPlan,
    FrameQueue,
    StreamSet,
    crossfade_weights,
    trimmed_tail,
)

# Chosen on tuning clips only (notes/dfn3-spatial.md: benchmarks/separation.py's stereo clips and
# 5.1 clips built from the same tune-split stems). Against these: a 2048-sample FFT scored
# 0.1 dB lower on stereo, 1024 0.6 dB lower, 8192 0.3 dB lower; a second pass re-estimated from
# the first's output 0.1-0.2 dB lower on stereo (0.2 dB higher on 5.1); 4-s chunks 0.5 dB lower
# on 5.1 (equal on stereo); the spread averaged over 2 x 8 + 1 bins 0.2 dB lower on 5.1, over
# 2 x 64 + 1 bins 0.2 dB higher (not taken: those clips' bleed is a flat gain, a room's is not).
CHUNK_SAMPLES = 8 * SAMPLE_RATE  # the covariances' averaging time
FADE_SAMPLES = SAMPLE_RATE  # overlap of consecutive chunks, cross-faded
FFT_SAMPLES = 4096
HOP_SAMPLES = FFT_SAMPLES // 2  # sine analysis and synthesis windows: 50 % overlap adds to one
PASSES = 1
FLOOR = 1e-3  # R_n + FLOOR * mean eigenvalue * I: keeps the inversion stable on rank-deficient mixes
# Speech-distortion weight: W = v_s R_s (v_s R_s + NOISE_WEIGHT v_n R_n)^-1 keeps more of the
# dialogue in DX than the plain MMSE filter (1.0): on the stereo tuning clips 0.5 scored +0.33 dB
# dialogue SDR over 1.0 and left 9.9 s of speech in their M&E (QC's detector) instead of 11.6 s
# (DeepFilterNet3 alone: 17.2 s); 0.25 was within 0.02 dB, 0.1 0.3 dB lower; 5.1 within 0.01 dB.
NOISE_WEIGHT = 0.5
SMOOTH_BINS = 32  # the dialogue's spread is averaged over 2 x 32 + 1 bins (760 Hz)
_TINY = 1e-12  # powers below this are silence


def centre_first(signals: tuple[int, ...], names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Every signal in one group, C first when there is one (it carries the dialogue to start from)."""
    if "C" not in names:
        return all_together(signals, names)
    centre = signals[names.index("C")]
    return ((centre, *(signal for signal in signals if signal != centre)),)


class Dfn3Spatial(SeparationBackend):
    """DeepFilterNet3's dialogue refined by a multichannel Wiener filter over the searched channels."""

    Params = dfn3.Dfn3Params
    music_splitter = mefx.MusicEffectsSplit
    grouping = staticmethod(centre_first)
    mid_side = False  # the stream takes L and R and forms mid and side itself

    def weights_checksum(self, params: BaseModel) -> str:
        return SEPARATORS.get("dfn3").weights_checksum(params)

    def open(self, params: dfn3.Dfn3Params, channels: list[int], device: str) -> list[SeparationStream]:
        # One signal has no image to refine with (a single-channel Wiener post-filter of
        # DeepFilterNet3 scored 0.1 dB lower on the tuning clips): DeepFilterNet3 as it is.
        plain = SEPARATORS.get("dfn3")
        return [SpatialStream(params, count, device) if count > 1 else plain.open(params, [1], device)[0]
                for count in channels]


class SpatialStream(SeparationStream):
    """Dialogue of a group of ``channels`` signals (C first if any): blocks (frames, channels) in, (k, channels) out.

    DeepFilterNet3 runs one block ahead in a worker thread while the filter
    works on the block before (both release the GIL in native code), so a
    group with one DeepFilterNet3 stream keeps two cores busy.
    """

    def __init__(self, params: dfn3.Dfn3Params, channels: int, device: str) -> None:
        self._channels = channels
        self._mid_side = channels == 2
        references = 2 if self._mid_side else 1
        self._dfn3 = StreamSet(SEPARATORS.get("dfn3").open(params, [1] * references, device), parallel=True)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="dfn3-spatial")
        self._pending: Future[list[dict[str, np.ndarray]]] | None = None
        self._mix = FrameQueue(channels)
        plan = ChunkPlan(CHUNK_SAMPLES, CHUNK_SAMPLES - FADE_SAMPLES, trimmed_tail, batch_chunks=1)
        self._chunks = ChunkedStream(
            plan, self._filter, channels + references, 1,
            functools.partial(crossfade_weights, fade_samples=FADE_SAMPLES),
        )

    def process(self, block: np.ndarray) -> dict[str, np.ndarray]:
        """Feed ``block`` (frames, channels); return the dialogue now complete (k, channels)."""
        self._mix.push(block)
        answers = self._pending.result() if self._pending else []
        self._pending = self._worker.submit(self._dfn3.process, self._references(block))
        return {DIALOGUE: self._refine(answers)}

    def flush(self) -> dict[str, np.ndarray]:
        """Flush DeepFilterNet3, then the chunks; return the rest of the dialogue (k, channels)."""
        parts = [self._refine(self._pending.result() if self._pending else [])]
        self._pending = None
        parts.append(self._refine(self._dfn3.flush()))
        parts.append(self._chunks.flush()[0, : self._channels].T)
        return {DIALOGUE: np.ascontiguousarray(np.concatenate(parts))}

    def close(self) -> None:
        self._worker.shutdown()
        self._dfn3.close()

    def _references(self, block: np.ndarray) -> list[np.ndarray]:
        """DeepFilterNet3's inputs, (frames, 1) each: mid and side of a pair, else the first signal."""
        if self._mid_side:
            left, right = block[:, :1], block[:, 1:]
            return [(left + right) * np.float32(0.5), (left - right) * np.float32(0.5)]
        return [block[:, :1]]

    def _refine(self, answers: list[dict[str, np.ndarray]]) -> np.ndarray:
        """Pair DeepFilterNet3's dialogue with the mix frames it answers; the chunks' dialogue now complete (k, channels)."""
        if not answers:
            return np.zeros((0, self._channels), dtype=np.float32)
        dialogue = np.concatenate([answer[DIALOGUE] for answer in answers], axis=1)  # shape: (k, references)
        mix = self._mix.pop(len(dialogue))
        out = self._chunks.process(np.concatenate([mix, dialogue], axis=1))  # shape: (1, channels + references, k')
        # The chunked stream returns as many signals as it is fed; only the first are dialogue.
        return out[0, : self._channels].T

    def _filter(self, chunks: np.ndarray) -> np.ndarray:
        """(chunks, channels + references, samples) -> (chunks, 1, channels + references, samples), dialogue first."""
        out = np.zeros((len(chunks), 1, *chunks.shape[1:]), dtype=np.float32)
        for row, chunk in enumerate(chunks):
            mix, reference = chunk[: self._channels], chunk[self._channels :]
            out[row, 0, : self._channels] = wiener_dialogue(mix, reference, self._mid_side)
        return out


# --- the filter on one chunk --------------------------------------------------------------------


@functools.cache
def _window(fft_samples: int) -> np.ndarray:
    return np.sin(np.pi * (np.arange(fft_samples) + 0.5) / fft_samples).astype(np.float32)


def stft(signals: np.ndarray) -> np.ndarray:
    """(channels, samples) -> (channels, frames, bins), frames every HOP_SAMPLES from FFT_SAMPLES - HOP_SAMPLES before 0."""
    pad = FFT_SAMPLES - HOP_SAMPLES
    frames = -(-(signals.shape[1] + pad) // HOP_SAMPLES)
    padded = np.zeros((signals.shape[0], (frames - 1) * HOP_SAMPLES + FFT_SAMPLES), dtype=np.float32)
    padded[:, pad : pad + signals.shape[1]] = signals
    framed = np.lib.stride_tricks.sliding_window_view(padded, FFT_SAMPLES, axis=1)[:, ::HOP_SAMPLES]
    return np.fft.rfft(framed * _window(FFT_SAMPLES), axis=-1)  # shape: (channels, frames, bins)


def istft(spectra: np.ndarray, samples: int) -> np.ndarray:
    """Inverse of :func:`stft`, (channels, frames, bins) -> (channels, samples), weighted overlap-add."""
    window = _window(FFT_SAMPLES)
    frames = np.fft.irfft(spectra, n=FFT_SAMPLES, axis=-1) * window  # shape: (channels, frames, FFT_SAMPLES)
    length = (spectra.shape[1] - 1) * HOP_SAMPLES + FFT_SAMPLES
    out = np.zeros((spectra.shape[0], length), dtype=np.float32)
    norm = np.zeros(length, dtype=np.float32)
    for index in range(spectra.shape[1]):
        at = slice(index * HOP_SAMPLES, index * HOP_SAMPLES + FFT_SAMPLES)
        out[:, at] += frames[:, index]
        norm[at] += window**2
    pad = FFT_SAMPLES - HOP_SAMPLES
    return out[:, pad : pad + samples] / norm[pad : pad + samples]


def wiener_dialogue(mix: np.ndarray, reference: np.ndarray, mid_side: bool) -> np.ndarray:
    """The dialogue (channels, samples) of a chunk of ``mix`` given DeepFilterNet3's ``reference``.

    ``reference`` is the dialogue of mid and side (2, samples) when
    ``mid_side``, else of the mix's first channel (1, samples).
    """
    x = np.transpose(stft(mix), (2, 0, 1))  # shape: (bins, channels, frames)
    guide = np.transpose(stft(reference), (2, 0, 1))  # shape: (bins, references, frames)
    if mid_side:
        dialogue = np.concatenate([guide[:, :1] + guide[:, 1:], guide[:, :1] - guide[:, 1:]], axis=1)
    else:
        dialogue = _spread(x, guide)
    for _ in range(PASSES):
        dialogue = _apply(x, dialogue)
    return istft(np.transpose(dialogue, (1, 2, 0)), mix.shape[1])


def _spread(x: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The dialogue image (bins, channels, frames) of the first channel's dialogue ``centre`` (bins, 1, frames).

    Each other channel gets it through its transfer per frequency,
    E[x_i d*] / E[|d|^2] over the chunk and ``SMOOTH_BINS`` neighbouring
    bins (what of x_i moves with d; over one bin alone, chance correlation
    with a loud effect leaks dialogue into its channel).
    """
    power = _smoothed(np.sum(np.abs(centre) ** 2, axis=2)) + _TINY  # shape: (bins, 1)
    transfer = _smoothed((x @ np.conj(np.swapaxes(centre, 1, 2)))[..., 0]) / power  # shape: (bins, channels)
    transfer[:, 0] = 1.0
    # Where d is next to silent (above its band, in pauses) the ratio is noise over nothing:
    # no channel carries the centre's dialogue louder than the centre does.
    transfer /= np.maximum(np.abs(transfer), 1.0)
    return transfer[:, :, None] * centre


def _smoothed(per_bin: np.ndarray) -> np.ndarray:
    """(bins, ...) averaged over SMOOTH_BINS bins on either side of each bin (fewer at the edges)."""
    total = np.cumsum(np.concatenate([np.zeros_like(per_bin[:1]), per_bin]), axis=0)
    bins = np.arange(len(per_bin))
    low, high = np.maximum(bins - SMOOTH_BINS, 0), np.minimum(bins + SMOOTH_BINS + 1, len(per_bin))
    return total[high] - total[low]


def _covariance(spectra: np.ndarray) -> np.ndarray:
    """Spatial covariance per frequency (bins, channels, channels), trace = channels, of (bins, channels, frames)."""
    covariance = (spectra @ np.conj(np.swapaxes(spectra, 1, 2))).astype(np.complex128)
    trace = np.real(np.trace(covariance, axis1=1, axis2=2))[:, None, None] + _TINY
    return covariance * (spectra.shape[1] / trace)


def _apply(x: np.ndarray, dialogue: np.ndarray) -> np.ndarray:
    """W x (bins, channels, frames) for W = v_s R_s (v_s R_s + v_n R_n)^-1, from ``dialogue`` and x - dialogue."""
    rest = x - dialogue
    r_s, r_n = _covariance(dialogue), _covariance(rest)
    r_n = r_n + FLOOR * np.eye(x.shape[1])  # the trace is the channel count: the mean eigenvalue is 1
    lower = np.linalg.cholesky(r_n)  # shape: (bins, channels, channels)
    lower_inv = np.linalg.inv(lower)
    lam, vectors = np.linalg.eigh(lower_inv @ r_s @ np.conj(np.swapaxes(lower_inv, 1, 2)))
    analysis = (np.conj(np.swapaxes(vectors, 1, 2)) @ lower_inv).astype(np.complex64)  # U^H L^-1
    synthesis = (lower @ vectors).astype(np.complex64)  # L U, the inverse of U^H L^-1
    v_s = np.mean(np.abs(dialogue) ** 2, axis=1, keepdims=True)  # shape: (bins, 1, frames)
    v_n = np.mean(np.abs(rest) ** 2, axis=1, keepdims=True)
    signal = v_s * np.maximum(lam, 0.0).astype(np.float32)[:, :, None]  # shape: (bins, channels, frames)
    gains = signal / (signal + NOISE_WEIGHT * v_n + _TINY)
    return synthesis @ ((analysis @ x) * gains)
