"""Speakers named from reference clips (builtin backend), on pyannote's two-speaker sample.

The programme is the sample's first 18 s; each actor's reference clip is cut
from later in the recording, so no clip shares audio with the programme.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from pyannote.core import Segment
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate
from pydantic import ValidationError
from scipy.signal import resample_poly

from dubprep.cache import key_params
from dubprep.config import load_project
from dubprep.errors import ConfigError, StageError
from dubprep.stages.diarize import DiarizeStage
from speech import REFERENCE, SAMPLE_WAV, one_speaker_of_sample, sample_speech_48k

PROGRAMME_S = 18.0
# Where each speaker talks alone, after the programme (pyannote's sample.rttm).
CLIP_SPANS_S = {"speaker90": (18.6, 21.45), "speaker91": (21.85, 27.8)}


def write_clip(path: Path, speaker: str) -> Path:
    """``speaker``'s clip as 44.1 kHz stereo FLAC: reading it must downmix and resample."""
    speech, rate = sf.read(SAMPLE_WAV, dtype="float32")
    start_s, end_s = CLIP_SPANS_S[speaker]
    clip = resample_poly(speech[round(start_s * rate) : round(end_s * rate)], 441, 160)
    sf.write(path, np.stack([clip, 0.5 * clip], axis=1), 44100, format="FLAC")  # shape: (frames, 2)
    return path


def programme() -> np.ndarray:
    return sample_speech_48k()[: round(PROGRAMME_S * 48000)]


def hypothesis_mapping(work: Path) -> dict[str, str]:
    """Each output label -> the reference speaker it overlaps best, over the programme."""
    hypothesis = next(iter(load_rttm(work / "turns.rttm").values()))
    reference = REFERENCE.crop(Segment(0, PROGRAMME_S))
    return DiarizationErrorRate().optimal_mapping(reference, hypothesis)


def test_reference_clips_name_the_right_speakers(diarize, tmp_path):
    alice, bob = write_clip(tmp_path / "alice.flac", "speaker90"), write_clip(tmp_path / "bob.flac", "speaker91")
    work = diarize(tmp_path / "run", programme(), speakers={"ALICE": alice, "BOB": bob})
    turns = json.loads((work / "turns.json").read_text())
    assert sorted(turns["speakers"]) == ["ALICE", "BOB"]
    assert hypothesis_mapping(work) == {"ALICE": "speaker90", "BOB": "speaker91"}
    assert sorted(np.load(work / "speakers.npz").files) == ["ALICE", "BOB"]


def test_unnamed_speakers_are_numbered_without_the_named_ones(diarize, tmp_path):
    bob = write_clip(tmp_path / "bob.flac", "speaker91")
    work = diarize(tmp_path / "run", programme(), speakers={"BOB": bob})
    assert sorted(json.loads((work / "turns.json").read_text())["speakers"]) == ["BOB", "SPK01"]
    assert hypothesis_mapping(work) == {"SPK01": "speaker90", "BOB": "speaker91"}


@pytest.mark.parametrize(("heard", "absent"), [("speaker91", "speaker90"), ("speaker90", "speaker91")])
def test_clip_of_a_voice_not_in_the_programme_names_nobody(diarize, tmp_path, caplog, heard, absent):
    alice = write_clip(tmp_path / "alice.flac", absent)
    with caplog.at_level(logging.INFO, logger="test.diarize"):
        work = diarize(tmp_path / "run", one_speaker_of_sample(heard), speakers={"ALICE": alice})
    assert json.loads((work / "turns.json").read_text())["speakers"] == ["SPK01"]
    assert "no speaker matches the reference clip of ALICE" in caplog.text


def test_silent_clip_fails_naming_the_file(diarize, tmp_path):
    quiet = tmp_path / "quiet.wav"
    sf.write(quiet, np.random.default_rng(0).normal(0.0, 1e-4, 3 * 16000).astype(np.float32), 16000)
    with pytest.raises(StageError, match=r"quiet\.wav: no speech found in the reference clip of ALICE"):
        diarize(tmp_path / "run", programme(), speakers={"ALICE": quiet})


def test_clips_are_relative_to_the_project_file_and_a_missing_one_fails_at_load(tmp_path, monkeypatch):
    project = tmp_path / "show" / "reel1.yaml"
    (project.parent / "refs").mkdir(parents=True)
    write_clip(project.parent / "refs" / "alice.flac", "speaker90")
    sf.write(tmp_path / "show" / "reel.wav", programme(), 48000)
    settings = {"input": "reel.wav", "output": "out", "diarize": {"speakers": {"ALICE": "refs/alice.flac"}}}
    project.write_text(yaml.safe_dump(settings))
    monkeypatch.chdir(tmp_path)
    assert load_project(project).diarize.speakers == {"ALICE": project.parent / "refs" / "alice.flac"}
    settings["diarize"]["speakers"]["BOB"] = "refs/bob.wav"
    project.write_text(yaml.safe_dump(settings))
    missing = project.parent / "refs" / "bob.wav"
    with pytest.raises(ConfigError, match=rf"diarize\.speakers\.BOB: reference clip not found: {missing}"):
        load_project(project)


def test_speaker_names_validated(tmp_path):
    clip = write_clip(tmp_path / "alice.flac", "speaker90")
    bad_names = {"": "must not be empty", "SPK02": "kept for unnamed speakers"}
    for name, message in bad_names.items():
        with pytest.raises(ValidationError, match=message):
            DiarizeStage.validate_params(dict(speakers={name: clip}))
    with pytest.raises(ValidationError, match="differ only in case: ALICE"):
        DiarizeStage.validate_params(dict(speakers={"Alice": clip, "ALICE": clip}))


def test_the_cache_key_follows_a_clips_content_not_its_path(tmp_path):
    clip = write_clip(tmp_path / "alice.flac", "speaker90")
    before = key_params(DiarizeStage.validate_params(dict(speakers={"ALICE": clip})))
    moved = tmp_path / "elsewhere" / "alice.flac"
    moved.parent.mkdir()
    moved.write_bytes(clip.read_bytes())
    assert key_params(DiarizeStage.validate_params(dict(speakers={"ALICE": moved}))) == before
    write_clip(clip, "speaker91")
    assert key_params(DiarizeStage.validate_params(dict(speakers={"ALICE": clip}))) != before
