"""Music/effects split of an M&E channel by how steady each frequency is.

Film music is a bed: at any frequency its level holds, within a few dB,
for seconds at a time. Effects are events: they rise well above that level
and fall back. So, per frequency band, the music level is estimated as the
70th percentile of the M&E's power over a 16-s window centred on the
moment, and every STFT bin gets the music share

    mask = min(1, RISE * music_level / power)

(power up to RISE times the music level is all music; above it, the excess
is effects). MX = mask x M&E; the stage writes FX = M&E - MX, so the two
re-sum to the M&E exactly. The window, percentile and RISE were chosen on
benchmarks/separation.py (see there for the scores); a sustained effect such
as a steady ambience goes to MX, a stab of music well above the bed to FX.

It streams: an STFT with 75 % overlap (square-root Hann in and out, so an
all-ones mask gives back the input), a queue of the frames whose window is
not yet complete (8 s ahead) and the band powers of the last 16 s; memory
does not grow with the programme's length.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FFT_SAMPLES = 1920  # 40 ms at 48 kHz: 25 Hz bins
HOP_SAMPLES = FFT_SAMPLES // 4
SEGMENT_HOPS = 25  # 0.25 s: the time step of the music-level estimate
CONTEXT_SEGMENTS = 32  # 8 s either side of a segment: a 16.25-s window
BAND_BINS = 4  # 100-Hz bands: enough detail for a level, 4x less work for the percentile
PERCENTILE = 70.0
RISE = 8.0  # power ratio (9 dB) above the music level that still counts as music
_WINDOW = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FFT_SAMPLES) / FFT_SAMPLES)).astype(np.float32)
# Square-root Hann twice at 75 % overlap sums to 2 at every sample.
_OVERLAP_GAIN = 2.0
_OVERLAP_HOPS = FFT_SAMPLES // HOP_SAMPLES - 1  # hops of a frame after its first: later frames add to them
_TINY_POWER = 1e-30


class MusicEffectsSplit:
    """Streaming music estimate of one mono 48 kHz M&E channel.

    Feed consecutive float32 blocks (frames,) to :meth:`process` and call
    :meth:`flush` once at the end: the concatenated outputs are the music,
    sample-aligned with the input and exactly as long. The output lags the
    input by about 8.3 s (the look-ahead of the music-level window).
    """

    def __init__(self) -> None:
        lead = FFT_SAMPLES - HOP_SAMPLES
        # Zeros before sample 0 so the first frames cover it like any other sample.
        self._input = np.zeros(lead, dtype=np.float32)
        self._lead_to_drop = lead
        self._overlap = np.zeros((_OVERLAP_HOPS, HOP_SAMPLES), dtype=np.float32)  # frames' unfinished tails
        self._frames: list[np.ndarray] = []  # spectra (bins,) of the segment being filled
        self._waiting: deque[tuple[int, np.ndarray]] = deque()  # (segment, spectra (hops, bins))
        self._levels: deque[tuple[int, np.ndarray]] = deque(maxlen=2 * CONTEXT_SEGMENTS + 1)
        self._segments = 0
        self._done: list[np.ndarray] = []  # music synthesised since the last call
        self._fed = 0
        self._emitted = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``block`` (frames,); return the music samples now complete (k,)."""
        self._fed += len(block)
        self._analyse(np.concatenate([self._input, np.asarray(block, dtype=np.float32)]))
        return self._emit()

    def flush(self) -> np.ndarray:
        """Run the tail through with zeros, the window cut at the end; return the rest (k,)."""
        owed = self._fed - self._emitted
        self._analyse(np.concatenate([self._input, np.zeros(FFT_SAMPLES, dtype=np.float32)]))
        self._close_segment()
        while self._waiting:
            self._synthesize(*self._waiting.popleft())
        return self._emit(most=owed)

    def close(self) -> None:
        """Nothing native to free; here so the stage treats every stream alike."""

    def _analyse(self, data: np.ndarray) -> None:
        """STFT every whole frame of ``data``; keep the samples the next frame starts from."""
        count = max(0, (len(data) - FFT_SAMPLES) // HOP_SAMPLES + 1)
        self._input = data[count * HOP_SAMPLES :]
        if count == 0:
            return
        frames = sliding_window_view(data, FFT_SAMPLES)[::HOP_SAMPLES][:count]  # shape: (count, FFT_SAMPLES)
        spectra = np.fft.rfft(frames * _WINDOW, axis=1).astype(np.complex64)  # shape: (count, bins)
        for spectrum in spectra:
            self._frames.append(spectrum)
            if len(self._frames) == SEGMENT_HOPS:
                self._close_segment()

    def _close_segment(self) -> None:
        """Record the filled segment's band powers; synthesise the segment whose window is now whole."""
        if not self._frames:
            return
        spectra = np.stack(self._frames)  # shape: (hops, bins)
        self._frames = []
        power = np.mean(np.abs(spectra) ** 2, axis=0)
        bands = -(-len(power) // BAND_BINS)
        padded = np.pad(power, (0, bands * BAND_BINS - len(power)), mode="edge")
        self._levels.append((self._segments, padded.reshape(bands, BAND_BINS).mean(axis=1)))  # shape: (bands,)
        self._waiting.append((self._segments, spectra))
        self._segments += 1
        if self._waiting[0][0] + CONTEXT_SEGMENTS < self._segments:
            self._synthesize(*self._waiting.popleft())

    def _music_level(self, segment: int) -> np.ndarray:
        """Music level per bin (bins,): the percentile of the band powers around ``segment``."""
        nearby = [power for s, power in self._levels if abs(s - segment) <= CONTEXT_SEGMENTS]
        window = np.stack(nearby)  # shape: (segments, bands)
        level = np.percentile(window, PERCENTILE, axis=0)
        return np.repeat(level, BAND_BINS)[: FFT_SAMPLES // 2 + 1]

    def _synthesize(self, segment: int, spectra: np.ndarray) -> None:
        """Mask the segment's spectra (hops, bins) and overlap-add them into finished samples."""
        power = np.maximum(np.abs(spectra) ** 2, _TINY_POWER)
        mask = np.minimum(1.0, RISE * self._music_level(segment) / power)
        frames = np.fft.irfft(spectra * mask, n=FFT_SAMPLES, axis=1) * (_WINDOW / _OVERLAP_GAIN)
        parts = frames.reshape(len(frames), _OVERLAP_HOPS + 1, HOP_SAMPLES)  # shape: (hops, 4, HOP_SAMPLES)
        summed = np.zeros((len(frames) + _OVERLAP_HOPS, HOP_SAMPLES), dtype=np.float32)
        summed[:_OVERLAP_HOPS] = self._overlap
        # Output hop j is the sum of quarter q of frame j - q.
        for quarter in range(_OVERLAP_HOPS + 1):
            summed[quarter : quarter + len(frames)] += parts[:, quarter]
        self._overlap = summed[len(frames) :]
        self._done.append(summed[: len(frames)].reshape(-1))  # shape: (hops * HOP_SAMPLES,)

    def _emit(self, most: int | None = None) -> np.ndarray:
        """The music synthesised so far, less the samples before input sample 0, at most ``most``."""
        raw = np.concatenate(self._done) if self._done else np.zeros(0, dtype=np.float32)
        self._done = []
        dropped = min(self._lead_to_drop, len(raw))
        self._lead_to_drop -= dropped
        out = raw[dropped:] if most is None else raw[dropped : dropped + most]
        self._emitted += len(out)
        return out
