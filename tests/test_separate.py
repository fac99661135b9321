"""The separate stage on real speech: alignment, null sums, lengths, layouts, quality.

Speech is pyannote.audio's bundled recording (two real speakers, 16 kHz),
resampled to 48 kHz; the background is synthesised music (harmonic chords)
plus noise or impacts, so every stem is known exactly. The stage is called
the way the engine calls it, with the real model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate, lfilter, resample_poly

from dubprep.errors import ModelError, StageError
from dubprep.media import LAYOUT_CHANNELS
from dubprep.stages.backends import dfn3, mefx
from dubprep.stages.backends.separation import DIALOGUE, stereo_pairs
from dubprep.stages.separate import searched_channels

SR = 48_000
# Located without importing pyannote.audio, which would load torch for nothing.
SPEECH_WAV = Path(importlib.util.find_spec("pyannote.audio").origin).parent / "sample" / "sample.wav"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """20 s of real conversation at 48 kHz; shape (frames,)."""
    audio, rate = sf.read(str(SPEECH_WAV), dtype="float32")
    assert rate == 16_000
    return resample_poly(audio[: 20 * rate], 3, 1).astype(np.float32)


def _music(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Triads of decaying harmonic tones, a new one every 0.5 s; shape (frames,)."""
    out = np.zeros(frames)
    note_frames = SR // 2
    for start in range(0, frames, note_frames):
        t_s = np.arange(min(note_frames, frames - start)) / SR
        root_hz = rng.choice([220.0, 246.9, 261.6, 293.7, 329.6, 349.2, 392.0])
        for ratio in (1.0, 1.25, 1.5):
            for harmonic in range(1, 6):
                tone = np.sin(2 * np.pi * root_hz * ratio * harmonic * t_s) / harmonic
                out[start : start + len(t_s)] += np.exp(-3 * t_s) * tone
    return out


def _background(frames: int, rms: float, seed: int) -> np.ndarray:
    """Music plus brown noise at equal power, scaled to ``rms``; shape (frames,)."""
    rng = np.random.default_rng(seed)
    music = _music(frames, rng)
    rumble = lfilter([1.0], [1.0, -0.98], rng.standard_normal(frames))
    mixed = music / music.std() + rumble / rumble.std()
    return (mixed / mixed.std() * rms).astype(np.float32)


def _sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR as in the Sound Demixing Challenge, in dB."""
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


class _CountingProgress:
    """A progress hook that remembers what the stage reported."""

    def __init__(self) -> None:
        self.total = 0
        self.advanced = 0
        self.finished = False

    def start(self, description: str, total: int) -> None:
        self.total = total

    def advance(self, amount: int) -> None:
        self.advanced += amount

    def finish(self) -> None:
        self.finished = True


def _pad(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Sustained chords, a new one every 2.5 s with 0.3-s fades, random phase per channel; shape (frames, 2)."""
    out = np.zeros((frames, 2))
    chord_frames = int(2.5 * SR)
    t_s = np.arange(chord_frames) / SR
    envelope = np.minimum(1.0, np.minimum(t_s, t_s[-1] - t_s) / 0.3)
    for start in range(0, frames, chord_frames):
        root_hz = rng.choice([110.0, 130.8, 146.8, 164.8, 196.0])
        length = min(chord_frames, frames - start)
        for ratio in (1.0, 1.25, 1.5, 2.0):
            for harmonic in range(1, 5):
                for channel in range(2):
                    phase = rng.uniform(0, 2 * np.pi)
                    tone = np.sin(2 * np.pi * root_hz * ratio * harmonic * t_s + phase) / harmonic
                    out[start : start + length, channel] += (envelope * tone)[:length]
    return out


def _impacts(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Coloured noise bursts (60-ms decay) every 1-2.5 s, panned at random; shape (frames, 2)."""
    out = np.zeros((frames, 2))
    burst_frames = int(0.4 * SR)
    at = int(rng.uniform(0.5, 1.5) * SR)
    while at < frames:
        decay = np.exp(-np.arange(burst_frames) / SR / 0.06)
        burst = lfilter([1.0], [1.0, -rng.uniform(0.0, 0.9)], rng.standard_normal(burst_frames) * decay)
        burst = burst[: frames - at]
        angle = rng.uniform(0.1, 0.9) * np.pi / 2
        out[at : at + len(burst)] += np.stack([burst * np.cos(angle), burst * np.sin(angle)], axis=1)
        at += int(rng.uniform(1.0, 2.5) * SR)
    return out


def _scaled(stem: np.ndarray, rms: float) -> np.ndarray:
    return (stem / np.sqrt(np.mean(stem**2)) * rms).astype(np.float32)


@pytest.fixture(scope="module")
def mono_run(separate, speech: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    """Speech over music + noise at 0 dB SNR through the stage: (speech, mix, stems)."""
    mix = (speech + _background(len(speech), float(speech.std()), seed=1))[:, None]  # shape: (frames, 1)
    return speech, mix, separate(tmp_path_factory.mktemp("mono"), mix, "mono")


@pytest.fixture(scope="module")
def scene_run(separate, speech: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    """A 20-s stereo scene: speech centre, a chord pad 7 dB and impacts 4 dB below it.

    Returns ({"speech", "music", "effects"} each (frames, 2), mix, stems).
    """
    rng = np.random.default_rng(8)
    rms = float(speech.std())
    truth = {
        "speech": np.stack([speech, speech], axis=1) * np.float32(np.sqrt(0.5)),  # shape: (frames, 2)
        "music": _scaled(_pad(len(speech), rng), rms * 10 ** (-7 / 20)),
        "effects": _scaled(_impacts(len(speech), rng), rms * 10 ** (-4 / 20)),
    }
    mix = truth["speech"] + truth["music"] + truth["effects"]
    return truth, mix, separate(tmp_path_factory.mktemp("scene"), mix, "stereo")


def test_dialogue_is_sample_aligned_with_the_mix(mono_run) -> None:
    speech, _, stems = mono_run
    xcorr = correlate(stems["DX"][:, 0], speech, mode="full", method="fft")
    lag = int(np.argmax(xcorr)) - (len(speech) - 1)
    # The runtime lags by dfn3.delay_samples (1440); the stage must remove all of it.
    assert lag == 0


def _assert_sums(stems: dict[str, np.ndarray], mix: np.ndarray) -> None:
    """Every stem has the mix's shape; the stored mix is ``mix`` to 24 bits; DX + ME, MX + FX and DX + MX + FX
    re-sum to it bit-exactly (stored on the 24-bit grid, ME and FX computed from the files)."""
    for stem in stems.values():
        assert stem.shape == mix.shape
    assert np.abs(stems["mix"] - mix).max() <= 2.0**-24
    np.testing.assert_array_equal(stems["DX"] + stems["ME"], stems["mix"])
    np.testing.assert_array_equal(stems["MX"] + stems["FX"], stems["ME"])
    np.testing.assert_array_equal(stems["DX"] + stems["MX"] + stems["FX"], stems["mix"])


@pytest.mark.parametrize("run", ["mono_run", "scene_run"])
def test_stems_sum_back_to_the_mix(run: str, request: pytest.FixtureRequest) -> None:
    _, mix, stems = request.getfixturevalue(run)
    _assert_sums(stems, mix)


def test_dialogue_is_closer_to_the_speech_than_the_mix_is(mono_run) -> None:
    speech, mix, stems = mono_run
    # Measured: 0.0 dB for the mix, 7.4 dB for DX. ME's gain against the background is the
    # same number, since ME - background = speech - DX.
    assert _sdr_db(speech, stems["DX"][:, 0]) > _sdr_db(speech, mix[:, 0]) + 4.0


def test_music_and_effects_beat_the_trivial_split(scene_run) -> None:
    truth, _, stems = scene_run
    # The trivial split gives each half of the M&E. Measured: music 6.2 dB (trivial 1.0),
    # effects 10.5 dB (trivial 4.0).
    half_me = stems["ME"] / 2
    assert _sdr_db(truth["music"], stems["MX"]) > _sdr_db(truth["music"], half_me) + 3.0
    assert _sdr_db(truth["effects"], stems["FX"]) > _sdr_db(truth["effects"], half_me) + 3.0


@pytest.mark.parametrize("search", ["mid_side", "left_right"])
def test_stereo_dialogue_stays_where_it_is_panned(separate, search: str, speech: np.ndarray, tmp_path: Path) -> None:
    voice = speech[7 * SR : 11 * SR]  # four seconds of talk
    # Dialogue hard left at 0 dB SNR, background in both channels: either way of searching
    # must put it back in L and leave R's DX far quieter. Measured: L's DX at 5.3 dB SDR
    # (mid_side) and 6.8 dB (left_right); R's DX at -9.8 dB and -13.8 dB of L's energy.
    rms = float(voice.std())
    background = np.stack([_background(len(voice), rms, seed=seed) for seed in (9, 10)], axis=1)
    mix = background + np.stack([voice, np.zeros_like(voice)], axis=1)  # shape: (frames, 2)
    dx = separate(tmp_path, mix, "stereo", stereo_search=search)["DX"]
    assert _sdr_db(voice, dx[:, 0]) > _sdr_db(voice, mix[:, 0]) + 3.0
    assert np.sum(dx[:, 1] ** 2) < 0.2 * np.sum(dx[:, 0] ** 2)


def test_odd_length_stereo_keeps_every_frame(separate, speech: np.ndarray, tmp_path: Path) -> None:
    frames = SR * 3 + 17
    left = speech[:frames]
    right = 0.5 * speech[SR : SR + frames] + _background(frames, 0.01, seed=2)
    mix = np.stack([left, right], axis=1)  # shape: (frames, 2)
    progress = _CountingProgress()
    stems = separate(tmp_path, mix, "stereo", progress=progress)
    for stem in stems.values():
        assert stem.shape == (frames, 2)
    assert np.abs(stems["DX"][-SR // 10 :]).max() > 0  # the tail was flushed, not zero-padded
    assert np.abs(stems["MX"][-SR // 10 :]).max() > 0
    assert progress.total == progress.advanced == frames and progress.finished


def test_front_mode_leaves_lfe_and_surrounds_in_me(separate, speech: np.ndarray, tmp_path: Path) -> None:
    frames = SR * 5
    names = LAYOUT_CHANNELS["5.1"]
    rng = np.random.default_rng(3)
    voice = {"L": 0.3 * speech[:frames], "R": 0.3 * speech[:frames], "C": speech[:frames]}
    channels = {
        "L": voice["L"] + _background(frames, 0.01, seed=4),
        "R": voice["R"] + _background(frames, 0.01, seed=5),
        "C": voice["C"] + _background(frames, 0.02, seed=6),
        "LFE": (0.2 * np.sin(2 * np.pi * 40 * np.arange(frames) / SR)).astype(np.float32),
        "Ls": (0.02 * rng.standard_normal(frames)).astype(np.float32),
        "Rs": (0.02 * rng.standard_normal(frames)).astype(np.float32),
    }
    mix = np.stack([channels[name] for name in names], axis=1)  # shape: (frames, 6)
    stems = separate(tmp_path, mix, "5.1", dialogue_channels="front")
    for name in ("LFE", "Ls", "Rs"):
        c = names.index(name)
        assert not stems["DX"][:, c].any()
        assert np.array_equal(stems["ME"][:, c], stems["mix"][:, c])
    for name, clean in voice.items():
        c = names.index(name)
        assert _sdr_db(clean, stems["DX"][:, c]) > _sdr_db(clean, mix[:, c]) + 3.0


def test_silent_mix_gives_silent_stems(separate, tmp_path: Path) -> None:
    mix = np.zeros((SR * 2 + 5, 1), dtype=np.float32)
    stems = separate(tmp_path, mix, "mono")
    for stem in stems.values():
        assert stem.shape == mix.shape
        assert not stem.any()


@pytest.mark.parametrize("frames", [SR // 2, 300])
def test_short_mix_keeps_every_frame(separate, frames: int, speech: np.ndarray, tmp_path: Path) -> None:
    # 0.5 s is shorter than the music/effects split's 8-s look-ahead; 300 frames are
    # shorter than one hop of the dialogue model (480) and one splitter frame (1920).
    mix = np.stack([speech[SR : SR + frames], 0.5 * speech[2 * SR : 2 * SR + frames]], axis=1)  # shape: (frames, 2)
    _assert_sums(separate(tmp_path, mix, "stereo"), mix)


def test_pure_music_stays_in_the_me(separate, tmp_path: Path) -> None:
    mix = _scaled(_pad(SR * 6, np.random.default_rng(12)), 0.1)  # shape: (frames, 2)
    stems = separate(tmp_path, mix, "stereo")
    _assert_sums(stems, mix)
    # Measured: DX 24.0 dB below the mix (30 dB on one mono channel: the attenuation cap).
    assert 10 * np.log10(np.sum(stems["DX"] ** 2) / np.sum(mix**2)) < -20.0


@pytest.mark.parametrize(
    ("layout", "mode", "expected"),
    [
        ("5.1", "center", ("C",)),
        ("5.1", "front", ("L", "R", "C")),
        ("7.1", "all", ("L", "R", "C", "Lrs", "Rrs", "Lss", "Rss")),
        ("stereo", "center", ("L", "R")),
        ("mono", "front", ("M",)),
    ],
)
def test_searched_channels(layout: str, mode: str, expected: tuple[str, ...]) -> None:
    names = LAYOUT_CHANNELS[layout]
    assert tuple(names[c] for c in searched_channels(layout, mode, names)) == expected


def test_attenuation_limit_keeps_background_in_dialogue(speech: np.ndarray) -> None:
    noise = _background(SR * 3, 0.05, seed=7)
    levels_db = {}
    for limit_db in (None, 6.0):
        stream = dfn3.Dfn3Stream(atten_lim_db=limit_db)
        try:
            out = np.concatenate([stream.process(noise[:, None])[DIALOGUE], stream.flush()[DIALOGUE]])[:, 0]
        finally:
            stream.close()
        levels_db[limit_db] = 20 * np.log10(out[SR:].std() / noise[SR:].std())
    # With a 6 dB cap the background is pulled down by about 6 dB, not further.
    assert -8.0 < levels_db[6.0] < -4.0
    assert levels_db[None] < levels_db[6.0] - 6.0


def test_missing_or_wrong_weights_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        dfn3.verify_weights(tmp_path / "DeepFilterNet3_onnx.tar.gz")
    wrong = tmp_path / "wrong.tar.gz"
    wrong.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="sha256"):
        dfn3.verify_weights(wrong)
    assert dfn3.weights_checksum() == dfn3.WEIGHTS_SHA256


def _split(signal: np.ndarray, block_frames: int) -> np.ndarray:
    """MusicEffectsSplit's music for ``signal`` (frames,) fed in blocks of ``block_frames``."""
    splitter = mefx.MusicEffectsSplit()
    parts = [splitter.process(signal[i : i + block_frames]) for i in range(0, len(signal), block_frames)]
    return np.concatenate([*parts, splitter.flush()])


@pytest.fixture(scope="module")
def chord_and_hits() -> tuple[np.ndarray, np.ndarray]:
    """20 s of a steady four-note chord and three noise hits (60-ms decay); each (frames,)."""
    frames = SR * 20 + 11
    t_s = np.arange(frames) / SR
    chord = 0.1 * sum(np.sin(2 * np.pi * hz * t_s) / k for k, hz in enumerate((220.0, 277.2, 329.6, 440.0), 1))
    hits = np.zeros(frames)
    rng = np.random.default_rng(11)
    hit_frames = int(0.3 * SR)
    decay = np.exp(-np.arange(hit_frames) / SR / 0.05)
    for at_s in (3.0, 9.5, 15.2):
        start = int(at_s * SR)
        hits[start : start + hit_frames] += 0.3 * rng.standard_normal(hit_frames) * decay
    return chord.astype(np.float32), hits.astype(np.float32)


def test_split_sends_a_steady_chord_to_music_and_hits_to_effects(chord_and_hits) -> None:
    chord, hits = chord_and_hits
    music = _split(chord + hits, SR * 10)
    assert music.shape == chord.shape
    # Measured: 31 dB and 18 dB; the trivial split (half each) gives 5.8 and -7.4 dB.
    assert _sdr_db(chord, music) > 20.0
    assert _sdr_db(hits, chord + hits - music) > 10.0


def test_split_does_not_depend_on_block_sizes(chord_and_hits) -> None:
    chord, hits = chord_and_hits
    whole = _split(chord + hits, len(chord))
    assert np.array_equal(_split(chord + hits, SR + 7), whole)
    assert np.array_equal(_split(chord + hits, 333), whole)


@pytest.mark.parametrize(
    ("layout", "mode", "expected"),
    [
        ("mono", "front", (("M",),)),
        ("stereo", "front", (("L", "R"),)),
        ("5.1", "center", (("C",),)),
        ("5.1", "front", (("L", "R"), ("C",))),
        ("5.1", "all", (("L", "R"), ("Ls", "Rs"), ("C",))),
        ("7.1", "all", (("L", "R"), ("Lrs", "Rrs"), ("Lss", "Rss"), ("C",))),
    ],
)
def test_stereo_partners_are_heard_as_pairs(layout: str, mode: str, expected: tuple[tuple[str, ...], ...]) -> None:
    names = LAYOUT_CHANNELS[layout]
    searched = tuple(names[c] for c in searched_channels(layout, mode, names))
    groups = stereo_pairs(tuple(range(len(searched))), searched)
    assert tuple(tuple(searched[s] for s in group) for group in groups) == expected


def test_cinesep_backend_resums_and_leaves_unsearched_channels_in_the_me(separate, speech: np.ndarray, tmp_path: Path) -> None:
    frames = SR * 9 + 7  # three 4-s chunks and a ragged end
    names = LAYOUT_CHANNELS["5.1"]
    rng = np.random.default_rng(21)
    mix = (0.02 * rng.standard_normal((frames, 6))).astype(np.float32)  # shape: (frames, 6)
    for name, gain in (("L", 0.3), ("R", 0.3), ("C", 1.0)):
        mix[:, names.index(name)] += gain * speech[:frames]
    stems = separate(tmp_path, mix, "5.1", backend="cinesep", dialogue_channels="front")
    _assert_sums(stems, mix)
    for name in ("LFE", "Ls", "Rs"):
        c = names.index(name)
        assert not stems["DX"][:, c].any() and not stems["MX"][:, c].any()
        assert np.array_equal(stems["FX"][:, c], stems["mix"][:, c])
    for name in ("L", "R", "C"):
        assert stems["DX"][:, names.index(name)].any()


def test_cinesep_backend_keeps_a_short_stereo_mix_whole(separate, speech: np.ndarray, tmp_path: Path) -> None:
    mix = np.stack([speech[SR : SR + 300], 0.5 * speech[2 * SR : 2 * SR + 300]], axis=1)  # shape: (300, 2)
    _assert_sums(separate(tmp_path, mix, "stereo", backend="cinesep"), mix)
