"""Diarize (builtin backend) on real speech: pyannote's two-speaker sample, one speaker of it, silence."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate
from pydantic import ValidationError

from dubprep.audio_io import MonoReader
from dubprep.media import LAYOUT_CHANNELS
from dubprep.stages.backends.builtin_diarizer import speech_frames
from dubprep.stages.backends.speaker_embedding import WINDOW_SAMPLES, _mel_batch
from dubprep.stages.diarize import DiarizeStage
from dubprep.vad import SpeechRegion
from speech import REFERENCE, SAMPLE_WAV, one_speaker_of_sample, sample_speech_48k


@pytest.fixture(scope="module")
def sample_run(diarize, tmp_path_factory) -> Path:
    return diarize(tmp_path_factory.mktemp("sample"), sample_speech_48k())


def test_two_real_speakers_found_with_low_error(sample_run):
    turns = json.loads((sample_run / "turns.json").read_text())
    assert turns["speakers"] == ["SPK01", "SPK02"]
    hypothesis = next(iter(load_rttm(sample_run / "turns.rttm").values()))
    # Measured 18.2 % (no collar, overlap scored; 8 points of it are overlapped
    # speech that a one-speaker-per-frame system cannot score);
    # a wrong speaker count or clustering scores above 35 %.
    assert DiarizationErrorRate()(REFERENCE, hypothesis) < 0.20


def test_outputs_agree_and_are_well_formed(sample_run):
    turns = json.loads((sample_run / "turns.json").read_text())
    starts = [t["start_s"] for t in turns["turns"]]
    assert starts == sorted(starts)
    first_seen = list(dict.fromkeys(t["speaker"] for t in turns["turns"]))
    assert first_seen == turns["speakers"]
    assert turns["exclusive_turns"] == turns["turns"]  # one speaker per frame: already exclusive
    assert all(0.0 <= t["start_s"] < t["end_s"] <= 30.0 and t["overlap"] is False for t in turns["turns"])
    rttm = load_rttm(sample_run / "turns.rttm")
    assert list(rttm) == ["programme"]
    tracks = rttm["programme"].itertracks(yield_label=True)
    from_rttm = sorted((round(segment.start, 3), round(segment.end, 3), label) for segment, _, label in tracks)
    assert from_rttm == sorted((t["start_s"], t["end_s"], t["speaker"]) for t in turns["turns"])
    centroids = np.load(sample_run / "speakers.npz")
    assert sorted(centroids.files) == ["SPK01", "SPK02"]
    for name in centroids.files:
        assert centroids[name].shape == (256,)
        assert np.linalg.norm(centroids[name]) == pytest.approx(1.0, abs=1e-5)


def test_one_speaker_is_one_speaker(diarize, tmp_path):
    work = diarize(tmp_path, one_speaker_of_sample("speaker91"))
    assert json.loads((work / "turns.json").read_text())["speakers"] == ["SPK01"]


def test_more_speakers_asked_than_heard_warns_and_keeps_what_is_found(diarize, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="test.diarize"):
        work = diarize(tmp_path, one_speaker_of_sample("speaker91")[: 5 * 48000], num_speakers=4)
    assert json.loads((work / "turns.json").read_text())["speakers"] == ["SPK01"]
    assert "fewer than the 4 asked for" in caplog.text


def test_silence_gives_empty_outputs_and_a_warning(diarize, tmp_path, caplog):
    quiet = np.random.default_rng(0).normal(0.0, 1e-4, 5 * 48000).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="test.diarize"):
        work = diarize(tmp_path, quiet)
    assert json.loads((work / "turns.json").read_text()) == {"speakers": [], "turns": [], "exclusive_turns": []}
    assert (work / "turns.rttm").read_text() == ""
    assert np.load(work / "speakers.npz").files == []
    assert "no speech found" in caplog.text


def test_downmix_skips_lfe_and_spans_join_exactly(tmp_path):
    t = np.arange(48000) / 48000
    block = np.zeros((48000, 6), np.float32)  # shape: (frames, 6) in L R C LFE Ls Rs order
    block[:, 2] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    block[:, 3] = 0.9 * np.sin(2 * np.pi * 40 * t)
    sf.write(tmp_path / "dx.wav", block, 48000, subtype="FLOAT")
    source = MonoReader.open(tmp_path / "dx.wav", LAYOUT_CHANNELS["5.1"])
    whole = source.read(0, source.samples)
    joined = np.concatenate([source.read(start, 1000) for start in range(0, source.samples, 1000)])
    np.testing.assert_allclose(joined, whole, atol=1e-6)
    spectrum = np.abs(np.fft.rfft(whole[1000:-1000]))
    assert np.argmax(spectrum) * 16000 / len(whole[1000:-1000]) == pytest.approx(1000, abs=2)
    # The centre tone survives at its share of the five-channel mean; no LFE leaks in.
    assert np.sqrt(np.mean(whole[1000:-1000] ** 2)) == pytest.approx(0.5 / 5 / np.sqrt(2), rel=0.01)


def test_speaker_settings_validated():
    with pytest.raises(ValidationError, match="min_speakers 4 is above max_speakers 2"):
        DiarizeStage.validate_params({"min_speakers": 4, "max_speakers": 2})
    bad_settings = ({"num_speakers": 0}, {"num_speakers": 51}, {"backend": "pyannote"}, {"vad_threshold": 1.0})
    for bad in (*bad_settings, {"clusters": 2}):
        with pytest.raises(ValidationError):
            DiarizeStage.validate_params(bad)
    assert DiarizeStage.validate_params({"num_speakers": 3}).speaker_range == (3, 3)


def test_pauses_under_0_3_s_stay_within_a_stretch():
    second = 16000
    regions = [SpeechRegion(0, second), SpeechRegion(second + 4799, 2 * second), SpeechRegion(2 * second + 4800, 3 * second)]
    # 10 frames, 0.2999 s of pause, 8 frames (the last of one sample), 0.3 s of pause, 7 frames.
    frames = speech_frames(regions)
    assert frames.stretches.tolist() == [0] * (10 + 8) + [1] * 7


def test_a_breath_does_not_end_a_turn_but_a_pause_does(diarize, tmp_path):
    # 2 s of real speech, 0.2 s of silence, 2 s, 1 s of silence, 2 s: the 0.2-s pause
    # lies inside a turn, the 1-s pause inside none.
    speech = one_speaker_of_sample("speaker91")
    piece = 2 * 48000
    breath, pause = np.zeros(48000 // 5, np.float32), np.zeros(48000, np.float32)
    dx = np.concatenate([speech[:piece], breath, speech[piece : 2 * piece], pause, speech[2 * piece : 3 * piece]])
    work = diarize(tmp_path, dx)
    turns = json.loads((work / "turns.json").read_text())["turns"]
    assert any(t["start_s"] < 2.0 and t["end_s"] > 2.2 for t in turns)
    assert not any(t["start_s"] < 4.7 < t["end_s"] for t in turns)


def test_batched_mel_spectrograms_are_resemblyzers_per_window():
    from resemblyzer.audio import wav_to_mel_spectrogram

    audio, rate = sf.read(SAMPLE_WAV, dtype="float32")
    assert rate == 16000
    # Starts at many phases against the 10-ms mel hop (so groups of one and of several), one at
    # the very start, many in the silence before the first words (6.7 s).
    starts = np.sort(np.r_[0, 1000, np.random.default_rng(1).integers(0, 8 * 16000, 40)])
    expected = []
    for start in starts:
        window = audio[start : start + WINDOW_SAMPLES]
        gain = 10 ** (-30 / 20) / (np.sqrt(np.mean(window**2)) + 1e-9)
        expected.append(wav_to_mel_spectrogram(window * gain))
    expected = np.stack(expected)  # shape: (windows, 121, 40)
    batched = _mel_batch(audio[: starts[-1] + WINDOW_SAMPLES], starts).numpy()
    assert batched.shape == expected.shape
    assert np.abs(batched - expected).max() <= 1e-5 * np.abs(expected).max()
