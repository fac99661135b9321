"""Mono 16 kHz reading of a programme stem and Silero voice activity detection.

Both speech models run at 16 kHz on one channel, while a dialogue stem is
48 kHz in its source layout (up to 7.1). Nothing here holds the programme in
memory: :meth:`MonoSource.read` decodes any span on demand (downmix, then an
anti-alias FIR and decimation computed from the span plus a little context,
so consecutive spans join sample-exactly), and :func:`detect_speech` runs the
recurrent VAD block by block, keeping only one probability per 32 ms.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import firwin

from dubprep.errors import MediaError, ModelError
from dubprep.progress import ProgressHook

MODEL_RATE = 16_000
VAD_CHUNK_SAMPLES = 512  # Silero's fixed input at 16 kHz (32 ms)
_FIR_HALF_TAPS = 20  # filter half-length in output (16 kHz) samples: ~1.3 ms each side
_BLOCK_SAMPLES = MODEL_RATE * 30  # 30 s of 16 kHz audio per VAD read


@dataclass(frozen=True)
class SpeechRegion:
    """Speech between ``start`` and ``end`` (16 kHz sample indices, end exclusive)."""

    start: int
    end: int


@dataclass(frozen=True)
class MonoSource:
    """A stem read as mono 16 kHz: the mean of ``channels`` (indices), decimated."""

    path: Path
    channels: tuple[int, ...]
    factor: int
    samples: int  # length in 16 kHz samples (a partial last period is dropped)

    @classmethod
    def open(cls, path: Path, channel_names: tuple[str, ...]) -> MonoSource:
        """``path`` downmixed without its LFE: the LFE carries no dialogue, only rumble."""
        info = sf.info(str(path))
        if info.samplerate % MODEL_RATE:
            raise MediaError(
                f"{path}: sample rate {info.samplerate} Hz is not a multiple of 16 kHz; "
                "re-run the extract stage, which writes 48 kHz"
            )
        if info.channels != len(channel_names):
            raise MediaError(
                f"{path}: {info.channels} channels where media.json names {len(channel_names)}; "
                "re-run the separate stage"
            )
        keep = tuple(i for i, name in enumerate(channel_names) if name != "LFE")
        factor = info.samplerate // MODEL_RATE
        return cls(path, keep, factor, info.frames // factor)

    def read(self, start: int, frames: int) -> np.ndarray:
        """Samples ``start`` .. ``start + frames`` as mono 16 kHz float32; shape: (frames,).

        Output sample n is the filtered source at frame ``n * factor``; the
        filter's context outside the file is zeros, so spans read one after
        another join exactly as if the file had been filtered whole.
        """
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
    """Mono 16 kHz audio already in memory (a short clip), read like a :class:`MonoSource`."""

    audio: np.ndarray  # shape: (samples,)

    @property
    def samples(self) -> int:
        return len(self.audio)

    def read(self, start: int, frames: int) -> np.ndarray:
        """Samples ``start`` .. ``start + frames``; shape: (frames,)."""
        return self.audio[start : start + frames]


Source = MonoSource | ArraySource


@functools.cache
def _antialias_fir(factor: int) -> np.ndarray:
    """Linear-phase low-pass for ``factor``:1 decimation; shape: (taps,).

    Cut-off at 90 % of the new Nyquist (7.2 kHz): speech energy above that
    does not matter to either model, and the transition band then stays
    below 8 kHz so nothing folds back.
    """
    if factor == 1:
        return np.ones(1, dtype=np.float32)
    taps = 2 * _FIR_HALF_TAPS * factor + 1
    return firwin(taps, 0.9 / factor).astype(np.float32)


def load_vad_model() -> torch.jit.ScriptModule:
    """Silero VAD from the TorchScript file inside the ``silero-vad`` wheel."""
    threads = torch.get_num_threads()
    try:
        # silero_vad sets torch's global thread count to 1 when imported;
        # put it back so other stages in this process keep their threads.
        from silero_vad import load_silero_vad

        return load_silero_vad(onnx=False)
    except (OSError, RuntimeError) as err:
        raise ModelError(
            f"silero-vad: its bundled model could not be loaded ({err}); reinstall it with "
            "'pip install --force-reinstall silero-vad==6.2.3'"
        ) from err
    finally:
        torch.set_num_threads(threads)


def speech_probabilities(source: Source, progress: ProgressHook) -> np.ndarray:
    """Silero speech probability of every 32 ms chunk of ``source``; shape: (chunks,)."""
    model = load_vad_model()
    model.reset_states()
    total = source.samples
    chunks = []
    progress.start("diarize: voice activity", total)
    with torch.inference_mode():
        for start in range(0, total, _BLOCK_SAMPLES):
            frames = min(_BLOCK_SAMPLES, total - start)
            audio = source.read(start, frames)
            padded = np.zeros(-(-frames // VAD_CHUNK_SAMPLES) * VAD_CHUNK_SAMPLES, np.float32)
            padded[:frames] = audio
            windows = torch.from_numpy(padded).reshape(-1, VAD_CHUNK_SAMPLES)
            # shape: (chunks, 512); the model is recurrent, so chunks go in order
            chunks.append(np.array([model(w, MODEL_RATE).item() for w in windows], np.float32))
            progress.advance(frames)
    progress.finish()
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def detect_speech(source: Source, threshold: float, progress: ProgressHook) -> list[SpeechRegion]:
    """Speech regions of ``source`` (16 kHz sample indices), in time order.

    Silero's own hysteresis decides them: speech starts above ``threshold``,
    ends after 100 ms below ``threshold - 0.15``, regions shorter than
    250 ms are dropped and each keeps 30 ms of padding. These are the
    model's published defaults; on pyannote's sample they miss 0.15 s and
    add 0.22 s out of 22 s of speech.
    """
    from silero_vad import get_speech_timestamps_from_probs

    probabilities = speech_probabilities(source, progress)
    stamps = get_speech_timestamps_from_probs(
        probabilities.tolist(),
        sampling_rate=MODEL_RATE,
        threshold=threshold,
        audio_length_samples=source.samples,
    )
    return [SpeechRegion(int(s["start"]), int(s["end"])) for s in stamps]
