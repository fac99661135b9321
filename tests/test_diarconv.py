"""The diarization benchmark's conversation builder: splits kept apart, reference turns where the speech is."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from corpus.splits import SplitError, require
from speech import one_speaker_of_sample

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import diarconv  # noqa: E402


def test_each_set_draws_from_its_own_split_only() -> None:
    for split in ("tune", "test"):
        require(diarconv.packages_of(split), split)
    assert not set(diarconv.packages_of("tune")) & set(diarconv.packages_of("test"))


def test_a_voice_of_another_split_is_refused_before_anything_is_fetched(monkeypatch, tmp_path: Path) -> None:
    tune_voice = diarconv.VOICES["tune"][0]
    monkeypatch.setitem(diarconv.VOICES, "test", (*diarconv.VOICES["test"], tune_voice))
    monkeypatch.setattr(diarconv, "fetch", lambda *_: pytest.fail("fetched before the split check"))
    with pytest.raises(SplitError, match=tune_voice.package):
        diarconv.find_pool("test", tmp_path)


def _sample_voices(folder: Path) -> diarconv.Pool:
    """Two voices whose lines are 1-3 s pieces of each speaker of pyannote's sample, as WAV files."""
    lines = {}
    for label in ("speaker90", "speaker91"):
        speech = one_speaker_of_sample(label)
        edges = np.cumsum(np.random.default_rng(0).uniform(1.0, 3.0, size=40) * diarconv.SR).astype(int)
        pieces = [p for p in np.split(speech, edges[edges < len(speech)]) if len(p) > diarconv.SR]
        for i, piece in enumerate(pieces):
            sf.write(folder / f"{label}-{i}.wav", piece, diarconv.SR, subtype="FLOAT")
        lines[label] = tuple(sorted(folder.glob(f"{label}-*.wav")))
    return diarconv.Pool(folder, lines, (), (), ())


def test_reference_turns_hold_the_speech_and_only_different_speakers_overlap(tmp_path: Path) -> None:
    pool = _sample_voices(tmp_path)
    voices = tuple(diarconv.Voice(name, "none", "") for name in pool.lines)
    dialogue = diarconv.build_dialogue(pool, voices, 40.0, np.random.default_rng(5))
    hop = diarconv.SR // 100
    rms = np.sqrt(np.mean(dialogue.speech[: len(dialogue.speech) // hop * hop].reshape(-1, hop) ** 2, axis=1))  # shape: (frames_10ms,)
    inside = np.zeros(len(rms), dtype=int)
    for start_s, end_s, name in dialogue.turns:
        assert name in pool.lines
        inside[int(start_s * 100) : int(np.ceil(end_s * 100))] += 1
    loud = rms > 10 ** (-45 / 20)
    assert inside[loud].min() >= 1, "speech outside every reference turn"
    assert loud[inside > 0].mean() > 0.6, "reference turns mostly silent"
    starts = [start_s for start_s, _, _ in dialogue.turns]
    ends = [end_s for _, end_s, _ in dialogue.turns]
    assert any(s < e for s, e in zip(starts[1:], ends[:-1])), "no overlap drawn in 40 s"
    for name in pool.lines:
        own = [(start_s, end_s) for start_s, end_s, speaker in dialogue.turns if speaker == name]
        assert all(end_s <= start_s for (_, end_s), (start_s, _) in zip(own, own[1:])), f"{name} overlaps themselves"
