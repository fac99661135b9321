"""The transcript: words with times, assigned to speaker turns; transcript.json.

Each turn is transcribed from its own window (the turn plus a margin each
side), so a word near a turn change can be heard in two windows. A word
belongs to the turn holding most of it; a word in no turn (in a margin,
between turns) to the nearest turn. A window keeps only the words that
belong to its own turn, so no word is written twice and none is lost to a
margin. A turn's boundaries can then be fitted to its first and last word.

Times are seconds from the programme's first sample. Word texts are as the
model gives them: in languages written with spaces a word starts with one,
so a turn's text is its words joined as they are (this keeps Chinese,
Japanese or Thai, written without spaces, as they are written).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Word:
    """A recognised word: ``text`` as the model wrote it, ``probability`` in [0, 1]."""

    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True)
class Span:
    """A speaker turn, as diarize wrote it (one of its exclusive turns)."""

    speaker: str
    start_s: float
    end_s: float
    overlap: bool = False


@dataclass(frozen=True)
class TranscribedTurn:
    """A turn with its words; ``start_s``/``end_s`` fitted to the words when asked, else diarize's."""

    speaker: str
    start_s: float
    end_s: float
    diarized_start_s: float
    diarized_end_s: float
    overlap: bool
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return join_words(self.words)


def join_words(words: Sequence[Word]) -> str:
    """The words as one line of text."""
    return "".join(word.text for word in words).strip()


class TurnIndex:
    """Which of a programme's turns (disjoint, sorted by start) a word belongs to."""

    def __init__(self, turns: Sequence[Span]):
        self.turns = turns
        self.starts = [turn.start_s for turn in turns]

    def owner(self, word: Word) -> int:
        """Index of the turn holding most of ``word``; the nearest turn when none holds any of it.

        Ties go to the earlier turn, so that whichever window heard the word,
        the answer is the same. A word of no duration counts as a point.
        """
        first = max(bisect.bisect_right(self.starts, word.start_s) - 1, 0)
        last = bisect.bisect_right(self.starts, word.end_s)
        best, best_overlap = None, 0.0
        for index in range(first, last):
            turn = self.turns[index]
            overlap = min(turn.end_s, word.end_s) - max(turn.start_s, word.start_s)
            holds_point = word.end_s == word.start_s and turn.start_s <= word.start_s <= turn.end_s
            if overlap > best_overlap or (best is None and holds_point):
                best, best_overlap = index, max(overlap, 0.0)
        return best if best is not None else self.nearest(word, first, last)

    def nearest(self, word: Word, first: int, last: int) -> int:
        """The turn whose edge is closest to ``word``'s middle, among ``first - 1`` .. ``last``."""
        middle_s = 0.5 * (word.start_s + word.end_s)
        candidates = range(max(first - 1, 0), min(last + 1, len(self.turns)))
        return min(candidates, key=lambda i: (_distance_s(self.turns[i], middle_s), i))


def _distance_s(turn: Span, time_s: float) -> float:
    return max(turn.start_s - time_s, time_s - turn.end_s, 0.0)


def assign_words(turns: Sequence[Span], heard: Sequence[Sequence[Word]]) -> list[list[Word]]:
    """The words of each turn: of what turn ``i``'s window heard (``heard[i]``), what belongs to turn ``i``."""
    index = TurnIndex(turns)
    return [
        sorted((word for word in words if index.owner(word) == own), key=lambda w: (w.start_s, w.end_s))
        for own, words in enumerate(heard)
    ]


def transcribed_turn(turn: Span, words: Sequence[Word], fit_to_words: bool) -> TranscribedTurn:
    """``turn`` with its ``words``; with ``fit_to_words``, its boundaries moved to the first and last word.

    A fitted turn is usually shorter (diarization pads speech a little); it
    is longer when the diarizer cut a word that the margin caught.
    """
    start_s, end_s = turn.start_s, turn.end_s
    if fit_to_words and words:
        start_s, end_s = min(w.start_s for w in words), max(w.end_s for w in words)
    return TranscribedTurn(turn.speaker, start_s, end_s, turn.start_s, turn.end_s, turn.overlap, tuple(words))


def write_transcript(path: Path, turns: Sequence[TranscribedTurn], about: dict) -> None:
    """transcript.json: ``about`` (language, model, ...) and the turns, each with its text and words."""
    document = {**about, "turns": [_turn_json(turn) for turn in turns]}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _turn_json(turn: TranscribedTurn) -> dict:
    return {
        "speaker": turn.speaker, "start_s": round(turn.start_s, 3), "end_s": round(turn.end_s, 3),
        "diarized_start_s": turn.diarized_start_s, "diarized_end_s": turn.diarized_end_s,
        "overlap": turn.overlap, "text": turn.text, "words": [word_json(word) for word in turn.words],
    }


def word_json(word: Word) -> dict:
    """A word as transcript.json writes it: times to the millisecond, probability to 0.001."""
    return {**asdict(word), "start_s": round(word.start_s, 3), "end_s": round(word.end_s, 3),
            "probability": round(word.probability, 3)}


def read_transcript(path: Path) -> tuple[dict, list[TranscribedTurn]]:
    """transcript.json's header and its turns."""
    document = json.loads(path.read_text(encoding="utf-8"))
    turns = [
        TranscribedTurn(
            t["speaker"], t["start_s"], t["end_s"], t["diarized_start_s"], t["diarized_end_s"], t["overlap"],
            tuple(Word(**w) for w in t["words"]),
        )
        for t in document.pop("turns")
    ]
    return document, turns
