"""SMPTE timecode arithmetic: frame counts, timecode strings, seconds and samples.

A timecode names a picture frame, counted from midnight (00:00:00:00). At
integer rates the frame number is the timecode read as a mixed-radix number.
At 29.97 and 59.94 drop-frame (written with ';' before the frames) the labels
00 and 01 (00-03 at 59.94) are skipped at the start of every minute except
every tenth, so the label runs close to the wall clock; no picture frame is
dropped. 23.976 has no drop-frame form: its timecode runs 0.1 % slower than
the wall clock.

All arithmetic is exact (``fractions.Fraction``); floats appear only at the
edges (seconds in, seconds out). Timecode wraps at 24 hours, as SMPTE does.

Rounding, chosen so that every conversion round-trips:

- timecode -> samples takes the first whole sample inside the frame
  (ceiling of the frame's exact start): at 29.97 the exact start of
  01:00:00;00 is 172,799,827.2 samples at 48 kHz, written as 172,799,828,
  and that sample maps back to the same frame. Rounding to nearest would
  give 827, which lies in the previous frame.
- a position in the programme -> timecode: a cue's in point is the frame
  showing when the event starts (floor); its out point is the first frame
  boundary at or after the event ends (ceiling), so the event lies wholly
  in [in, out), like an EDL's exclusive out point. Positions are first
  snapped to the nearest audio sample, so float noise such as
  0.12000000000000001 s cannot push an out point a frame late.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from dubprep.audio_io import SAMPLE_RATE
from dubprep.errors import DubprepError

_SUPPORTED_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60")
)
_DROP_FRAME_RATES = (Fraction(30000, 1001), Fraction(60000, 1001))
_RATE_TOLERANCE = Fraction(1, 10_000)  # relative: '23.976' means 24000/1001, 24 does not
_TIMECODE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})([:;])(\d{2})$")


class TimecodeError(DubprepError, ValueError):
    """A timecode string or frame rate that cannot be used; the message gives the expected form."""


@dataclass(frozen=True)
class FrameRate:
    """A picture rate: ``fraction`` frames per second, with or without drop-frame labels."""

    fraction: Fraction
    drop_frame: bool = False

    def __post_init__(self) -> None:
        if self.fraction not in _SUPPORTED_RATES:
            raise TimecodeError(f"frame rate {self.fraction} is not supported; use one of {_rate_list()}")
        if self.drop_frame and self.fraction not in _DROP_FRAME_RATES:
            raise TimecodeError(
                f"drop-frame timecode exists only at 29.97 and 59.94 fps, not {self.fraction}; "
                "write the timecode with ':' before the frames"
            )

    @classmethod
    def parse(cls, rate: str, drop_frame: bool = False) -> FrameRate:
        """Rate from ffprobe's fraction ('24000/1001', '25/1', '25') or a decimal ('23.976', '29.97')."""
        try:
            value = Fraction(rate.strip())
        except (ValueError, ZeroDivisionError):
            raise TimecodeError(f"frame rate '{rate}' is not a number; write it as '24000/1001' or '25'") from None
        for supported in _SUPPORTED_RATES:
            if abs(value - supported) <= supported * _RATE_TOLERANCE:
                return cls(supported, drop_frame)
        raise TimecodeError(f"frame rate '{rate}' is not supported; use one of {_rate_list()}")

    @classmethod
    def for_timecode(cls, rate: str, timecode: str) -> FrameRate:
        """Rate for ``timecode``: drop-frame when its frames follow a ';' (as ffprobe reports it)."""
        return cls.parse(rate, drop_frame=timecode.strip()[-3:-2] == ";")

    @property
    def nominal_fps(self) -> int:
        """Frames per timecode second: 30 for 29.97, 24 for 23.976."""
        return round(self.fraction)

    @property
    def dropped_per_minute(self) -> int:
        """Labels skipped at the start of each minute not divisible by ten (0 without drop-frame)."""
        return self.nominal_fps // 15 if self.drop_frame else 0

    @property
    def frames_per_day(self) -> int:
        """Frames in 24 hours of timecode, where it wraps."""
        return 24 * 3600 * self.nominal_fps - 24 * 54 * self.dropped_per_minute

    def __str__(self) -> str:
        fps = f"{float(self.fraction):.3f}".rstrip("0").rstrip(".")
        return f"{fps} fps {'drop-frame' if self.drop_frame else 'non-drop'}"


def _rate_list() -> str:
    return ", ".join(str(r) for r in _SUPPORTED_RATES)


def _expected_form(rate: FrameRate) -> str:
    separator = ";" if rate.drop_frame else ":"
    return f"HH:MM:SS{separator}FF with HH < 24, MM and SS < 60, FF < {rate.nominal_fps} at {rate}"


def parse_timecode(timecode: str, rate: FrameRate) -> int:
    """Frames since 00:00:00:00 of ``timecode`` ('01:00:00:00', or '01:00:00;00' at drop-frame)."""
    match = _TIMECODE.match(timecode.strip())
    if match is None:
        raise TimecodeError(f"timecode '{timecode}' is malformed; expected {_expected_form(rate)}")
    hours, minutes, seconds, frames = (int(match.group(i)) for i in (1, 2, 3, 5))
    in_range = hours < 24 and minutes < 60 and seconds < 60 and frames < rate.nominal_fps
    if (match.group(4) == ";") != rate.drop_frame or not in_range:
        raise TimecodeError(f"timecode '{timecode}' is invalid; expected {_expected_form(rate)}")
    drop = rate.dropped_per_minute
    if drop and seconds == 0 and frames < drop and minutes % 10:
        raise TimecodeError(
            f"timecode '{timecode}' does not exist at {rate}: frames 00-{drop - 1:02d} are skipped "
            "at the start of each minute except every tenth"
        )
    total_minutes = 60 * hours + minutes
    label = (60 * total_minutes + seconds) * rate.nominal_fps + frames
    return label - drop * (total_minutes - total_minutes // 10)


def format_timecode(frames: int, rate: FrameRate) -> str:
    """Timecode string of frame ``frames`` since midnight; 0 <= frames < ``rate.frames_per_day``."""
    if not 0 <= frames < rate.frames_per_day:
        raise TimecodeError(
            f"frame {frames} is outside one day of timecode at {rate} (0 to {rate.frames_per_day - 1})"
        )
    label = frames + _skipped_labels(frames, rate)
    fps = rate.nominal_fps
    seconds, frame = divmod(label, fps)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    separator = ";" if rate.drop_frame else ":"
    return f"{hours:02d}:{minute:02d}:{second:02d}{separator}{frame:02d}"


def _skipped_labels(frames: int, rate: FrameRate) -> int:
    """Drop-frame labels skipped before frame ``frames``: 18 per ten minutes at 29.97."""
    drop = rate.dropped_per_minute
    if not drop:
        return 0
    first_minute = 60 * rate.nominal_fps  # the tenth minute keeps all its labels
    other_minute = first_minute - drop
    tens, within = divmod(frames, first_minute + 9 * other_minute)
    minutes_dropped = 0 if within < first_minute else (within - first_minute) // other_minute + 1
    return drop * (9 * tens + minutes_dropped)


def timecode_to_seconds(timecode: str, rate: FrameRate) -> float:
    """Seconds from midnight to the start of ``timecode`` (wall clock, 3603.6 for 01:00:00:00 at 23.976)."""
    return float(parse_timecode(timecode, rate) / rate.fraction)


def timecode_to_samples(timecode: str, rate: FrameRate, sample_rate: int = SAMPLE_RATE) -> int:
    """First whole sample inside ``timecode``'s frame, counted from midnight (BWF TimeReference)."""
    return math.ceil(parse_timecode(timecode, rate) * sample_rate / rate.fraction)


def _frames_from_start(offset_s: float, rate: FrameRate, sample_rate: int) -> Fraction:
    """Exact frames from programme start to ``offset_s``, snapped to the sample grid first."""
    if offset_s < 0:
        raise TimecodeError(f"position {offset_s} s is before the programme start; positions start at 0 s")
    return Fraction(round(offset_s * sample_rate), sample_rate) * rate.fraction


def in_timecode(start_timecode: str, offset_s: float, rate: FrameRate, sample_rate: int = SAMPLE_RATE) -> str:
    """Timecode of the frame showing ``offset_s`` seconds after ``start_timecode`` (floor: a cue's in point)."""
    frames = parse_timecode(start_timecode, rate) + math.floor(_frames_from_start(offset_s, rate, sample_rate))
    return format_timecode(frames % rate.frames_per_day, rate)


def out_timecode(start_timecode: str, offset_s: float, rate: FrameRate, sample_rate: int = SAMPLE_RATE) -> str:
    """Timecode of the first frame boundary at or after ``offset_s`` (ceiling: a cue's exclusive out point)."""
    frames = parse_timecode(start_timecode, rate) + math.ceil(_frames_from_start(offset_s, rate, sample_rate))
    return format_timecode(frames % rate.frames_per_day, rate)


def span_timecodes(start_s: float, end_s: float, start_timecode: str, rate: FrameRate) -> str:
    """'01:00:05:00-01:00:12:03': the frames a span covers, [in, out), on the picture's timeline."""
    return f"{in_timecode(start_timecode, start_s, rate)}-{out_timecode(start_timecode, end_s, rate)}"
