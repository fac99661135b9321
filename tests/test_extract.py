"""Extract: stream selection, layouts, sample-exact length, offsets and bad input."""

import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubprep.errors import MediaError
from dubprep.media import MediaInfo
from dubprep.stages.extract import ExtractStage
from dubprep.stems import MIX
from dubprep.tools import find_tool, version
from media_factory import (
    channel_frequencies_hz,
    dominant_frequencies_hz,
    make_media,
    make_text_file,
    make_truncated,
    make_video_only,
)

pytestmark = pytest.mark.ffmpeg  # make test runs these with the system and the bundled ffmpeg


@pytest.fixture
def extract(run_stage):
    """``run(media, work_dir, **params)``: the extract stage on ``media``; (its mix (frames, channels), media.json)."""

    def run(media: Path, work_dir: Path, **params) -> tuple[np.ndarray, MediaInfo]:
        run_stage(ExtractStage, params, {}, work_dir, media)
        samples, rate = sf.read(work_dir / MIX, dtype="float32", always_2d=True)
        assert rate == 48000
        return samples, MediaInfo.load(work_dir / "media.json")

    return run


@pytest.mark.parametrize(
    ("layout", "expected", "suffix"),
    [("mono", "mono", ".mov"), ("stereo", "stereo", ".mov"), ("5.1", "5.1", ".mov"),
     ("5.1(side)", "5.1", ".mov"), ("7.1", "7.1", ".wav")],
)
def test_layout_and_channel_order_survive(extract, tmp_path, layout, expected, suffix):
    media = make_media(tmp_path / f"in{suffix}", layout=layout, duration_s=1.0, video=suffix != ".wav")
    samples, info = extract(media, tmp_path / "work")
    assert info.layout == expected
    assert samples.shape == (48000, len(channel_frequencies_hz(layout)))
    assert tuple(dominant_frequencies_hz(samples, 48000)) == channel_frequencies_hz(layout)


def test_resampled_length_is_sample_exact(extract, tmp_path):
    duration_s = 2.0 + 17 / 44100  # an awkward length at 44.1 kHz
    media = make_media(tmp_path / "in.mov", layout="stereo", duration_s=duration_s, sample_rate=44100)
    samples, info = extract(media, tmp_path / "work")
    expected = round(round(duration_s * 44100) / 44100 * 48000)
    assert len(samples) == info.frames == expected
    assert info.source_sample_rate == 44100
    # The tones run to the end: nothing was truncated and replaced by padding.
    assert np.abs(samples[-200:]).max() > 0.1


def test_stream_selected_by_position_and_language(extract, tmp_path):
    media = make_media(tmp_path / "in.mkv", audio_streams=[("stereo", "eng"), ("5.1", "fra")], duration_s=1.0)
    samples, info = extract(media, tmp_path / "w1", language="fra")
    assert info.audio_stream == 1 and info.layout == "5.1"
    assert tuple(dominant_frequencies_hz(samples, 48000)) == channel_frequencies_hz("5.1", stream=1)
    samples, info = extract(media, tmp_path / "w2", audio_stream=0)
    assert tuple(dominant_frequencies_hz(samples, 48000)) == channel_frequencies_hz("stereo", stream=0)


def test_missing_stream_lists_streams(extract, tmp_path):
    media = make_media(tmp_path / "in.mkv", audio_streams=[("stereo", "eng"), ("5.1", "fra")], duration_s=1.0)
    with pytest.raises(MediaError, match=r"no audio stream in language 'deu'; streams: #0 .*\[eng\]; #1 .*\[fra\]"):
        extract(media, tmp_path / "w1", language="deu")
    with pytest.raises(MediaError, match=r"no audio stream #2; streams: #0"):
        extract(media, tmp_path / "w2", audio_stream=2)


def test_audio_starting_after_picture_is_padded(extract, tmp_path):
    media = make_media(tmp_path / "in.mov", layout="stereo", duration_s=1.0, audio_start_offset_s=0.5)
    samples, info = extract(media, tmp_path / "work")
    lead = round(info.start_offset_s * 48000)
    assert abs(info.start_offset_s - 0.5) < 0.01
    assert len(samples) == lead + 48000
    assert np.abs(samples[: lead - 10]).max() == 0.0
    assert np.abs(samples[lead + 10 : lead + 500]).max() > 0.1


def test_timecode_and_frame_rate_recorded(extract, tmp_path):
    media = make_media(tmp_path / "in.mov", layout="stereo", duration_s=1.0, start_timecode="01:00:00:00")
    _, info = extract(media, tmp_path / "work")
    assert info.start_timecode == "01:00:00:00"
    assert info.frame_rate == "24000/1001"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: make_video_only(p / "v.mov"), r"v\.mov: no audio stream in this file"),
        (lambda p: make_truncated(p / "t.mkv", keep_fraction=0.5, layout="stereo", duration_s=2.0),
         r"t\.mkv: audio stream #0 decodes to 0\.\d+ s but declares 2\.\d+ s; the file is truncated"),
        (lambda p: make_truncated(p / "t.wav", keep_fraction=0.5, layout="stereo", duration_s=2.0, video=False),
         r"t\.wav: WAV data chunk declares 576000 bytes but the file ends \d+ bytes short; the file is truncated"),
        (lambda p: make_text_file(p / "notes.mov"), r"notes\.mov: not a readable media file"),
        (lambda p: p / "absent.mov", r"absent\.mov: input file not found"),
        (lambda p: make_media(p / "q.mov", layout="quad", duration_s=1.0), r"q\.mov: channel layout 'quad' \(4 channels\) is not supported"),
    ],
    ids=["no-audio", "truncated-mkv", "truncated-wav", "not-media", "missing", "quad-layout"],
)
def test_bad_input_is_one_clear_error(extract, tmp_path, make, message):
    media = make(tmp_path)
    with pytest.raises(MediaError, match=message) as err:
        extract(media, tmp_path / "work")
    assert "\n" not in str(err.value)


def test_log_names_the_ffmpeg_that_decoded(extract, tmp_path, caplog):
    media = make_media(tmp_path / "in.wav", layout="stereo", duration_s=0.5, video=False)
    with caplog.at_level(logging.INFO, logger="test"):
        extract(media, tmp_path / "work")
    assert f"extract: {version(find_tool('ffmpeg'))} ({find_tool('ffmpeg')})" in caplog.text
    assert version(find_tool("ffmpeg")).startswith("ffmpeg version ")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected_naming_the_file_and_time(extract, tmp_path, bad):
    samples = np.full((48_000, 2), 0.1, dtype=np.float32)
    samples[24_000, 1] = bad
    media = tmp_path / "corrupt.wav"
    sf.write(media, samples, 48_000, subtype="FLOAT")
    with pytest.raises(MediaError, match=r"corrupt\.wav: a NaN or infinite sample at 0\.500 s in channel R; "
                                         r"the file is corrupt there, re-export it"):
        extract(media, tmp_path / "work")


@pytest.mark.parametrize("bits", [16, 24])
def test_integer_source_is_stored_bit_exactly_as_24_bit_flac(extract, tmp_path, caplog, bits):
    ints = np.random.default_rng(bits).integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(48_000, 2))
    media = tmp_path / "in.wav"
    sf.write(media, (ints << (32 - bits)).astype(np.int32), 48_000, subtype=f"PCM_{bits}")  # full-scale noise
    with caplog.at_level(logging.INFO, logger="test"):
        mix, _ = extract(media, tmp_path / "work")
    assert sf.info(tmp_path / "work" / MIX).format == "FLAC" and sf.info(tmp_path / "work" / MIX).subtype == "PCM_24"
    np.testing.assert_array_equal(mix, sf.read(media, dtype="float32")[0])
    assert f"extract: {MIX} stored losslessly as 24-bit FLAC" in caplog.text


def test_float_source_is_rounded_to_24_bits_and_its_overs_clipped_with_a_warning(extract, tmp_path, caplog):
    samples = np.full((48_000, 2), 0.1, dtype=np.float32)  # 0.1 is off the 24-bit grid
    samples[1000:1010, 0] = 1.5  # ten overs
    media = tmp_path / "float.wav"
    sf.write(media, samples, 48_000, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="test"):
        mix, _ = extract(media, tmp_path / "work")
    assert np.abs(mix[:1000] - 0.1).max() <= 2.0**-24 and mix[1005, 0] == 1 - 2.0**-23
    assert "96000 samples rounded to 24 bits" in caplog.text
    assert "float.wav: 10 samples beyond full scale clipped at ±1 in mix.flac" in caplog.text


@pytest.mark.parametrize("suffix", [".mkv", ".mov"])
def test_a_long_container_cut_short_is_refused_before_decoding_it(extract, tmp_path, suffix):
    whole = make_media(tmp_path / f"whole{suffix}", layout="5.1", duration_s=600.0)
    if suffix == ".mov":  # index (moov) first, as a file made for streaming: cut, it still opens
        faststart = tmp_path / "faststart.mov"
        subprocess.run([str(find_tool("ffmpeg")), "-nostdin", "-v", "error", "-i", str(whole), "-c", "copy",
                        "-movflags", "+faststart", str(faststart)], check=True)
        whole = faststart
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 5])  # 10 minutes declared, about 2 held
    with pytest.raises(MediaError, match=rf"cut\{suffix}: audio stream #0 decodes to nothing in its last 1 s but "
                                         r"declares 600\.\d+ s; the file is truncated or corrupt, re-export it"):
        extract(cut, tmp_path / "work")
    assert not (tmp_path / "work" / MIX).exists()  # refused before the decode opened the mix
