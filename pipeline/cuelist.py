"""Lists for translators and ADR: a CSV cue list with timecode, and SRT.

Cue in/out are frame-accurate picture timecode (in = the frame showing when
the line starts, out = the first frame boundary after it ends, exclusive as
in an EDL). SRT times are media time from the programme's first sample, as a
player of the picture file counts them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from dubprep.timecode import FrameRate, in_timecode, out_timecode

CUE_COLUMNS = ("cue", "tc_in", "tc_out", "duration_s", "speaker", "overlap", "dialogue", "annotations")


@dataclass(frozen=True)
class Cue:
    """One speaker turn; times in seconds from the programme's first sample."""

    speaker: str
    start_s: float
    end_s: float
    overlap: bool


def cues_from_turns(turns: dict, names: dict[str, str]) -> list[Cue]:
    """Cues sorted by start; ``names`` maps diarization labels to delivery names."""
    cues = [Cue(names[t["speaker"]], t["start_s"], t["end_s"], bool(t.get("overlap", False))) for t in turns["turns"]]
    return sorted(cues, key=lambda c: (c.start_s, c.speaker))


def write_cue_csv(path: Path, cues: list[Cue], start_timecode: str, rate: FrameRate) -> None:
    """CSV with a header row; 'dialogue' and 'annotations' are left for the translator."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CUE_COLUMNS)
        for number, cue in enumerate(cues, start=1):
            writer.writerow((
                number,
                in_timecode(start_timecode, cue.start_s, rate),
                out_timecode(start_timecode, cue.end_s, rate),
                f"{cue.end_s - cue.start_s:.3f}",
                cue.speaker.upper(),
                "yes" if cue.overlap else "",
                "",
                "",
            ))


def srt_time(seconds: float) -> str:
    """'HH:MM:SS,mmm' for ``seconds`` >= 0, rounded to the millisecond."""
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def write_srt(path: Path, cues: list[Cue]) -> None:
    """One subtitle per cue whose text is the speaker label in brackets."""
    with open(path, "w", encoding="utf-8") as f:
        for number, cue in enumerate(cues, start=1):
            f.write(f"{number}\n{srt_time(cue.start_s)} --> {srt_time(cue.end_s)}\n[{cue.speaker.upper()}]\n\n")
