"""Real speech for tests: pyannote.audio's bundled two-speaker recording."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from pyannote.database.util import load_rttm

import pyannote.audio

SAMPLE_DIR = Path(pyannote.audio.__file__).parent / "sample"
SAMPLE_WAV = SAMPLE_DIR / "sample.wav"
SAMPLE_RTTM = SAMPLE_DIR / "sample.rttm"
REFERENCE = next(iter(load_rttm(SAMPLE_RTTM).values()))  # the sample's reference turns (pyannote's)


def sample_speech_48k() -> np.ndarray:
    """The 30 s sample at 48 kHz, mono float32; shape: (frames,)."""
    speech, rate = sf.read(SAMPLE_WAV, dtype="float32")
    return torchaudio.functional.resample(torch.from_numpy(speech), rate, 48000).numpy()


def speech_with_background(path: Path, duration_s: float, seed: int = 0) -> Path:
    """Stereo 48 kHz WAV: the sample looped to ``duration_s``, over a soft chord and noise."""
    speech = sample_speech_48k()
    frames = round(duration_s * 48000)
    speech = np.tile(speech, frames // len(speech) + 1)[:frames]
    t = np.arange(frames) / 48000
    chord = sum(np.sin(2 * np.pi * hz * t) for hz in (110.0, 164.8, 220.0, 277.2)) * 0.01
    noise = np.random.default_rng(seed).normal(0.0, 0.003, size=(frames, 2))
    mix = np.stack([speech * 0.9 + chord, speech * 0.8 + chord * 0.7], axis=1) + noise  # shape: (frames, 2)
    sf.write(path, mix.astype(np.float32), 48000, subtype="FLOAT")
    return path


def one_speaker_of_sample(label: str) -> np.ndarray:
    """The parts of the sample where only ``label`` speaks, joined; shape: (frames,)."""
    speech = sample_speech_48k()
    others = REFERENCE.subset([label], invert=True).get_timeline().support()
    alone = REFERENCE.label_timeline(label).support().extrude(others)
    return np.concatenate([speech[round(s.start * 48000) : round(s.end * 48000)] for s in alone])
