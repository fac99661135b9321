"""Broadcast WAV writer, checked with readers that share no code with it: ffprobe, soundfile, wavinfo."""

import json
import struct
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from wavinfo import WavInfoReader

from dubprep import bwf
from dubprep.bwf import BextMetadata, BwfError, open_bwf
from dubprep.tools import find_tool

pytestmark = pytest.mark.ffmpeg  # make test runs these with the system and the bundled ffmpeg

BEXT = BextMetadata(
    description="Amélie — M&E reel 1", originator="dubprep", originator_reference="REEL1-ME",
    origination=datetime(2024, 5, 6, 7, 8, 9), time_reference_samples=172_972_800,
)
# Largest error after writing and reading back: half a quantisation step.
TOLERANCE = {"PCM_16": 0.5 / 2**15, "PCM_24": 0.5 / 2**23, "FLOAT": 0.0}
FFPROBE_CODEC = {"PCM_16": ("pcm_s16le", 16), "PCM_24": ("pcm_s24le", 24), "FLOAT": ("pcm_f32le", 32)}
CHANNELS = {"mono": 1, "stereo": 2, "5.1": 6, "7.1": 8}


def noise(frames: int, channels: int, seed: int = 0) -> np.ndarray:
    """Uniform noise, different in every channel; shape: (frames, channels).

    It stays below the top quantisation step, where +1.0 has to round down a
    whole step to the largest positive integer.
    """
    return np.random.default_rng(seed).uniform(-0.999, 0.999, (frames, channels)).astype(np.float32)


def write(path: Path, layout: str, sample_format: str, samples: np.ndarray, block_frames: int = 10_000) -> Path:
    with open_bwf(path, layout, sample_format, BEXT) as writer:
        for start in range(0, len(samples), block_frames):
            writer.write(samples[start:start + block_frames])
    return path


def ffprobe(path: Path) -> tuple[dict, dict]:
    """The audio stream and the format, as ffprobe reads them."""
    done = subprocess.run(
        [str(find_tool("ffprobe")), "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    assert done.stderr == ""
    probe = json.loads(done.stdout)
    return probe["streams"][0], probe["format"]


def chunk(path: Path, ident: bytes):
    """wavinfo's descriptor of the top-level chunk ``ident`` and its payload."""
    descriptor = next(c for c in WavInfoReader(path).main_list if getattr(c, "ident", None) == ident)
    with path.open("rb") as f:
        return descriptor, descriptor.read_data(f)


def channel_mask(path: Path) -> int:
    """dwChannelMask of the fmt chunk found by wavinfo's RIFF/RF64 parser."""
    _, payload = chunk(path, b"fmt ")
    assert struct.unpack_from("<H", payload)[0] == 0xFFFE  # WAVE_FORMAT_EXTENSIBLE
    return struct.unpack_from("<I", payload, 20)[0]


def fact_frames(path: Path) -> int:
    """dwSampleLength of the fact chunk (written for IEEE float only)."""
    return struct.unpack("<I", chunk(path, b"fact")[1])[0]


@pytest.mark.parametrize("sample_format", ["PCM_16", "PCM_24", "FLOAT"])
@pytest.mark.parametrize(("layout", "mask"), [("mono", 0x4), ("stereo", 0x3), ("5.1", 0x3F), ("7.1", 0x63F)])
def test_layout_format_and_samples_read_back(tmp_path, layout, mask, sample_format):
    # An odd frame count: 24-bit mono then has an odd data size and needs a pad byte.
    samples = noise(24_001, CHANNELS[layout])
    path = write(tmp_path / "out.wav", layout, sample_format, samples)

    stream, container = ffprobe(path)
    assert stream["channel_layout"] == layout
    assert (stream["codec_name"], stream["bits_per_sample"]) == FFPROBE_CODEC[sample_format]
    assert int(stream["sample_rate"]) == 48000 and stream["channels"] == CHANNELS[layout]
    assert stream["duration_ts"] == 24_001
    assert container["format_name"] == "wav"

    read, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == 48000 and read.shape == samples.shape
    assert np.abs(read - samples).max() <= TOLERANCE[sample_format]

    assert channel_mask(path) == mask
    info = WavInfoReader(path)
    assert info.data.frame_count == 24_001
    assert path.read_bytes()[:4] == b"RIFF"
    assert struct.unpack("<I", path.read_bytes()[4:8])[0] == path.stat().st_size - 8
    assert path.stat().st_size % 2 == 0  # an odd-sized data chunk is followed by a pad byte
    if sample_format == "FLOAT":
        assert fact_frames(path) == 24_001


def test_bext_fields_read_by_wavinfo(tmp_path):
    path = write(tmp_path / "out.wav", "5.1", "PCM_24", noise(4800, 6))
    bext = WavInfoReader(path).bext
    assert bext.time_reference == 172_972_800
    assert bext.description == "Amelie  M&E reel 1"  # ASCII only, as EBU Tech 3285 requires
    assert (bext.originator, bext.originator_ref) == ("dubprep", "REEL1-ME")
    assert (bext.originator_date, bext.originator_time) == ("2024-05-06", "07-08-09")
    assert bext.version == 1 and bext.umid == bytes(64)
    assert bext.coding_history.startswith("A=PCM,F=48000,W=24,T=dubprep ")
    assert bext.coding_history.endswith("\r\n")


def test_time_reference_beyond_32_bits(tmp_path):
    # A day at 48 kHz fits 32 bits; at 96 kHz, or with an offset, the high word is needed.
    time_reference = 2**33 + 7
    metadata = BEXT.model_copy(update={"time_reference_samples": time_reference})
    with open_bwf(tmp_path / "out.wav", "stereo", "PCM_24", metadata) as writer:
        writer.write(noise(480, 2))
    assert WavInfoReader(tmp_path / "out.wav").bext.time_reference == time_reference


def test_pcm_clips_and_counts_overs_float_keeps_them(tmp_path):
    block = np.array([[1.5, -2.0], [1.0, -1.0], [0.5, -0.25]], dtype=np.float32)
    with open_bwf(tmp_path / "pcm.wav", "stereo", "PCM_24", BEXT) as writer:
        writer.write(block)
        writer.write(block)
    assert writer.clipped_samples == 4 and writer.frames_written == 6
    read, _ = sf.read(tmp_path / "pcm.wav", dtype="float64")
    full_scale = 1 - 2**-23
    assert read[:3].tolist() == [[full_scale, -1.0], [full_scale, -1.0], [0.5, -0.25]]

    with open_bwf(tmp_path / "float.wav", "stereo", "FLOAT", BEXT) as writer:
        writer.write(block)
    assert writer.clipped_samples == 0
    assert sf.read(tmp_path / "float.wav", dtype="float32")[0].tolist() == block.tolist()


def test_blocks_reach_disk_before_close(tmp_path):
    path = tmp_path / "out.wav"
    writer = open_bwf(path, "5.1", "FLOAT", BEXT)
    writer.write(noise(48_000, 6))  # 1.1 MB, far beyond any write buffer
    assert path.stat().st_size >= 48_000 * 6 * 4
    writer.close()


def test_block_size_does_not_change_the_file(tmp_path):
    samples = noise(30_001, 2)
    one = write(tmp_path / "one.wav", "stereo", "PCM_24", samples, block_frames=len(samples))
    many = write(tmp_path / "many.wav", "stereo", "PCM_24", samples, block_frames=777)
    assert one.read_bytes() == many.read_bytes()


@pytest.mark.parametrize("sample_format", ["PCM_24", "FLOAT"])
def test_file_beyond_riff_limit_becomes_rf64(tmp_path, monkeypatch, sample_format):
    monkeypatch.setattr(bwf, "RIFF_MAX_BYTES", 100_000)  # stands in for 4 GiB
    samples = noise(48_001, 6)
    path = write(tmp_path / "out.wav", "5.1", sample_format, samples)
    head = path.read_bytes()[:16]
    assert head == b"RF64\xff\xff\xff\xffWAVEds64"

    stream, container = ffprobe(path)
    assert container["format_name"] == "wav" and stream["channel_layout"] == "5.1"
    assert stream["duration_ts"] == 48_001
    assert sf.info(str(path)).format == "RF64"
    read, _ = sf.read(path, dtype="float32", always_2d=True)
    assert np.abs(read - samples).max() <= TOLERANCE[sample_format]
    info = WavInfoReader(path)
    assert info.data.frame_count == 48_001 and info.bext.time_reference == 172_972_800
    assert channel_mask(path) == 0x3F
    ds64 = chunk(path, b"data")[0].rf64_context  # wavinfo's reading of the ds64 chunk
    assert ds64.sample_count == 48_001
    assert ds64.bigchunk_table[b"RF64"] == path.stat().st_size - 8
    if sample_format == "FLOAT":
        assert fact_frames(path) == 0xFFFF_FFFF  # RF64: the count is in ds64


def test_riff_limit_is_inclusive(tmp_path, monkeypatch):
    """A file whose RIFF size equals the limit stays RIFF; one byte over becomes RF64."""
    riff_bytes = write(tmp_path / "probe.wav", "stereo", "PCM_24", noise(1000, 2)).stat().st_size - 8
    monkeypatch.setattr(bwf, "RIFF_MAX_BYTES", riff_bytes)
    assert write(tmp_path / "at.wav", "stereo", "PCM_24", noise(1000, 2)).read_bytes()[:4] == b"RIFF"
    monkeypatch.setattr(bwf, "RIFF_MAX_BYTES", riff_bytes - 1)
    assert write(tmp_path / "over.wav", "stereo", "PCM_24", noise(1000, 2)).read_bytes()[:4] == b"RF64"


def test_bad_blocks_are_refused_with_the_file_name(tmp_path):
    path = tmp_path / "out.wav"
    with open_bwf(path, "5.1", "PCM_24", BEXT) as writer:
        with pytest.raises(BwfError, match=r"out\.wav.*expected floats of shape \(frames, 6\)"):
            writer.write(noise(10, 2))
        with pytest.raises(BwfError, match="expected floats"):
            writer.write(np.zeros((10, 6), dtype=np.int32))
        with pytest.raises(BwfError, match="NaN"):
            writer.write(np.full((10, 6), np.nan, dtype=np.float32))
    with pytest.raises(BwfError, match="write after close"):
        writer.write(noise(10, 6))
    with pytest.raises(BwfError, match="layout"):
        open_bwf(tmp_path / "quad.wav", "quad", "PCM_24", BEXT)


def test_bext_fields_beyond_their_size_are_refused():
    with pytest.raises(ValidationError, match="Description is 257 characters"):
        BextMetadata(description="x" * 257, origination=datetime(2024, 1, 1))
    with pytest.raises(ValidationError, match="originator is 33 characters"):
        BextMetadata(originator="x" * 33, origination=datetime(2024, 1, 1))
    with pytest.raises(ValidationError):
        BextMetadata(time_reference_samples=-1, origination=datetime(2024, 1, 1))
