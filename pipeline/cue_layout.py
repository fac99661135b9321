"""Subtitle-sized cues from a turn's words: where to cut a long turn, where to break its lines.

A turn whose text fits the layout (at most ``max_lines`` lines of
``max_line_chars`` characters, at most ``max_cue_s`` long) is one cue.
A longer one is cut, cue by cue from its start: among the cuts that leave
a first cue fitting the layout, the strongest boundary wins (the end of a
sentence, then a pause between words of at least ``PAUSE_S``, the longest
first, then a clause mark such as a comma), the latest one among equals, so
cues are as full as the sentence structure allows. Lines are then broken
at word boundaries, as evenly as possible, after punctuation where that
costs little.

Characters are counted as Unicode code points, whatever the script; the
limits suit Latin scripts (two lines of 42 is Netflix's English rule) and
are set per project for others. A single word longer than a line stays
whole on its line: nothing is cut inside a word, nothing is dropped.
Right-to-left text needs nothing special: words are kept in the order they
were spoken (logical order) and the player lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from dubprep.transcript import Word, join_words

PAUSE_S = 0.3  # a gap between words that a listener hears as a pause
# Sentence and clause ends in the scripts Whisper writes: Latin, CJK full-width, Arabic, Urdu,
# Devanagari, Armenian, Ethiopic, Burmese, Thai has none (it separates with spaces).
SENTENCE_ENDS = frozenset(".?!…。？！؟۔।॥։።၊။")
CLAUSE_ENDS = frozenset(",;:、，；：،؛")
_CLOSERS = "\"'»”’)]}」』】"  # a quote or bracket after the mark still ends the sentence
# A break after punctuation is taken when the lines come out at most this many characters less even.
_MARK_SHIFT_CHARS = 10


class CueLayout(BaseModel):
    """How long a cue may be: ``max_lines`` lines of ``max_line_chars`` characters, ``max_cue_s`` seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_lines: int = Field(default=2, ge=1, le=4)
    max_line_chars: int = Field(default=42, ge=8, le=200)
    max_cue_s: float = Field(default=7.0, gt=0.5, le=60.0)


@dataclass(frozen=True)
class WordCue:
    """Consecutive words of one turn shown together, and their lines."""

    words: tuple[Word, ...]
    lines: tuple[str, ...]


def split_turn(words: Sequence[Word], layout: CueLayout) -> list[WordCue]:
    """``words`` (one turn's, in order) as cues that fit ``layout`` where any cut allows it."""
    cues: list[WordCue] = []
    rest = list(words)
    while rest:
        fitting = _longest_fitting(rest, layout)
        count = len(rest) if fitting == len(rest) else _best_cut(rest, fitting)
        cues.append(WordCue(tuple(rest[:count]), tuple(break_lines(rest[:count], layout))))
        rest = rest[count:]
    return cues


def _longest_fitting(words: list[Word], layout: CueLayout) -> int:
    """How many of the first ``words`` fit one cue (at least one: a word never splits)."""
    count = 1
    while count < len(words) and fits(words[: count + 1], layout):
        count += 1
    return count


def fits(words: Sequence[Word], layout: CueLayout) -> bool:
    """Whether ``words`` make one cue: not too long to read, and their lines fit."""
    if words[-1].end_s - words[0].start_s > layout.max_cue_s:
        return False
    lines = break_lines(words, layout)
    return len(lines) <= layout.max_lines and all(len(line) <= layout.max_line_chars for line in lines)


def _best_cut(words: list[Word], fitting: int) -> int:
    """Where to end the first cue: 1..``fitting`` words, at the strongest boundary, latest among equals."""
    return max(range(1, fitting + 1), key=lambda count: (*boundary_strength(words, count), count))


def boundary_strength(words: Sequence[Word], count: int) -> tuple[int, float, int]:
    """How good a cut after ``words[count - 1]`` is: (sentence end, pause length if a pause, clause end)."""
    before = words[count - 1].text.rstrip().rstrip(_CLOSERS)
    gap_s = words[count].start_s - words[count - 1].end_s if count < len(words) else 0.0
    mark = before[-1:] if before else ""
    return (int(mark in SENTENCE_ENDS), gap_s if gap_s >= PAUSE_S else 0.0, int(mark in CLAUSE_ENDS))


def break_lines(words: Sequence[Word], layout: CueLayout) -> list[str]:
    """``words`` as the fewest lines that fit ``max_line_chars``, as even as possible, breaks after punctuation preferred.

    Minimises the sum of squared line lengths over every split into that many
    lines (dynamic programming over word boundaries), less a small bonus per
    break after a punctuation mark. When even ``max_lines`` lines cannot hold
    the words, they are still broken evenly into ``max_lines`` lines and the
    caller decides (``fits`` says no).
    """
    text = join_words(words)
    if len(text) <= layout.max_line_chars or len(words) == 1:
        return [text] if text else []
    for line_count in range(2, len(words) + 1):
        lines = _even_lines(words, line_count, layout.max_line_chars)
        if lines is not None:
            return lines
        if line_count >= layout.max_lines:
            return _even_lines(words, layout.max_lines, None)
    return _even_lines(words, len(words), None)


def _even_lines(words: Sequence[Word], line_count: int, max_chars: int | None) -> list[str] | None:
    """``words`` in exactly ``line_count`` lines of at most ``max_chars`` (None: any), as even as possible."""
    n = len(words)
    # cost[k][i]: best cost of the first i words in k lines; cut[k][i]: where the last of those lines starts.
    cost = [[float("inf")] * (n + 1) for _ in range(line_count + 1)]
    cut = [[0] * (n + 1) for _ in range(line_count + 1)]
    cost[0][0] = 0.0
    for lines in range(1, line_count + 1):
        for end in range(lines, n + 1):
            for start in range(lines - 1, end):
                line = join_words(words[start:end])
                if max_chars is not None and len(line) > max_chars and end - start > 1:
                    continue
                bonus = 2 * _MARK_SHIFT_CHARS**2 if end < n and _ends_with_mark(words[end - 1]) else 0
                total = cost[lines - 1][start] + len(line) ** 2 - bonus
                if total < cost[lines][end]:
                    cost[lines][end], cut[lines][end] = total, start
    if cost[line_count][n] == float("inf"):
        return None
    bounds, end = [], n
    for lines in range(line_count, 0, -1):
        bounds.append((cut[lines][end], end))
        end = cut[lines][end]
    return [join_words(words[start:end]) for start, end in reversed(bounds)]


def _ends_with_mark(word: Word) -> bool:
    mark = word.text.rstrip().rstrip(_CLOSERS)[-1:]
    return bool(mark) and (mark in SENTENCE_ENDS or mark in CLAUSE_ENDS)
