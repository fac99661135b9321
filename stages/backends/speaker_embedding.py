"""Resemblyzer speaker embeddings of 1.2-s windows, computed in batches.

Resemblyzer (a d-vector encoder whose weights ship in its wheel) embeds
the 1.2 s of audio centred on each 0.1-s frame of speech. Windows are read
from the stem per batch of neighbours, never the whole file, and their mel
spectrograms are batched per hop phase: equal to Resemblyzer's own, window
by window (tests/test_diarize.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from dubprep.audio_io import SPEECH_RATE, Source
from dubprep.errors import ModelError
from dubprep.lazy import lazy_module
from dubprep.progress import ProgressHook

torch = lazy_module("torch")  # imported when a run first embeds: a project validates without it

WINDOW_SAMPLES = SPEECH_RATE * 12 // 10  # 1.2 s of audio per embedding
MEL_HOP_SAMPLES = SPEECH_RATE // 100  # Resemblyzer's mel hop, 10 ms
MEL_FFT_SAMPLES = SPEECH_RATE * 25 // 1000  # and its 25-ms mel window
DIMENSION = 256
_MEL_BANDS = 40
WINDOW_MEL_FRAMES = WINDOW_SAMPLES // MEL_HOP_SAMPLES + 1  # 121: its spectrogram of 1.2 s (centred frames)
# Frames whose 25 ms reach past a window's ends, where Resemblyzer hears zeros.
_EDGE_FRAMES = np.array([0, 1, WINDOW_MEL_FRAMES - 2, WINDOW_MEL_FRAMES - 1])
_TARGET_DBFS = -30.0  # Resemblyzer's training level (audio_norm_target_dBFS)
_BATCH = 64  # windows per encoder call
_BATCH_SPAN = SPEECH_RATE * 8  # and at most 8 s of audio read for them


@functools.cache
def load_encoder(device: str) -> torch.nn.Module:
    """Resemblyzer's speaker encoder from the weights inside its wheel, on ``device``."""
    from resemblyzer import VoiceEncoder

    try:
        return VoiceEncoder(device=device, verbose=False).eval()
    except Exception as err:  # resemblyzer raises a bare Exception for missing weights
        raise ModelError(
            f"resemblyzer: its bundled pretrained.pt could not be loaded ({err}); reinstall it "
            "with 'pip install --force-reinstall resemblyzer==0.1.4'"
        ) from err


def _mel_batch(audio: np.ndarray, window_starts: np.ndarray) -> torch.Tensor:
    """Level-normalised mel spectrograms of windows of ``audio``, as Resemblyzer makes them; shape: (windows, 121, 40).

    Windows whose starts (samples into ``audio``) differ by whole 10-ms mel
    hops are rows of one spectrogram: one STFT per such group (windows of a
    speech region are 0.1 s apart, so a batch has about a group per region
    it spans) instead of one per window, which overlap twelvefold. Only the
    two outermost frames at either end of a window, where Resemblyzer pads
    the window with zeros, are computed apart. Resemblyzer's mel is power,
    so levelling a window's audio to -30 dBFS is scaling its rows by the
    squared gain.
    """
    from resemblyzer.audio import wav_to_mel_spectrogram

    needed = int(window_starts.max()) + WINDOW_SAMPLES
    audio = np.pad(audio, (0, max(0, needed - len(audio))))
    windows = np.empty((len(window_starts), WINDOW_MEL_FRAMES, _MEL_BANDS), np.float32)
    phases = window_starts % MEL_HOP_SAMPLES
    for phase in np.unique(phases):
        group = phases == phase
        first, last = int(window_starts[group].min()), int(window_starts[group].max())
        mel = wav_to_mel_spectrogram(audio[first : last + WINDOW_SAMPLES])  # shape: (1 + span // 160, 40)
        rows = (window_starts[group] - first)[:, None] // MEL_HOP_SAMPLES + np.arange(WINDOW_MEL_FRAMES)
        windows[group] = mel[rows]  # shape: (group windows, 121, 40)
    windows[:, _EDGE_FRAMES] = _edge_frames(audio, window_starts)
    squares = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    rms = np.sqrt((squares[window_starts + WINDOW_SAMPLES] - squares[window_starts]) / WINDOW_SAMPLES) + 1e-9
    gain = (10 ** (_TARGET_DBFS / 20) / rms) ** 2  # shape: (windows,)
    return torch.from_numpy((windows * gain[:, None, None]).astype(np.float32))


def _edge_frames(audio: np.ndarray, window_starts: np.ndarray) -> np.ndarray:
    """Mel frames ``_EDGE_FRAMES`` of each window alone, zeros beyond its ends; shape: (windows, 4, 40).

    librosa's centred STFT as Resemblyzer calls it: periodic Hann window,
    power spectrum, Slaney mel filters.
    """
    import librosa

    basis = _mel_basis()
    starts = window_starts[:, None, None]
    centres = starts + _EDGE_FRAMES[:, None] * MEL_HOP_SAMPLES  # shape: (windows, 4, 1)
    at = centres - MEL_FFT_SAMPLES // 2 + np.arange(MEL_FFT_SAMPLES)  # shape: (windows, 4, 400)
    inside = (at >= starts) & (at < starts + WINDOW_SAMPLES)
    segments = np.where(inside, audio[np.clip(at, 0, len(audio) - 1)], 0.0)
    hann = librosa.filters.get_window("hann", MEL_FFT_SAMPLES, fftbins=True)
    power = np.abs(np.fft.rfft(segments * hann, axis=-1)) ** 2  # shape: (windows, 4, 201)
    return power @ basis.T


@functools.cache
def _mel_basis() -> np.ndarray:
    """Resemblyzer's mel filters; shape: (40, 201)."""
    import librosa

    return librosa.filters.mel(sr=SPEECH_RATE, n_fft=MEL_FFT_SAMPLES, n_mels=_MEL_BANDS)


def _batches(window_starts: np.ndarray) -> Iterator[slice]:
    """Runs of up to ``_BATCH`` windows that start within ``_BATCH_SPAN`` of the run's first."""
    first = 0
    while first < len(window_starts):
        limit = np.searchsorted(window_starts, window_starts[first] + _BATCH_SPAN, side="right")
        last = min(first + _BATCH, max(first + 1, limit))
        yield slice(first, last)
        first = last


def embed_windows(source: Source, centres: np.ndarray, device: str, progress: ProgressHook) -> np.ndarray:
    """Unit-norm embedding of the 1.2 s around every centre (16 kHz samples); shape: (centres, 256).

    Windows are clamped inside the programme, so a frame near its start or
    end is embedded from the first or last 1.2 s. Audio is read per batch
    of neighbouring windows (at most ~9 s), never for the whole file.
    """
    encoder = load_encoder(device)
    window_starts = np.clip(centres - WINDOW_SAMPLES // 2, 0, max(0, source.samples - WINDOW_SAMPLES))
    out = np.zeros((len(window_starts), DIMENSION), np.float32)
    progress.start("diarize: speaker embeddings", len(window_starts))
    with torch.inference_mode():
        for batch in _batches(window_starts):
            starts = window_starts[batch]
            audio = source.read(int(starts[0]), int(starts[-1] - starts[0]) + WINDOW_SAMPLES)
            out[batch] = encoder(_mel_batch(audio, starts - starts[0]).to(device)).cpu().numpy()
            progress.advance(len(starts))
    progress.finish()
    return out
