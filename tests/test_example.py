"""The bundled example (examples/make_example.py) is the programme its docstring promises."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from dubprep.tools import find_tool
from media_factory import probe

pytestmark = pytest.mark.ffmpeg  # make test runs these with the system and the bundled ffmpeg

SCRIPT = Path(__file__).parent.parent / "examples" / "make_example.py"
FRAMES = 30 * 48_000
STEMS = ("speech", "music", "effects")


def _make(out_dir: Path) -> Path:
    subprocess.run([sys.executable, str(SCRIPT), str(out_dir)], check=True, capture_output=True)
    return out_dir


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="module")
def stems(example) -> dict[str, np.ndarray]:
    return {name: sf.read(example / f"{name}.wav", dtype="float32")[0] for name in STEMS}


def _decoded_mix(movie: Path) -> np.ndarray:
    command = [str(find_tool("ffmpeg")), "-nostdin", "-v", "error", "-i", str(movie), "-map", "0:a:0",
               "-f", "f32le", "-acodec", "pcm_f32le", "pipe:"]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 2)  # shape: (frames, 2)


def _rms_db(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20)


def test_movie_has_timecoded_picture_and_stereo_48k_pcm(example):
    streams = probe(example / "example.mov")["streams"]
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = next(s for s in streams if s["codec_type"] == "audio")
    tmcd = next(s for s in streams if s.get("codec_tag_string") == "tmcd")
    assert (video["width"], video["height"], video["r_frame_rate"]) == (320, 180, "24000/1001")
    assert tmcd["tags"]["timecode"] == "01:00:00:00"
    assert (audio["codec_name"], audio["channel_layout"], audio["sample_rate"]) == ("pcm_s24le", "stereo", "48000")
    assert int(audio["duration_ts"]) == FRAMES and float(audio["start_time"]) == 0.0
    video_s = int(video["duration_ts"]) * Fraction(video["time_base"])
    assert 0 <= video_s - 30 < Fraction(1001, 24000)


def test_stems_sum_to_the_mix_in_the_movie(example, stems):
    for stem in stems.values():
        assert stem.shape == (FRAMES, 2)
    mix = _decoded_mix(example / "example.mov")
    assert mix.shape == (FRAMES, 2)
    # Only the mix's rounding to 24 bits separates the two.
    np.testing.assert_allclose(mix, stems["speech"] + stems["music"] + stems["effects"], rtol=0, atol=2**-22)
    assert np.abs(mix).max() < 10 ** (-1 / 20)


def test_stem_levels_keep_the_divide_and_remaster_balance(stems):
    meter = pyloudnorm.Meter(48_000)
    loudness = {name: meter.integrated_loudness(stem.astype(np.float64)) for name, stem in stems.items()}
    assert loudness == pytest.approx({"speech": -23.0, "music": -30.0, "effects": -27.0}, abs=0.3)


def test_speech_is_where_the_reference_turns_say_and_effects_fill_the_pauses(example, stems):
    turns = [line.split() for line in (example / "reference.rttm").read_text().splitlines()]
    assert {t[1] for t in turns} == {"programme"} and len({t[7] for t in turns}) == 2
    speech = stems["speech"][:, 0]
    voiced = np.zeros(FRAMES, dtype=bool)
    for t in turns:
        voiced[int(float(t[3]) * 48_000) : int((float(t[3]) + float(t[4])) * 48_000)] = True
    assert _rms_db(speech[voiced]) - _rms_db(speech[~voiced]) > 20
    pause = slice(int(7.12 * 48_000), int(7.55 * 48_000))
    assert _rms_db(stems["effects"][pause]) - _rms_db(stems["speech"][pause]) > 10


def test_music_is_wide_and_speech_is_centred(stems):
    speech, music = stems["speech"], stems["music"]
    np.testing.assert_array_equal(speech[:, 0], speech[:, 1])
    assert np.corrcoef(music[:, 0], music[:, 1])[0, 1] < 0.5


def test_two_runs_write_identical_files(example, tmp_path):
    again = _make(tmp_path)
    for name in ("example.mov", "speech.wav", "music.wav", "effects.wav", "reference.rttm"):
        digests = {hashlib.sha256((folder / name).read_bytes()).hexdigest() for folder in (example, again)}
        assert len(digests) == 1, name
