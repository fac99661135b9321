"""Assemble: BWF stems that spot at the right timecode, per-speaker gating, cue lists."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import wavinfo
from pydantic import ValidationError

from dubprep.audio_io import open_writer
from dubprep.media import MediaInfo
from dubprep.stage import StageContext
from dubprep.stages.assemble import AssembleParams, AssembleStage, Turn, turn_gain
from media_factory import probe
from speech import sample_speech_48k

TURNS = {
    "speakers": ["SPK01", "../../etc/Ané"],
    "turns": [
        {"speaker": "SPK01", "start_s": 1.0, "end_s": 3.0, "overlap": False},
        {"speaker": "../../etc/Ané", "start_s": 4.0, "end_s": 6.5, "overlap": False},
        {"speaker": "SPK01", "start_s": 7.0, "end_s": 8.0, "overlap": False},
    ],
}


def make_inputs(folder: Path, layout: str, channels: int, frames: int) -> dict[str, Path]:
    """A programme whose DX is real speech on the front channels and ME is noise."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    speech = np.resize(sample_speech_48k(), frames)
    dx = np.zeros((frames, channels), dtype=np.float32)
    dx[:, : min(channels, 3)] = speech[:, None] * 0.5
    me = rng.normal(0, 0.05, size=(frames, channels)).astype(np.float32)
    for name, data in (("DX.wav", dx), ("ME.wav", me), ("mix.wav", dx + me)):
        with open_writer(folder / name, frames, channels) as writer:
            writer.write(data)
    MediaInfo(source="reel.mov", audio_stream=0, codec="pcm_s24le", layout=layout, channels=channels,
              sample_rate=48000, frames=frames, source_sample_rate=48000, start_offset_s=0.0,
              start_timecode="01:00:00:00", frame_rate="24000/1001").save(folder / "media.json")
    (folder / "turns.json").write_text(json.dumps(TURNS))
    (folder / "turns.rttm").write_text("")
    return {name: folder / name for name in AssembleStage.inputs}


def assemble(tmp_path: Path, layout="5.1", channels=6, frames=10 * 48000, **params) -> Path:
    inputs = make_inputs(tmp_path / "in", layout, channels, frames)
    work = tmp_path / "out"
    work.mkdir()
    AssembleStage().run(StageContext(AssembleParams(title="My Film: R1", **params), inputs, work, Path("reel.mov"),
                                     logging.getLogger("test")))
    return work


def test_5_1_stems_resum_and_carry_timecode_and_mask(tmp_path):
    out = assemble(tmp_path)
    me_path = out / "My_Film_R1_ME_6ch_48k_24b.wav"
    me, _ = sf.read(me_path, dtype="float32")
    dx, _ = sf.read(out / "My_Film_R1_DX_6ch_48k_24b.wav", dtype="float32")
    mix, _ = sf.read(tmp_path / "in/mix.wav", dtype="float32")
    assert me.shape == mix.shape == (10 * 48000, 6)
    assert np.abs(mix - (me + dx)).max() <= 2 / 2**23 + 1e-7
    info = wavinfo.WavInfoReader(str(me_path))
    assert info.bext.time_reference == 172_972_800  # 01:00:00:00 at 23.976 fps
    assert info.fmt.channel_count == 6
    stream = probe(me_path)["streams"][0]
    assert (stream["channel_layout"], stream["bits_per_sample"]) == ("5.1", 24)  # from dwChannelMask 0x3F


def test_speaker_stems_are_gated_to_their_turns(tmp_path):
    out = assemble(tmp_path, crossfade_ms=10)
    dx, _ = sf.read(out / "My_Film_R1_DX_6ch_48k_24b.wav", dtype="float32")
    spk01, _ = sf.read(out / "My_Film_R1_DX-SPK01_6ch_48k_24b.wav", dtype="float32")
    inside = slice(int(1.0 * 48000), int(3.0 * 48000))
    np.testing.assert_allclose(spk01[inside], dx[inside], atol=2 / 2**23)
    fade = 480
    assert np.abs(spk01[: 48000 - fade - 1]).max() == 0.0
    assert np.abs(spk01[3 * 48000 + fade + 1 : 7 * 48000 - fade - 1]).max() == 0.0
    assert len(spk01) == len(dx)


def test_hostile_speaker_name_stays_in_output_folder(tmp_path):
    out = assemble(tmp_path)
    names = sorted(p.name for p in out.iterdir())
    assert "My_Film_R1_DX-ETC_AN_6ch_48k_24b.wav" in names
    assert all(p.parent == out for p in out.rglob("*"))


def test_split_mono_writes_one_file_per_channel(tmp_path):
    out = assemble(tmp_path, split_mono=True)
    for suffix in ("L", "R", "C", "LFE", "Ls", "Rs"):
        path = out / f"My_Film_R1_ME_6ch_48k_24b.{suffix}.wav"
        assert sf.info(path).channels == 1
        assert sf.info(path).frames == 10 * 48000


def test_cue_list_matches_turns(tmp_path):
    out = assemble(tmp_path, layout="stereo", channels=2)
    with open(out / "cues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # 23.976 fps: 1.0 s is 23.976 frames in, so frame 23; 3.0 s ends at 71.93 frames, out at 72.
    assert [(r["tc_in"], r["tc_out"], r["speaker"]) for r in rows] == [
        ("01:00:00:23", "01:00:03:00", "SPK01"),
        ("01:00:03:23", "01:00:06:12", "ETC_AN"),
        ("01:00:06:23", "01:00:08:00", "SPK01"),
    ]
    srt = (out / "cues.srt").read_text()
    assert "00:00:04,000 --> 00:00:06,500\n[ETC_AN]" in srt


def test_turn_gain_ramps_outside_turn_edges():
    gain = turn_gain([Turn(1000, 2000)], 0, 3000, fade_frames=100)
    assert gain[899] == 0.0 and gain[1000:2000].min() == 1.0 and gain[2101] == 0.0
    assert 0.0 < gain[950] < 1.0 and np.all(np.diff(gain[900:1000]) >= 0)


@pytest.mark.parametrize("template", ["{title}.wav", "../{asset}.wav", "{asset}_{speaker}.wav", "{asset}.aiff"])
def test_bad_name_template_rejected(template):
    with pytest.raises(ValidationError):
        AssembleParams(name_template=template)
