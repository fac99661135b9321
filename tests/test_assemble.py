"""Assemble: BWF stems that spot at the right timecode, per-speaker gating, the guide, cue lists, the OTIO timeline."""

import csv
import json
from pathlib import Path

import numpy as np
import opentimelineio as otio
import pytest
import soundfile as sf
import wavinfo
from pydantic import ValidationError

from dubprep.errors import StageError
from dubprep.stages.assemble import AssembleParams, AssembleStage, Turn, speaker_names, turn_gain
from dubprep.stems import DX, MIX, MX, WorkWriter
from media_factory import probe
from speech import sample_speech_48k

RATE = 48_000
LSB = 2.0**-23  # 24-bit
FADE = 480  # the default 10 ms crossfade
FPS = 24000 / 1001
TURNS = {
    "speakers": ["SPK01", "../../etc/Ané"],
    "turns": [
        {"speaker": "SPK01", "start_s": 1.0, "end_s": 3.0, "overlap": False},
        {"speaker": "../../etc/Ané", "start_s": 4.0, "end_s": 6.5, "overlap": False},
        {"speaker": "SPK01", "start_s": 7.0, "end_s": 8.0, "overlap": False},
    ],
}
TURNS["exclusive_turns"] = TURNS["turns"]
# A talks over B from 3.0 to 4.0 s; diarize's exclusive turns give A the first half of it.
OVERLAP_TURNS = {
    "speakers": ["A", "B"],
    "turns": [
        {"speaker": "A", "start_s": 1.0, "end_s": 4.0, "overlap": True},
        {"speaker": "B", "start_s": 3.0, "end_s": 6.0, "overlap": True},
        {"speaker": "A", "start_s": 7.0, "end_s": 8.0, "overlap": False},
    ],
    "exclusive_turns": [
        {"speaker": "A", "start_s": 1.0, "end_s": 3.5, "overlap": True},
        {"speaker": "B", "start_s": 3.5, "end_s": 6.0, "overlap": True},
        {"speaker": "A", "start_s": 7.0, "end_s": 8.0, "overlap": False},
    ],
}


def write_stems(folder: Path, channels: int, frames: int, dx_gain: float) -> None:
    """DX real speech on the front channels (room tone on the others), MX a tone, FX noise, and their mix."""
    rng = np.random.default_rng(1)
    speech = np.resize(sample_speech_48k()[13 * RATE // 2 :], frames)  # from 6.5 s, where the talking starts
    dx = np.zeros((frames, channels), dtype=np.float32)
    dx[:, : min(channels, 3)] = speech[:, None] * dx_gain
    dx[:, 3:] = rng.normal(0, 0.01, size=(frames, max(channels - 3, 0)))  # different in each, LFE included
    tone = 0.05 * np.sin(2 * np.pi * 220 * np.arange(frames) / RATE)
    mx = np.repeat(tone[:, None], channels, axis=1).astype(np.float32)  # shape: (frames, channels)
    me = (mx + rng.normal(0, 0.05, size=(frames, channels))).astype(np.float32)
    for name, data in ((DX, dx), (MX, mx), (MIX, dx + me)):  # as extract and separate store them
        with WorkWriter(folder / name, channels) as writer:
            writer.write(data)


@pytest.fixture
def assemble(media_json, run_stage):
    """``run(tmp_path, layout, channels, frames, turns, dx_gain, **params)``: the stage on a made programme; its folder."""

    def run(tmp_path: Path, layout="5.1", channels=6, frames=10 * RATE, turns=TURNS, dx_gain=0.5, **params) -> Path:
        folder = tmp_path / "in"
        folder.mkdir()
        write_stems(folder, channels, frames, dx_gain)
        media_json(folder / "media.json", layout, frames, source="reel.mov", codec="pcm_s24le",
                   start_timecode="01:00:00:00", frame_rate="24000/1001")
        (folder / "turns.json").write_text(json.dumps(turns))
        (folder / "turns.rttm").write_text("")
        inputs = {name: folder / name for name in AssembleStage.inputs}
        return run_stage(AssembleStage, {"title": "My Film: R1", **params}, inputs, tmp_path / "out", Path("reel.mov"))

    return run


def test_5_1_stems_resum_and_carry_timecode_and_mask(assemble, tmp_path):
    out = assemble(tmp_path)
    me_path = out / "My_Film_R1_ME_6ch_48k_24b.wav"
    me, _ = sf.read(me_path, dtype="float32")
    dx, _ = sf.read(out / "My_Film_R1_DX_6ch_48k_24b.wav", dtype="float32")
    mix, _ = sf.read(tmp_path / "in" / MIX, dtype="float32")
    assert me.shape == mix.shape == (10 * 48000, 6)
    # Work files on the 24-bit grid, ME and FX computed from them: the 24-bit delivery re-sums bit-exactly.
    np.testing.assert_array_equal(me + dx, mix)
    mx, fx = (sf.read(out / f"My_Film_R1_{asset}_6ch_48k_24b.wav", dtype="float64")[0] for asset in ("MX", "FX"))
    np.testing.assert_array_equal(dx + mx + fx, mix)
    assert np.abs(fx).max() > 0.1 and np.abs(mx).max() > 0.04  # each its own signal, not silence
    for asset in ("ME", "MX", "FX"):
        path = out / f"My_Film_R1_{asset}_6ch_48k_24b.wav"
        info = wavinfo.WavInfoReader(str(path))
        assert info.bext.time_reference == 172_972_800  # 01:00:00:00 at 23.976 fps
        assert info.fmt.channel_count == 6
        stream = probe(path)["streams"][0]
        assert (stream["channel_layout"], stream["bits_per_sample"]) == ("5.1", 24)  # from dwChannelMask 0x3F
    report = json.loads((out / "qc.json").read_text())
    assert report["passed"], report["failures"]
    assert {"ME", "MX", "FX", "DX"} <= report["stems"].keys()
    assert report["stems"]["MX"]["integrated_lufs"] is not None and report["stems"]["FX"]["true_peak_dbtp"] is not None
    assert report["null_tests"]["DX + MX + FX"]["delivered_depth_db"] is None  # inf: bit-exact
    assert next(c for c in report["checks"] if c["name"] == "Null test (mix - DX - ME)")["measured"] == "bit-exact"


def test_speaker_stems_are_mono_folds_of_dx_gated_to_their_turns(assemble, tmp_path):
    out = assemble(tmp_path, crossfade_ms=10)
    dx, _ = sf.read(out / "My_Film_R1_DX_6ch_48k_24b.wav", dtype="float64")
    path = out / "My_Film_R1_DX-SPK01_1ch_48k_24b.wav"
    spk01, _ = sf.read(path, dtype="float64", always_2d=True)
    assert spk01.shape == (len(dx), 1)  # one channel, the programme's full length
    inside = slice(int(1.0 * 48000), int(3.0 * 48000))
    folded = dx[:, [0, 1, 2, 4, 5]].sum(axis=1)  # as DX-GUIDE folds 5.1: every channel but the LFE, summed
    np.testing.assert_allclose(spk01[inside, 0], folded[inside], atol=4 * LSB)
    assert np.abs(spk01[inside]).max() > 0.1  # the speech, not silence
    fade = 480
    assert np.abs(spk01[: 48000 - fade - 1]).max() == 0.0
    assert np.abs(spk01[3 * 48000 + fade + 1 : 7 * 48000 - fade - 1]).max() == 0.0
    info = wavinfo.WavInfoReader(str(path))
    assert info.bext.time_reference == 172_972_800 and info.fmt.channel_count == 1
    report = json.loads((out / "qc.json").read_text())
    assert report["passed"], report["failures"]
    # Format, length and clipping only: no loudness or true-peak pass per speaker.
    checks = sorted(c["name"] for c in report["checks"] if c["name"].startswith("DX-SPK01 "))
    assert checks == ["DX-SPK01 clipping", "DX-SPK01 format", "DX-SPK01 length"]
    assert "true_peak_dbtp" not in report["stems"]["DX-SPK01"] and "true_peak_dbtp" in report["stems"]["DX"]
    assert report["stems"]["DX-SPK01"]["channels"] == 1


def test_speaker_layout_source_keeps_the_programme_layout(assemble, tmp_path):
    out = assemble(tmp_path, crossfade_ms=10, speaker_layout="source")
    dx, _ = sf.read(out / "My_Film_R1_DX_6ch_48k_24b.wav", dtype="float32")
    spk01, _ = sf.read(out / "My_Film_R1_DX-SPK01_6ch_48k_24b.wav", dtype="float32")
    inside = slice(int(1.0 * 48000), int(3.0 * 48000))
    np.testing.assert_allclose(spk01[inside], dx[inside], atol=2 / 2**23)
    assert spk01.shape == dx.shape
    assert not (out / "My_Film_R1_DX-SPK01_1ch_48k_24b.wav").exists()


def test_hostile_speaker_name_stays_in_output_folder(assemble, tmp_path):
    out = assemble(tmp_path)
    names = sorted(p.name for p in out.iterdir())
    assert "My_Film_R1_DX-ETC_AN_1ch_48k_24b.wav" in names
    assert all(p.parent == out for p in out.rglob("*"))


def test_split_mono_writes_one_file_per_channel(assemble, tmp_path):
    out = assemble(tmp_path, split_mono=True, dialogue_guide=True)
    channels = ("L", "R", "C", "LFE", "Ls", "Rs")
    for asset in ("ME", "MX", "FX", "DX"):
        for suffix in channels:
            path = out / f"My_Film_R1_{asset}_6ch_48k_24b.{suffix}.wav"
            assert sf.info(path).channels == 1
            assert sf.info(path).frames == 10 * 48000
    for asset in ("DX-GUIDE", "DX-SPK01"):  # already mono: one file
        assert sf.info(out / f"My_Film_R1_{asset}_1ch_48k_24b.wav").channels == 1
    report = json.loads((out / "qc.json").read_text())
    assert report["passed"], report["failures"]
    # A clip references one file: a track per channel file.
    timeline = otio.adapters.read_from_file(str(out / "timeline.otio"))  # held: its tracks die with it
    tracks = [t.name for t in timeline.tracks]
    assert tracks[:6] == [f"DX.{c}" for c in channels] and len(tracks) == 6 * 2 + 2  # DX, ME, two mono speakers


def test_cue_list_matches_turns(assemble, tmp_path):
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


def read(out: Path, asset: str, channels: int = 2) -> np.ndarray:
    return sf.read(out / f"My_Film_R1_{asset}_{channels}ch_48k_24b.wav", dtype="float64", always_2d=True)[0]


def at(seconds: float) -> int:
    return round(seconds * RATE)


def test_overlap_both_puts_overlapped_dialogue_in_each_speaker_stem(assemble, tmp_path):
    out = assemble(tmp_path, layout="stereo", channels=2, turns=OVERLAP_TURNS)
    dx, a, b = read(out, "DX").mean(axis=1, keepdims=True), read(out, "DX-A", 1), read(out, "DX-B", 1)
    overlap = slice(at(3.0), at(4.0))
    assert np.abs(dx[overlap]).max() > 0.05  # speech there
    np.testing.assert_allclose(a[overlap], dx[overlap], atol=2 * LSB)
    np.testing.assert_allclose(b[overlap], dx[overlap], atol=2 * LSB)
    assert np.abs(b[: at(3.0) - FADE - 1]).max() == 0.0
    assert np.abs(a[at(4.0) + FADE + 1 : at(7.0) - FADE - 1]).max() == 0.0
    cues = list(csv.DictReader(open(out / "cues.csv", newline="")))
    assert [(c["speaker"], c["overlap"]) for c in cues] == [("A", "yes"), ("B", "yes"), ("A", "")]


def test_overlap_exclusive_gives_each_moment_to_one_speaker(assemble, tmp_path):
    out = assemble(tmp_path, layout="stereo", channels=2, turns=OVERLAP_TURNS, overlap="exclusive")
    dx, a, b = read(out, "DX").mean(axis=1, keepdims=True), read(out, "DX-A", 1), read(out, "DX-B", 1)
    change = at(3.5)
    # The speaker stems sum to DX over the whole exchange, the crossfade at the change included.
    speech = slice(at(1.0), at(6.0))
    np.testing.assert_allclose((a + b)[speech], dx[speech], atol=3 * LSB)
    np.testing.assert_allclose(a[at(1.0) : change - FADE], dx[at(1.0) : change - FADE], atol=2 * LSB)
    np.testing.assert_allclose(b[change + FADE : at(6.0)], dx[change + FADE : at(6.0)], atol=2 * LSB)
    assert np.abs(b[: change - FADE - 1]).max() == 0.0
    assert np.abs(a[change + FADE + 1 : at(7.0) - FADE - 1]).max() == 0.0
    # Both stems hold a sample only within the crossfade at the change of speaker.
    shared = np.flatnonzero((np.abs(a).max(axis=1) > 0) & (np.abs(b).max(axis=1) > 0))
    assert len(shared) > 0 and change - FADE <= shared.min() and shared.max() <= change + FADE
    # The cue list still lists the turns as spoken, with their overlap.
    cues = list(csv.DictReader(open(out / "cues.csv", newline="")))
    assert [(c["speaker"], c["overlap"]) for c in cues] == [("A", "yes"), ("B", "yes"), ("A", "")]


def test_exclusive_without_exclusive_turns_names_the_fix(assemble, tmp_path):
    turns = {"speakers": TURNS["speakers"], "turns": TURNS["turns"]}
    with pytest.raises(StageError, match=r"turns.json: has no 'exclusive_turns'.*--force diarize"):
        assemble(tmp_path, layout="stereo", channels=2, turns=turns, overlap="exclusive")


def test_dialogue_guide_is_the_unscaled_sum_of_all_but_the_lfe(assemble, tmp_path):
    # 1.5 x speech on L, R and C: the sum passes full scale where the speech is loudest.
    out = assemble(tmp_path, dialogue_guide=True, dx_gain=1.5)
    guide = read(out, "DX-GUIDE", channels=1)
    dx, _ = sf.read(tmp_path / "in" / DX, dtype="float64")
    expected = dx[:, [0, 1, 2, 4, 5]].sum(axis=1)  # L R C Ls Rs
    assert guide.shape == (len(dx), 1)
    fits = np.abs(expected) < 1.0 - 4 * LSB
    np.testing.assert_allclose(guide[fits, 0], expected[fits], atol=2 * LSB)
    assert np.all(np.abs(guide[~fits, 0]) >= 1.0 - 5 * LSB)  # held at full scale, not scaled down
    info = wavinfo.WavInfoReader(str(out / "My_Film_R1_DX-GUIDE_1ch_48k_24b.wav"))
    assert info.bext.time_reference == 172_972_800 and info.fmt.channel_count == 1
    report = json.loads((out / "qc.json").read_text())
    clipped = np.count_nonzero(np.abs(guide) >= 1.0 - LSB)
    assert clipped > 100 and report["stems"]["DX-GUIDE"]["clipped_samples"] == [clipped]
    guide_failure = f"DX-GUIDE clipping: {clipped} samples at or beyond full scale"
    # The mono speaker stems are folded the same way: SPK01's turns hold the loudest speech, and clip too.
    assert report["failures"][0] == guide_failure and report["failures"][1].startswith("DX-SPK01 clipping: ")
    format_check = next(c for c in report["checks"] if c["name"] == "DX-GUIDE format")
    assert format_check["passed"] and format_check["limit"] == "48000 Hz, 1 ch"


def test_stereo_dialogue_guide_is_the_mean_of_left_and_right(assemble, tmp_path):
    # 3 x speech on both (peaks near 0.96): their sum would clip, their mean keeps a centred line's level.
    out = assemble(tmp_path, layout="stereo", channels=2, dialogue_guide=True, dx_gain=3.0)
    guide = read(out, "DX-GUIDE", channels=1)
    dx, _ = sf.read(tmp_path / "in" / DX, dtype="float64")
    np.testing.assert_allclose(guide[:, 0], dx.mean(axis=1), atol=2 * LSB)
    assert 0.8 < np.abs(guide).max() < 1.0
    report = json.loads((out / "qc.json").read_text())
    assert report["stems"]["DX-GUIDE"]["clipped_samples"] == [0]


@pytest.mark.parametrize("overlap", ["both", "exclusive"])
def test_timeline_has_a_clip_per_turn_on_each_speaker_track(assemble, tmp_path, overlap):
    out = assemble(tmp_path, layout="stereo", channels=2, turns=OVERLAP_TURNS, overlap=overlap)
    timeline = otio.adapters.read_from_file(str(out / "timeline.otio"))
    start = otio.opentime.RationalTime(24 * 3600, FPS)  # 01:00:00:00 at 23.976: 86,400 frames
    assert timeline.global_start_time == start
    assert [t.name for t in timeline.tracks] == ["DX", "ME", "DX-A", "DX-B"]
    assert all(t.kind == otio.schema.TrackKind.Audio for t in timeline.tracks)
    for track in timeline.tracks:
        for clip in track.find_clips():
            assert (out / clip.media_reference.target_url).is_file()
            assert clip.media_reference.available_range.start_time == start
            # Media time is programme time: the clip plays the stem's audio at the clip's place.
            assert clip.source_range.start_time - start == clip.range_in_parent().start_time
    (dx_clip,) = timeline.tracks[0].find_clips()
    assert dx_clip.media_reference.target_url == "My_Film_R1_DX_2ch_48k_24b.wav"
    assert dx_clip.source_range.duration.value == 240  # ceil(10 s x 23.976)
    turns = OVERLAP_TURNS["turns" if overlap == "both" else "exclusive_turns"]
    for track in timeline.tracks[2:]:
        own = [t for t in turns if f"DX-{t['speaker']}" == track.name]
        clips = list(track.find_clips())
        assert len(clips) == len(own)
        for clip, turn in zip(clips, own):
            assert clip.media_reference.target_url == f"My_Film_R1_{track.name}_1ch_48k_24b.wav"  # mono speaker stems
            placed = clip.range_in_parent()
            assert abs(placed.start_time.to_seconds() - turn["start_s"]) <= 1 / FPS
            assert abs(placed.end_time_exclusive().to_seconds() - turn["end_s"]) <= 1 / FPS


def test_a_speaker_called_guide_does_not_take_the_guide_name():
    assert speaker_names(["guide", "SPK01"]) == {"guide": "GUIDE_2", "SPK01": "SPK01"}


def test_7_1_speaker_stem_is_one_channel_summing_all_but_the_lfe(assemble, tmp_path):
    out = assemble(tmp_path, layout="7.1", channels=8, crossfade_ms=10)
    dx, _ = sf.read(out / "My_Film_R1_DX_8ch_48k_24b.wav", dtype="float64")
    spk01, _ = sf.read(out / "My_Film_R1_DX-SPK01_1ch_48k_24b.wav", dtype="float64", always_2d=True)
    assert spk01.shape == (len(dx), 1)
    inside = slice(int(1.0 * 48000), int(3.0 * 48000))
    folded = np.delete(dx, 3, axis=1).sum(axis=1)  # L R C Lrs Rrs Lss Rss: every channel but the LFE
    np.testing.assert_allclose(spk01[inside, 0], folded[inside], atol=5 * LSB)
    assert wavinfo.WavInfoReader(str(out / "My_Film_R1_DX-SPK01_1ch_48k_24b.wav")).bext.time_reference == 172_972_800
