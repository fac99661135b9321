"""Dialogue left in the M&E: Silero VAD on the signals where dialogue sits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from dubprep.audio_io import SPEECH_RATE, Decimator, centre_signals, iter_aligned
from dubprep.progress import ProgressHook
from dubprep.qc.result import SpeechSpan
from dubprep.vad import WINDOW_SAMPLES, lane_probabilities, speech_spans

# Silero's defaults, with pauses under 0.3 s bridged so one line of dialogue reads as one span.
VAD_THRESHOLD = 0.5
SPEECH_DETECTOR = f"Silero VAD on the centre signals, threshold {VAD_THRESHOLD}"
_SILERO = {"min_speech_duration_ms": 250, "min_silence_duration_ms": 300, "speech_pad_ms": 30}


def detect_speech(blocks: Iterable[np.ndarray], layout: str, progress: ProgressHook) -> list[SpeechSpan]:
    """Speech spans in a stem given block by block (frames, channels), by Silero VAD on its centre signals.

    A window's probability is the highest of its centre signals'.
    """
    signals = 1 if layout in ("mono", "stereo") else 2
    probabilities, samples = lane_probabilities(_centre_16k(blocks, layout, progress), signals)
    return [
        SpeechSpan(
            start_s=span.start / SPEECH_RATE, end_s=span.end / SPEECH_RATE,
            peak_probability=float(probabilities[span.start // WINDOW_SAMPLES : -(-span.end // WINDOW_SAMPLES)].max()),
        )
        for span in speech_spans(probabilities, samples, VAD_THRESHOLD, **_SILERO)
    ]


def file_blocks(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """A delivered stem's blocks (frames, channels): one file, or one mono file per channel side by side."""
    for (block,) in iter_aligned([files]):
        yield block


def _centre_16k(blocks: Iterable[np.ndarray], layout: str, progress: ProgressHook) -> Iterator[np.ndarray]:
    """The stem's centre signals at 16 kHz, block by block; shape of each (samples, signals)."""
    decimator = Decimator()
    for block in blocks:
        yield decimator(centre_signals(block, layout))
        progress.advance(len(block))
