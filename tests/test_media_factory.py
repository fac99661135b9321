"""The test-media factory makes the files it promises: checked with ffprobe and an ffmpeg decode."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ffmpeg
import numpy as np
import pytest

from dubprep.tools import find_tool
from media_factory import (
    FFMPEG_CHANNELS,
    STREAM_STEP_HZ,
    channel_frequencies_hz,
    dominant_frequencies_hz,
    make_media,
    make_text_file,
    make_truncated,
    make_video_only,
    probe,
)

pytestmark = pytest.mark.ffmpeg  # make test runs these with the system and the bundled ffmpeg


def _decode(path: Path, position: int, channels: int) -> np.ndarray:
    """Audio stream ``position`` as float32 at its own rate; shape: (frames, channels)."""
    command = [
        str(find_tool("ffmpeg")), "-nostdin", "-v", "error", "-i", str(path),
        "-map", f"0:a:{position}", "-f", "f32le", "-acodec", "pcm_f32le", "pipe:",
    ]
    raw = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype="<f4").reshape(-1, channels)  # shape: (frames, channels)


def _streams(path: Path, kind: str) -> list[dict]:
    return [s for s in probe(path)["streams"] if s["codec_type"] == kind]


@pytest.mark.parametrize("layout", sorted(FFMPEG_CHANNELS))
def test_each_channel_carries_its_own_tone_in_decode_order(tmp_path, layout):
    path = make_media(tmp_path / "tones.mov", layout=layout)
    (audio,) = _streams(path, "audio")
    channels = len(FFMPEG_CHANNELS[layout])
    assert audio["channel_layout"] == layout
    assert int(audio["duration_ts"]) == 48_000
    samples = _decode(path, 0, channels)
    assert samples.shape == (48_000, channels)
    np.testing.assert_array_equal(dominant_frequencies_hz(samples, 48_000), channel_frequencies_hz(layout))
    assert len(set(channel_frequencies_hz(layout))) == channels


@pytest.mark.parametrize(
    ("name", "layout", "codec", "sample_rate"),
    [("aac.mp4", "5.1", "aac", 48_000), ("flac.mkv", "7.1", "flac", 44_100), ("side.mkv", "5.1(side)", "aac", 44_100)],
)
def test_lossy_and_44k_files_keep_the_tones(tmp_path, name, layout, codec, sample_rate):
    path = make_media(tmp_path / name, layout=layout, codec=codec, sample_rate=sample_rate)
    (audio,) = _streams(path, "audio")
    assert (audio["codec_name"], int(audio["sample_rate"])) == (codec, sample_rate)
    samples = _decode(path, 0, len(FFMPEG_CHANNELS[layout]))
    found = dominant_frequencies_hz(samples[4096:], sample_rate)  # past the AAC priming
    np.testing.assert_allclose(found, channel_frequencies_hz(layout), atol=2)


@pytest.mark.parametrize("suffix", [".mov", ".mkv"])
def test_audio_start_offset_is_recorded_in_the_container(tmp_path, suffix):
    path = make_media(tmp_path / f"late{suffix}", audio_start_offset_s=0.5, duration_s=1.0)
    (video,) = _streams(path, "video")
    (audio,) = _streams(path, "audio")
    assert float(video["start_time"]) == 0.0
    assert float(audio["start_time"]) == pytest.approx(0.5, abs=1e-3)
    assert len(_decode(path, 0, 2)) == 48_000
    assert float(probe(path)["format"]["duration"]) >= 1.5


def test_start_timecode_is_tagged_in_mov_and_mkv(tmp_path):
    mov = make_media(tmp_path / "tc.mov", start_timecode="01:00:00:00")
    tmcd = [s for s in probe(mov)["streams"] if s.get("codec_tag_string") == "tmcd"]
    assert tmcd and tmcd[0]["tags"]["timecode"] == "01:00:00:00"
    mkv = make_media(tmp_path / "tc.mkv", start_timecode="00:59:58:00")
    assert probe(mkv)["format"]["tags"]["TIMECODE"] == "00:59:58:00"
    plain = make_media(tmp_path / "plain.mov")
    assert all("timecode" not in s.get("tags", {}) for s in probe(plain)["streams"])


def test_several_audio_streams_differ_in_language_and_tones(tmp_path):
    path = make_media(tmp_path / "two.mov", audio_streams=[("stereo", "eng"), ("5.1", "fra")])
    audio = _streams(path, "audio")
    assert [s["tags"]["language"] for s in audio] == ["eng", "fra"]
    assert [s["channel_layout"] for s in audio] == ["stereo", "5.1"]
    second = dominant_frequencies_hz(_decode(path, 1, 6), 48_000)
    np.testing.assert_array_equal(second, np.add(channel_frequencies_hz("5.1"), STREAM_STEP_HZ))


def test_audio_only_wav(tmp_path):
    path = make_media(tmp_path / "mix.wav", layout="5.1", video=False)
    assert [s["codec_type"] for s in probe(path)["streams"]] == ["audio"]


def test_bad_inputs_are_bad_in_the_promised_ways(tmp_path):
    assert _streams(make_video_only(tmp_path / "silent.mov"), "audio") == []
    with pytest.raises(ffmpeg.Error):
        probe(make_truncated(tmp_path / "cut.mov"))
    cut_mkv = make_truncated(tmp_path / "cut.mkv", duration_s=2.0)
    (audio,) = _streams(cut_mkv, "audio")
    assert audio["tags"]["DURATION"].startswith("00:00:02")
    assert len(_decode(cut_mkv, 0, 2)) < 1.5 * 48_000
    with pytest.raises(ffmpeg.Error):
        probe(make_text_file(tmp_path / "notes.mov"))
