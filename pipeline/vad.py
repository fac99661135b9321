"""Silero voice activity detection, for the diarizer and for QC.

Silero VAD is a small recurrent network on 512-sample windows at 16 kHz. It
runs here on one torch thread: its steps are so small that a second thread
only adds hand-offs (about 20x slower on this project's 2-core machine, and
bit-identical). Two ways to run it:

- :func:`sequential_probabilities`: every window in order, one state for the
  whole programme (the diarizer, whose published results were measured so);
- :func:`lane_probabilities`: the programme cut into lanes of ``LANE_WINDOWS``
  windows, each led by ``PREROLL_WINDOWS`` of the audio before it (whose
  probabilities are dropped, so the state has context at the cut), many
  lanes and signals run as one batch (QC's scan of the M&E, ~20x faster).

:func:`speech_spans` turns probabilities into spans with Silero's own
hysteresis (speech starts above ``threshold`` and ends below it minus 0.15).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dubprep.audio_io import SPEECH_RATE, Source
from dubprep.checksums import sha256_file
from dubprep.errors import ModelError
from dubprep.lazy import lazy_module
from dubprep.progress import ProgressHook

torch = lazy_module("torch")  # imported when first run: a project validates without it

WINDOW_SAMPLES = 512  # Silero's fixed input at 16 kHz (32 ms)
LANE_WINDOWS = 320
PREROLL_WINDOWS = 16
_BATCH_ROWS = 64  # lanes x signals per batch: ~45 MB of 16 kHz audio
_BLOCK_SAMPLES = SPEECH_RATE * 30  # 30 s of 16 kHz audio per sequential read


@dataclass(frozen=True)
class SpeechRegion:
    """Speech between ``start`` and ``end`` (16 kHz sample indices, end exclusive)."""

    start: int
    end: int


def load_model() -> torch.jit.ScriptModule:
    """Silero VAD from the TorchScript file inside the ``silero-vad`` wheel (no download)."""
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


def weights_checksum() -> str:
    """sha256 of Silero's TorchScript file in the ``silero-vad`` wheel.

    Locating it imports ``silero_vad``, which sets torch to one thread for
    the whole process; a run has always found it there after separation.
    """
    return sha256_file(Path(str(importlib.resources.files("silero_vad.data") / "silero_vad.jit")))


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread, then the caller's setting back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def sequential_probabilities(source: Source, progress: ProgressHook) -> np.ndarray:
    """Speech probability of every window of ``source``, one recurrent state throughout; shape: (windows,)."""
    model = load_model()
    model.reset_states()
    total = source.samples
    chunks = []
    progress.start("diarize: voice activity", total)
    with one_torch_thread(), torch.inference_mode():
        for start in range(0, total, _BLOCK_SAMPLES):
            frames = min(_BLOCK_SAMPLES, total - start)
            padded = np.zeros(-(-frames // WINDOW_SAMPLES) * WINDOW_SAMPLES, np.float32)
            padded[:frames] = source.read(start, frames)
            windows = torch.from_numpy(padded).reshape(-1, WINDOW_SAMPLES)  # shape: (windows, 512), in order
            chunks.append(np.array([model(w, SPEECH_RATE).item() for w in windows], np.float32))
            progress.advance(frames)
    progress.finish()
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def lane_probabilities(blocks: Iterator[np.ndarray], signals: int) -> tuple[np.ndarray, int]:
    """Speech probability per window (the highest of the ``signals``) of consecutive 16 kHz ``blocks``
    (samples, signals), and their total length in samples."""
    model = load_model()
    cutter = _LaneCutter(signals)
    lanes: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    with one_torch_thread():
        for block in blocks:
            lanes += cutter.push(block)
            if len(lanes) * signals >= _BATCH_ROWS:
                chunks.append(_run_lanes(model, lanes))
                lanes = []
        lanes += cutter.flush()
        if lanes:
            chunks.append(_run_lanes(model, lanes))
    windows = -(-cutter.samples // WINDOW_SAMPLES)
    probabilities = np.concatenate(chunks)[:windows] if chunks else np.zeros(0, dtype=np.float32)
    return probabilities, cutter.samples


class _LaneCutter:
    """Cuts a 16 kHz stream into lanes of LANE_WINDOWS windows, each led by the PREROLL_WINDOWS before it."""

    def __init__(self, signals: int) -> None:
        self.lane_samples = LANE_WINDOWS * WINDOW_SAMPLES
        self.preroll_samples = PREROLL_WINDOWS * WINDOW_SAMPLES
        self.pending = np.zeros((0, signals), dtype=np.float32)
        self.preroll = np.zeros((self.preroll_samples, signals), dtype=np.float32)  # silence before the start
        self.samples = 0

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Lanes completed by ``samples`` (shape (n, signals)); each lane shape (preroll + lane, signals)."""
        self.samples += len(samples)
        self.pending = np.concatenate([self.pending, samples])
        lanes = []
        while len(self.pending) >= self.lane_samples:
            lane, self.pending = self.pending[: self.lane_samples], self.pending[self.lane_samples :]
            lanes.append(np.concatenate([self.preroll, lane]))
            self.preroll = lane[-self.preroll_samples :]
        return lanes

    def flush(self) -> list[np.ndarray]:
        """The last, partial lane padded with silence (none when the stream ended on a lane boundary)."""
        if not len(self.pending):
            return []
        lane = np.zeros((self.lane_samples, self.pending.shape[1]), dtype=np.float32)
        lane[: len(self.pending)] = self.pending
        self.pending = self.pending[:0]
        return [np.concatenate([self.preroll, lane])]


def _run_lanes(model: torch.jit.ScriptModule, lanes: list[np.ndarray]) -> np.ndarray:
    """Speech probabilities of consecutive lanes, pre-roll dropped; shape (lanes x LANE_WINDOWS,)."""
    signals = lanes[0].shape[1]
    batch = torch.from_numpy(np.concatenate([lane.T for lane in lanes]))  # shape: (lanes * signals, samples)
    model.reset_states()
    with torch.inference_mode():
        steps = [
            model(batch[:, i : i + WINDOW_SAMPLES], SPEECH_RATE)[:, 0] for i in range(0, batch.shape[1], WINDOW_SAMPLES)
        ]
    probabilities = torch.stack(steps, dim=1).numpy()[:, PREROLL_WINDOWS:]  # shape: (lanes * signals, windows)
    per_signal = probabilities.reshape(len(lanes), signals, -1)  # shape: (lanes, signals, windows)
    return per_signal.max(axis=1).reshape(-1)  # shape: (lanes * windows,)


def speech_spans(probabilities: np.ndarray, samples: int, threshold: float, **silero: int) -> list[SpeechRegion]:
    """Speech regions (16 kHz sample indices) from window probabilities, by Silero's hysteresis.

    ``silero`` overrides its defaults (``min_speech_duration_ms`` 250,
    ``min_silence_duration_ms`` 100, ``speech_pad_ms`` 30).
    """
    from silero_vad import get_speech_timestamps_from_probs

    stamps = get_speech_timestamps_from_probs(
        probabilities.tolist(), sampling_rate=SPEECH_RATE, threshold=threshold, audio_length_samples=samples, **silero
    )
    return [SpeechRegion(int(s["start"]), int(s["end"])) for s in stamps]


def detect_speech(source: Source, threshold: float, progress: ProgressHook) -> list[SpeechRegion]:
    """Speech regions of ``source`` in time order, with Silero's published defaults.

    On pyannote's sample they miss 0.15 s and add 0.22 s out of 22 s of speech.
    """
    return speech_spans(sequential_probabilities(source, progress), source.samples, threshold)
