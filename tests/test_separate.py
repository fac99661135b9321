"""The separate stage on real speech: alignment, null sum, lengths, layouts, quality.

Speech is pyannote.audio's bundled recording (two real speakers, 16 kHz),
resampled to 48 kHz; the background is synthesised music (decaying
harmonic chords) plus brown noise, so the clean speech is known exactly.
The stage is called the way the engine calls it, with the real model.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import correlate, lfilter, resample_poly

from dubprep.errors import ModelError, StageError
from dubprep.media import LAYOUT_CHANNELS, MediaInfo
from dubprep.progress import NullProgress, ProgressHook
from dubprep.stage import StageContext
from dubprep.stages.backends import dfn3
from dubprep.stages.separate import SeparateParams, SeparateStage, searched_channels

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


def _run_stage(
    tmp_path: Path, mix: np.ndarray, layout: str, progress: ProgressHook | None = None, **params
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``mix`` (frames, channels) and media.json, run the stage; return (DX, ME) as read back."""
    sf.write(str(tmp_path / "mix.wav"), mix, SR, subtype="FLOAT")
    MediaInfo(
        source=str(tmp_path / "programme.mov"),
        audio_stream=0,
        codec="pcm_f32le",
        layout=layout,
        channels=mix.shape[1],
        sample_rate=SR,
        frames=len(mix),
        source_sample_rate=SR,
        start_offset_s=0.0,
        start_timecode=None,
        frame_rate=None,
    ).save(tmp_path / "media.json")
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    ctx = StageContext(
        params=SeparateParams(**params),
        inputs={"mix.wav": tmp_path / "mix.wav", "media.json": tmp_path / "media.json"},
        work_dir=work_dir,
        media=tmp_path / "programme.mov",
        log=logging.getLogger("test_separate"),
        progress=progress or NullProgress(),
    )
    SeparateStage().run(ctx)
    for name in ("DX.wav", "ME.wav"):
        assert sf.info(str(work_dir / name)).subtype == "FLOAT"
    dx, _ = sf.read(str(work_dir / "DX.wav"), dtype="float32", always_2d=True)
    me, _ = sf.read(str(work_dir / "ME.wav"), dtype="float32", always_2d=True)
    return dx, me


@pytest.fixture(scope="module")
def mono_run(speech: np.ndarray, tmp_path_factory: pytest.TempPathFactory):
    """Speech over music + noise at 0 dB SNR through the stage: (speech, mix, DX, ME)."""
    mix = (speech + _background(len(speech), float(speech.std()), seed=1))[:, None]  # shape: (frames, 1)
    dx, me = _run_stage(tmp_path_factory.mktemp("mono"), mix, "mono")
    return speech, mix, dx, me


def test_dialogue_is_sample_aligned_with_the_mix(mono_run) -> None:
    speech, _, dx, _ = mono_run
    xcorr = correlate(dx[:, 0], speech, mode="full", method="fft")
    lag = int(np.argmax(xcorr)) - (len(speech) - 1)
    # The runtime lags by dfn3.delay_samples (1440); the stage must remove all of it.
    assert lag == 0


def test_stems_sum_back_to_the_mix(mono_run) -> None:
    _, mix, dx, me = mono_run
    assert dx.shape == me.shape == mix.shape
    # ME is mix - DX in float32; adding DX back is exact up to one rounding of the sum.
    np.testing.assert_allclose(dx + me, mix, rtol=0, atol=np.finfo(np.float32).eps * np.abs(mix).max())


def test_dialogue_is_closer_to_the_speech_than_the_mix_is(mono_run) -> None:
    speech, mix, dx, _ = mono_run
    # Measured: 0.0 dB for the mix, 7.3 dB for DX. ME's gain against the background is the
    # same number, since ME - background = speech - DX.
    assert _sdr_db(speech, dx[:, 0]) > _sdr_db(speech, mix[:, 0]) + 4.0


def test_odd_length_stereo_keeps_every_frame(speech: np.ndarray, tmp_path: Path) -> None:
    frames = SR * 3 + 17
    left = speech[:frames]
    right = 0.5 * speech[SR : SR + frames] + _background(frames, 0.01, seed=2)
    mix = np.stack([left, right], axis=1)  # shape: (frames, 2)
    progress = _CountingProgress()
    dx, me = _run_stage(tmp_path, mix, "stereo", progress=progress)
    assert dx.shape == me.shape == (frames, 2)
    assert np.abs(dx[-SR // 10 :]).max() > 0  # the tail was flushed, not zero-padded
    assert progress.total == progress.advanced == frames and progress.finished


def test_front_mode_leaves_lfe_and_surrounds_in_me(speech: np.ndarray, tmp_path: Path) -> None:
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
    dx, me = _run_stage(tmp_path, mix, "5.1", dialogue_channels="front")
    for name in ("LFE", "Ls", "Rs"):
        c = names.index(name)
        assert not dx[:, c].any()
        assert np.array_equal(me[:, c], mix[:, c])
    for name, clean in voice.items():
        c = names.index(name)
        assert _sdr_db(clean, dx[:, c]) > _sdr_db(clean, mix[:, c]) + 3.0


def test_silent_mix_gives_silent_dialogue(tmp_path: Path) -> None:
    mix = np.zeros((SR * 2 + 5, 1), dtype=np.float32)
    dx, me = _run_stage(tmp_path, mix, "mono")
    assert dx.shape == mix.shape
    assert not dx.any() and not me.any()


def test_nan_in_mix_names_the_second(speech: np.ndarray, tmp_path: Path) -> None:
    mix = np.stack([speech[: SR * 3], speech[SR : SR * 4]], axis=1)  # shape: (frames, 2)
    mix[int(SR * 2.5), 1] = np.nan
    with pytest.raises(StageError, match=r"channel R .*2\.500 s \(second 2\)"):
        _run_stage(tmp_path, mix, "stereo")


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
        with dfn3.Dfn3Dialogue(atten_lim_db=limit_db) as model:
            out = np.concatenate([model.process(noise), model.flush()])
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
