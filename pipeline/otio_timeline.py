"""The delivery as an OpenTimelineIO timeline: the stems laid out on the picture's timeline.

An editor opens ``timeline.otio`` (or converts it with an OTIO adapter) and
gets one audio track per stem, each clip referencing the delivered file by
its relative name, so the timeline and the stems travel together. Whole
stems (DX, ME) are one clip as long as the programme; a speaker's stem is a
clip per turn with gaps between, so the turns read as regions.

Times are whole picture frames at the programme's rate, counted like the
cue list's timecode: a clip starts on the frame showing when the turn starts
(floor) and ends on the first frame boundary after it ends (ceiling). Each
file's available range starts at the programme's start timecode, as its
bext TimeReference places it, and the timeline's global start time is that
timecode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio

from dubprep.audio_io import SAMPLE_RATE
from dubprep.timecode import FrameRate, parse_timecode


@dataclass(frozen=True)
class StemTrack:
    """One delivered file on the timeline: its track name and the spans [start, end) of it to show, in samples."""

    name: str
    file: Path
    spans_samples: tuple[tuple[int, int], ...]


def write_timeline(
    path: Path, title: str, tracks: list[StemTrack], start_timecode: str, rate: FrameRate, frames: int
) -> None:
    """Write ``timeline.otio``: a track per entry of ``tracks``, in order.

    ``frames`` is the programme's length in samples; the files are referenced
    by name, relative to ``path``'s folder, where they are delivered.
    """
    fps = float(rate.fraction)
    start_frame = parse_timecode(start_timecode, rate)
    programme = otio.opentime.TimeRange(
        otio.opentime.RationalTime(start_frame, fps),
        otio.opentime.RationalTime(_picture_frames(frames, rate, math.ceil), fps),
    )
    timeline = otio.schema.Timeline(name=title, global_start_time=programme.start_time)
    for stem in tracks:
        track = otio.schema.Track(name=stem.name, kind=otio.schema.TrackKind.Audio)
        cursor = 0
        for first, last in clip_frames(stem.spans_samples, rate):
            if first > cursor:
                track.append(otio.schema.Gap(duration=otio.opentime.RationalTime(first - cursor, fps)))
            # One reference per clip: OTIO serialises each clip's own.
            reference = otio.schema.ExternalReference(target_url=stem.file.name, available_range=programme)
            used = otio.opentime.TimeRange(
                otio.opentime.RationalTime(start_frame + first, fps), otio.opentime.RationalTime(last - first, fps)
            )
            track.append(otio.schema.Clip(name=stem.name, media_reference=reference, source_range=used))
            cursor = last
        timeline.tracks.append(track)
    otio.adapters.write_to_file(timeline, str(path), adapter_name="otio_json")


def clip_frames(spans_samples: tuple[tuple[int, int], ...], rate: FrameRate) -> list[tuple[int, int]]:
    """Picture frames [in, out) from the programme start of sorted sample spans.

    In is floored and out ceiled, as the cue list's timecode; spans closer
    than a frame would then overlap, and become one clip.
    """
    clips: list[tuple[int, int]] = []
    for start, end in spans_samples:
        first, last = _picture_frames(start, rate, math.floor), _picture_frames(end, rate, math.ceil)
        if clips and first < clips[-1][1]:
            clips[-1] = (clips[-1][0], max(clips[-1][1], last))
        elif last > first:
            clips.append((first, last))
    return clips


def _picture_frames(samples: int, rate: FrameRate, rounding: Callable[[Fraction], int]) -> int:
    """``samples`` at 48 kHz in picture frames, rounded by ``rounding`` (math.floor or math.ceil)."""
    return rounding(Fraction(samples, SAMPLE_RATE) * rate.fraction)
