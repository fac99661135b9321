"""Diarize (builtin backend) on real speech: pyannote's two-speaker sample and silence."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

from dubprep.media import MediaInfo
from dubprep.stage import StageContext
from dubprep.stages.diarize import DiarizeParams, DiarizeStage
from speech import SAMPLE_RTTM, sample_speech_48k


def diarize(tmp_path: Path, dx: np.ndarray, **params) -> Path:
    """Run the stage on ``dx`` (frames,) written as a mono DX stem; returns the work folder."""
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in/DX.wav", dx, 48000, subtype="FLOAT")
    MediaInfo("reel.wav", 0, "pcm_f32le", "mono", 1, 48000, len(dx), 48000, 0.0, None, None).save(tmp_path / "in/media.json")
    work = tmp_path / "work"
    work.mkdir()
    inputs = {name: tmp_path / "in" / name for name in DiarizeStage.inputs}
    DiarizeStage().run(StageContext(DiarizeParams(**params), inputs, work, Path("reel.wav"), logging.getLogger("test")))
    return work


def test_two_real_speakers_found_with_low_error(tmp_path):
    work = diarize(tmp_path, sample_speech_48k())
    turns = json.loads((work / "turns.json").read_text())
    assert turns["speakers"] == ["SPK01", "SPK02"]
    reference = next(iter(load_rttm(SAMPLE_RTTM).values()))
    hypothesis = next(iter(load_rttm(work / "turns.rttm").values()))
    # Measured 22.9 % (no collar, overlap scored); a wrong speaker count scores above 50 %.
    assert DiarizationErrorRate()(reference, hypothesis) < 0.30
    assert set(np.load(work / "speakers.npz").files) == {"SPK01", "SPK02"}


def test_fixed_speaker_count_is_honoured(tmp_path):
    work = diarize(tmp_path, sample_speech_48k(), num_speakers=3)
    assert len(json.loads((work / "turns.json").read_text())["speakers"]) == 3


def test_silence_gives_empty_turns_not_a_crash(tmp_path):
    work = diarize(tmp_path, np.zeros(5 * 48000, dtype=np.float32))
    assert json.loads((work / "turns.json").read_text()) == {"speakers": [], "turns": []}
    assert (work / "turns.rttm").read_text() == ""


def test_speaker_bounds_validated():
    with pytest.raises(ValidationError, match="min_speakers 4 is above max_speakers 2"):
        DiarizeParams(min_speakers=4, max_speakers=2)
    with pytest.raises(ValidationError):
        DiarizeParams(num_speakers=0)
