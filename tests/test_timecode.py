"""Timecode: published reference values, drop-frame labels, round trips, cue rounding and bad input."""

import itertools

import pytest

from dubprep.timecode import (
    FrameRate,
    TimecodeError,
    format_timecode,
    in_timecode,
    out_timecode,
    parse_timecode,
    timecode_to_samples,
    timecode_to_seconds,
)

RATES = [
    FrameRate.parse(rate, drop_frame=df)
    for rate, df in [("24000/1001", False), ("24", False), ("25", False), ("30000/1001", True),
                     ("30000/1001", False), ("30", False), ("48", False), ("50", False),
                     ("60000/1001", True), ("60000/1001", False), ("60", False)]
]
FILM = FrameRate.parse("24000/1001")
PAL = FrameRate.parse("25")
NTSC_DF = FrameRate.parse("30000/1001", drop_frame=True)


def test_film_rate_hour_matches_published_values():
    assert parse_timecode("01:00:00:00", FILM) == 86_400
    assert timecode_to_seconds("01:00:00:00", FILM) == pytest.approx(3603.6, abs=1e-9)
    assert timecode_to_samples("01:00:00:00", FILM) == 172_972_800


def test_pal_ten_hours():
    assert parse_timecode("10:00:00:00", PAL) == 900_000
    assert timecode_to_samples("10:00:00:00", PAL) == 1_728_000_000


def test_drop_frame_hour_is_wall_clock_within_a_frame():
    assert parse_timecode("01:00:00;00", NTSC_DF) == 107_892
    assert timecode_to_seconds("01:00:00;00", NTSC_DF) == pytest.approx(3599.9964, abs=1e-9)
    # The exact start, 172,799,827.2 samples, lies between samples: the first
    # whole sample inside the frame is taken, and it maps back to that frame.
    samples = timecode_to_samples("01:00:00;00", NTSC_DF)
    assert samples == 172_799_828
    assert in_timecode("00:00:00;00", samples / 48000, NTSC_DF) == "01:00:00;00"
    assert in_timecode("00:00:00;00", (samples - 1) / 48000, NTSC_DF) == "00:59:59;29"


@pytest.mark.parametrize(
    ("rate", "before", "after"),
    [(NTSC_DF, "00:00:59;29", "00:01:00;02"), (NTSC_DF, "00:09:59;29", "00:10:00;00"),
     (NTSC_DF, "00:10:59;29", "00:11:00;02"), (NTSC_DF, "09:59:59;29", "10:00:00;00"),
     (FrameRate.parse("60000/1001", True), "00:00:59;59", "00:01:00;04"),
     (FILM, "00:00:59:23", "00:01:00:00"), (PAL, "23:59:59:24", None)],
)
def test_next_frame_label(rate, before, after):
    frame = parse_timecode(before, rate)
    if after is None:  # the last frame of the day
        assert frame == rate.frames_per_day - 1
    else:
        assert format_timecode(frame + 1, rate) == after


@pytest.mark.parametrize("timecode", ["00:01:00;00", "00:01:00;01", "00:19:00;01", "23:59:00;00"])
def test_skipped_drop_frame_labels_are_rejected(timecode):
    with pytest.raises(TimecodeError, match="skipped"):
        parse_timecode(timecode, NTSC_DF)


@pytest.mark.parametrize("rate", RATES, ids=str)
def test_labels_follow_the_smpte_counting_rule(rate):
    """Every frame's label is the next label a naive counter gives, skipping only drop-frame labels.

    Checked over the first 21 minutes (two ten-minute drop-frame cycles) and
    the last 2000 frames of the day; the skipped labels must be rejected.
    """
    fps, drop = rate.nominal_fps, rate.dropped_per_minute
    labels = (
        (h, m, s, f) for h, m, s, f in itertools.product(range(24), range(60), range(60), range(fps))
        if not (drop and s == 0 and f < drop and m % 10)
    )
    head = list(itertools.islice(labels, 21 * 60 * fps))
    separator = ";" if rate.drop_frame else ":"
    for frame, (h, m, s, f) in enumerate(head):
        label = f"{h:02d}:{m:02d}:{s:02d}{separator}{f:02d}"
        assert format_timecode(frame, rate) == label
        assert parse_timecode(label, rate) == frame
    for minute, frame in itertools.product(range(1, 21), range(drop)):
        skipped = f"00:{minute:02d}:00;{frame:02d}"
        if minute % 10:
            with pytest.raises(TimecodeError, match="skipped"):
                parse_timecode(skipped, rate)
        else:
            assert format_timecode(parse_timecode(skipped, rate), rate) == skipped
    for frame in range(rate.frames_per_day - 2000, rate.frames_per_day):
        assert parse_timecode(format_timecode(frame, rate), rate) == frame
    assert format_timecode(rate.frames_per_day - 1, rate) == f"23:59:59{separator}{fps - 1:02d}"


def test_frames_per_day():
    assert NTSC_DF.frames_per_day == 2_589_408
    assert FrameRate.parse("60000/1001", True).frames_per_day == 2 * 2_589_408
    assert PAL.frames_per_day == 2_160_000


@pytest.mark.parametrize(
    ("rate", "start_s", "end_s", "cue_in", "cue_out"),
    [(PAL, 1.0, 2.5, "10:00:01:00", "10:00:02:13"),  # 62.5 frames: out is the next boundary
     (PAL, 0.01, 0.02, "10:00:00:00", "10:00:00:01"),  # inside one frame: one frame long
     (PAL, 0.04 * 3, 0.04 * 3, "10:00:00:03", "10:00:00:03"),  # 0.12000000000000001 s: no spurious frame
     (FILM, 3603.6, 3603.6 + 1001 / 24000 / 2, "11:00:00:00", "11:00:00:01")],
)
def test_cue_in_is_floor_and_out_is_ceiling(rate, start_s, end_s, cue_in, cue_out):
    assert in_timecode("10:00:00:00", start_s, rate) == cue_in
    assert out_timecode("10:00:00:00", end_s, rate) == cue_out


def test_cue_timecode_crosses_a_drop_frame_minute_and_midnight():
    one_frame_s = 1001 / 30000
    assert in_timecode("00:00:59;29", one_frame_s, NTSC_DF) == "00:01:00;02"
    assert out_timecode("23:59:59:24", 0.04, PAL) == "00:00:00:00"


@pytest.mark.parametrize(
    ("rate", "timecode"),
    [(PAL, "1:00:00:00"), (PAL, "01:00:00"), (PAL, "01:00:00:25"), (PAL, "01:60:00:00"),
     (PAL, "24:00:00:00"), (PAL, "01:00:00;00"), (NTSC_DF, "01:00:00:00"), (PAL, "aa:bb:cc:dd")],
)
def test_invalid_timecode_names_the_expected_form(rate, timecode):
    with pytest.raises(ValueError, match="expected HH:MM:SS") as raised:
        parse_timecode(timecode, rate)
    assert isinstance(raised.value, TimecodeError)
    assert timecode in str(raised.value)


def test_rate_parsing():
    assert FrameRate.parse("24000/1001") == FrameRate.parse("23.976") == FILM
    assert FrameRate.parse("25/1") == PAL and PAL.nominal_fps == 25
    assert FrameRate.for_timecode("30000/1001", "01:00:00;00") == NTSC_DF
    assert not FrameRate.for_timecode("30000/1001", "01:00:00:00").drop_frame
    assert FrameRate.parse("60000/1001").nominal_fps == 60
    assert str(NTSC_DF) == "29.97 fps drop-frame"


@pytest.mark.parametrize(("rate", "drop_frame", "message"),
                         [("23.5", False, "not supported"), ("abc", False, "not a number"),
                          ("0/0", False, "not a number"), ("25", True, "only at 29.97 and 59.94")])
def test_invalid_rates(rate, drop_frame, message):
    with pytest.raises(TimecodeError, match=message):
        FrameRate.parse(rate, drop_frame=drop_frame)


def test_out_of_range_positions_are_errors():
    with pytest.raises(TimecodeError, match="before the programme start"):
        in_timecode("01:00:00:00", -0.5, PAL)
    with pytest.raises(TimecodeError, match="outside one day"):
        format_timecode(PAL.frames_per_day, PAL)
    with pytest.raises(TimecodeError, match="outside one day"):
        format_timecode(-1, PAL)
