"""Words to turns and turns to subtitle-sized cues, on hand-made word lists.

Latin, Chinese (no spaces), Arabic and Hebrew (right to left), and a
ten-minute monologue.
"""

from __future__ import annotations

import pytest

from dubprep.cue_layout import CueLayout, boundary_strength, break_lines, fits, split_turn
from dubprep.transcript import Span, Word, assign_words, join_words, transcribed_turn

LAYOUT = CueLayout()


def words_from(text: str, start_s: float = 0.0, word_s: float = 0.3, gap_s: float = 0.05, spaces: bool = True) -> list[Word]:
    """``text``'s words (split on spaces, or per character with ``spaces=False``) at a steady pace."""
    pieces = [f" {w}" for w in text.split()] if spaces else list(text)
    words, time_s = [], start_s
    for piece in pieces:
        words.append(Word(piece, round(time_s, 3), round(time_s + word_s, 3), 0.9))
        time_s += word_s + gap_s
    return words


def test_a_word_straddling_a_turn_change_goes_to_the_turn_holding_most_of_it():
    a, b = Span("A", 0.0, 2.0), Span("B", 2.0, 4.0)
    mostly_a = Word(" yes", 1.7, 2.1, 0.9)  # 0.3 s in A, 0.1 s in B
    mostly_b = Word(" no", 1.9, 2.4, 0.9)
    inside_a = Word(" well", 0.5, 0.9, 0.9)
    # Both windows heard both straddling words (a margin reaches into the other turn).
    heard = [[inside_a, mostly_a, mostly_b], [mostly_a, mostly_b]]
    assert assign_words([a, b], heard) == [[inside_a, mostly_a], [mostly_b]]


def test_words_in_no_turn_go_to_the_nearest_and_none_is_written_twice():
    a, b = Span("A", 0.0, 1.0), Span("B", 2.0, 3.0)
    late = Word(" late", 1.05, 1.15, 0.5)  # in A's margin, between the turns
    early = Word(" early", 1.85, 1.95, 0.5)  # in B's margin
    point = Word(" x", 2.0, 2.0, 0.1)  # no duration, on B's first instant
    before = Word(" hm", -0.1, -0.05, 0.2)  # before the first turn
    heard = [[before, late, early], [late, early, point]]
    assert assign_words([a, b], heard) == [[before, late], [early, point]]
    tie = Word(" tie", 0.9, 1.1, 0.5)  # 0.1 s in A, none in B... and a word exactly between two turns
    halfway = Word(" mid", 1.4, 1.6, 0.5)
    assert assign_words([a, b], [[tie, halfway], [tie, halfway]]) == [[tie, halfway], []]


def test_turns_fit_to_their_first_and_last_word_or_keep_diarize_times():
    turn = Span("A", 1.0, 5.0, overlap=True)
    words = [Word(" One", 1.4, 1.8, 0.9), Word(" two.", 1.9, 5.1, 0.8)]
    fitted = transcribed_turn(turn, words, fit_to_words=True)
    assert (fitted.start_s, fitted.end_s, fitted.diarized_start_s, fitted.diarized_end_s) == (1.4, 5.1, 1.0, 5.0)
    assert fitted.text == "One two." and fitted.overlap
    kept = transcribed_turn(turn, words, fit_to_words=False)
    assert (kept.start_s, kept.end_s) == (1.0, 5.0)
    silent = transcribed_turn(turn, [], fit_to_words=True)
    assert (silent.start_s, silent.end_s, silent.text) == (1.0, 5.0, "")


def test_a_short_turn_is_one_cue_on_one_line():
    words = words_from("Where were you last night?")
    (cue,) = split_turn(words, LAYOUT)
    assert cue.lines == ("Where were you last night?",) and cue.words == tuple(words)


def test_two_lines_are_balanced_and_break_after_punctuation():
    words = words_from("I told you already, the car was gone when I came back.")
    (cue,) = split_turn(words, LAYOUT)
    assert cue.lines == ("I told you already,", "the car was gone when I came back.")
    even = words_from("one two three four five six seven eight nine ten eleven")
    assert break_lines(even, LAYOUT) == ["one two three four five six", "seven eight nine ten eleven"]


def test_long_turns_are_cut_at_sentence_ends_before_pauses_and_commas():
    text = ("We should leave before it gets dark. The road is long, and nobody knows it well. "
            "I will drive the first half, you take the rest, and we stop once for fuel near the border.")
    words = words_from(text)
    cues = split_turn(words, LAYOUT)
    # A cue holds as many whole sentences as fit; the rest is cut at a comma.
    assert [cue.lines for cue in cues] == [
        ("We should leave before it gets dark. The", "road is long, and nobody knows it well."),
        ("I will drive the first half,", "you take the rest,"),
        ("and we stop once for fuel near the border.",),
    ]
    assert all(fits(cue.words, LAYOUT) for cue in cues)
    assert [w for cue in cues for w in cue.words] == words


def test_without_punctuation_a_pause_decides():
    before = words_from("so we waited there for hours and hours", word_s=0.3)
    after = words_from("then the bus came and we got on at long last", start_s=before[-1].end_s + 0.8)
    cues = split_turn(before + after, LAYOUT)
    assert [cue.words for cue in cues] == [tuple(before), tuple(after)]
    assert boundary_strength(before + after, len(before)) == (0, pytest.approx(0.8), 0)


def test_the_layout_is_configurable():
    words = words_from("We should leave before it gets dark.")
    one_short_line = CueLayout(max_lines=1, max_line_chars=20)
    cues = split_turn(words, one_short_line)
    assert all(len(cue.lines) == 1 and len(cue.lines[0]) <= 20 for cue in cues)
    assert join_words([w for cue in cues for w in cue.words]) == "We should leave before it gets dark."
    slow = words_from("one two three four", word_s=2.0)
    assert len(split_turn(slow, CueLayout(max_cue_s=5.0))) == 2  # 8 s of speech: two cues of 4


def test_a_word_longer_than_a_line_stays_whole():
    giant = Word(" Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft", 0.0, 2.0, 0.9)
    cues = split_turn([Word(" Die", 0.0, 0.1, 0.9), giant, Word(" kommt.", 2.1, 2.4, 0.9)], LAYOUT)
    assert giant.text.strip() in [line for cue in cues for line in cue.lines]
    assert "".join(w.text for cue in cues for w in cue.words) == " Die" + giant.text + " kommt."


def test_chinese_without_spaces_breaks_between_characters_and_at_full_width_marks():
    sentence = "我们天黑以前必须出发。路很长，谁也不熟悉这条路，我开前半段，你开后半段。"
    words = words_from(sentence, word_s=0.2, spaces=False)
    layout = CueLayout(max_lines=2, max_line_chars=16)  # CJK lines are shorter
    cues = split_turn(words, layout)
    assert "".join(line for cue in cues for line in cue.lines) == sentence
    assert cues[0].lines == ("我们天黑以前必须出发。",)  # cut at the full stop
    assert all(len(line) <= 16 for cue in cues for line in cue.lines)


def test_right_to_left_text_keeps_spoken_order_and_its_own_sentence_marks():
    arabic = ("هل رأيت السيارة؟ لقد كانت هنا قبل ساعة واحدة فقط من الآن، "
              "ثم اختفت فجأة بدون أي أثر في الشارع الطويل.")
    words = words_from(arabic)
    cues = split_turn(words, LAYOUT)
    assert cues[0].lines == ("هل رأيت السيارة؟",)  # the Arabic question mark ends a sentence
    assert cues[1].lines[-1].endswith("الآن،")  # then the Arabic comma
    rebuilt = " ".join(line for cue in cues for line in cue.lines)
    assert rebuilt == arabic  # logical order, no marks added
    assert all(len(line) <= 42 for cue in cues for line in cue.lines)
    hebrew = words_from("אני לא יודע איפה הוא עכשיו בדיוק? אולי הוא כבר הלך הביתה לפני שעה, "
                        "אולי הוא עדיין מחכה לנו בחוץ ליד הדלת הגדולה של הבניין.")
    first = split_turn(hebrew, LAYOUT)[0]
    assert first.lines[0] == "אני לא יודע איפה הוא עכשיו בדיוק?"  # a line break after the question mark


def test_a_ten_minute_monologue_becomes_cues_that_all_fit():
    sentence = "This is the part of the story that nobody ever wants to hear, but here it is again."
    words = words_from(" ".join([sentence] * 120))  # 2040 words, about 12 minutes at this pace
    assert words[-1].end_s > 600
    cues = split_turn(words, LAYOUT)
    assert [w for cue in cues for w in cue.words] == words  # every word once, in order
    assert all(fits(cue.words, LAYOUT) for cue in cues)
    assert all(cue.words[-1].text.endswith((".", ",")) for cue in cues)  # cut at punctuation every time
