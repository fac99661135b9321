"""Lists for translators and ADR: a CSV cue list with timecode, SRT, and with a transcript WebVTT and a dialogue list.

Cue in/out are frame-accurate picture timecode (in = the frame showing when
the line starts, out = the first frame boundary after it ends, exclusive as
in an EDL). SRT and WebVTT times are media time from the programme's first
sample, as a player of the picture file counts them.

Without a transcript a cue is a speaker turn and its dialogue is left for
the translator. With one, long turns are cut into subtitle-sized cues
(:mod:`dubprep.cue_layout`) and each cue carries its lines: in ``cues.csv``
as one line of dialogue, in ``cues.srt`` under a ``[SPEAKER]`` line (so
the text lines keep the layout's limits), in ``cues.vtt`` in a WebVTT voice
span (``<v SPEAKER>``), and in ``dialogue_list.csv`` each character's lines
together, in programme order, numbered as in ``cues.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dubprep.cue_layout import CueLayout, split_turn
from dubprep.timecode import FrameRate, in_timecode, out_timecode
from dubprep.transcript import TranscribedTurn

CUE_COLUMNS = ("cue", "tc_in", "tc_out", "duration_s", "speaker", "overlap", "dialogue", "annotations")
DIALOGUE_LIST_COLUMNS = ("cue", "tc_in", "tc_out", "character", "line")


@dataclass(frozen=True)
class Cue:
    """A speaker turn, or part of one; times in seconds from the programme's first sample, ``lines`` its text."""

    speaker: str
    start_s: float
    end_s: float
    overlap: bool
    lines: tuple[str, ...] = ()

    @property
    def dialogue(self) -> str:
        return " ".join(self.lines)


def cues_from_turns(turns: dict, names: dict[str, str]) -> list[Cue]:
    """Cues sorted by start; ``names`` maps diarization labels to delivery names."""
    cues = [Cue(names[t["speaker"]], t["start_s"], t["end_s"], bool(t.get("overlap", False))) for t in turns["turns"]]
    return sorted(cues, key=lambda c: (c.start_s, c.speaker))


def cues_from_transcript(turns: Sequence[TranscribedTurn], names: dict[str, str], layout: CueLayout) -> list[Cue]:
    """Cues sorted by start: each turn cut to ``layout``; a turn without words is one cue without text.

    A turn's first cue starts where the turn starts and its last ends where
    it ends (fitted to the words when the transcribe stage fitted them);
    cues in between start and end with their words.
    """
    cues = []
    for turn in turns:
        speaker = names[turn.speaker]
        parts = split_turn(turn.words, layout)
        if not parts:
            cues.append(Cue(speaker, turn.start_s, turn.end_s, turn.overlap))
            continue
        for index, part in enumerate(parts):
            start_s = turn.start_s if index == 0 else part.words[0].start_s
            end_s = turn.end_s if index == len(parts) - 1 else part.words[-1].end_s
            cues.append(Cue(speaker, start_s, max(end_s, start_s), turn.overlap, part.lines))
    return sorted(cues, key=lambda c: (c.start_s, c.speaker))


def write_cue_csv(path: Path, cues: list[Cue], start_timecode: str, rate: FrameRate) -> None:
    """CSV with a header row; 'dialogue' holds the transcript's text when there is one, 'annotations' is left empty."""
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
                cue.dialogue,
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
    """One subtitle per cue: the speaker label in brackets, then the cue's lines."""
    with open(path, "w", encoding="utf-8") as f:
        for number, cue in enumerate(cues, start=1):
            text = "\n".join((f"[{cue.speaker.upper()}]", *cue.lines))
            f.write(f"{number}\n{srt_time(cue.start_s)} --> {srt_time(cue.end_s)}\n{text}\n\n")


def vtt_time(seconds: float) -> str:
    """'HH:MM:SS.mmm' for ``seconds`` >= 0, rounded to the millisecond."""
    return srt_time(seconds).replace(",", ".")


def _vtt_escape(text: str) -> str:
    """Cue text as WebVTT needs it: '&', '<' and '>' as character references."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_vtt(path: Path, cues: list[Cue]) -> None:
    """WebVTT: each cue numbered as in cues.csv, its lines in a voice span naming the speaker."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("WEBVTT\n\n")
        for number, cue in enumerate(cues, start=1):
            voice = _vtt_escape(cue.speaker.upper())
            text = "\n".join(_vtt_escape(line) for line in cue.lines)
            f.write(f"{number}\n{vtt_time(cue.start_s)} --> {vtt_time(cue.end_s)}\n<v {voice}>{text}\n\n")


def write_dialogue_list(path: Path, cues: list[Cue], start_timecode: str, rate: FrameRate) -> None:
    """dialogue_list.csv: each character's cues together (characters by name), in programme order, numbered as in cues.csv."""
    numbered = sorted(enumerate(cues, start=1), key=lambda item: (item[1].speaker.upper(), item[0]))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(DIALOGUE_LIST_COLUMNS)
        for number, cue in numbered:
            writer.writerow((
                number,
                in_timecode(start_timecode, cue.start_s, rate),
                out_timecode(start_timecode, cue.end_s, rate),
                cue.speaker.upper(),
                cue.dialogue,
            ))
