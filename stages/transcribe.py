"""Transcribe: what each speaker says, word by word, for the dialogue list; and what the M&E still says.

Off unless the project has a ``transcribe`` key. The dialogue stem is
transcribed turn by turn: each of diarize's exclusive turns (one speaker at
a time, so no stretch is heard twice) from a window reaching ``margin_s``
past each end, so a word the diarizer clipped is still heard. Words go to
the turn holding most of them (:mod:`dubprep.transcript`), and with
``fit_turns`` each turn's boundaries move to its first and last word. The
language is the project's ``language``, or detected once for the programme
from up to 90 s of its longest turns (and logged).

The M&E is searched as QC searches it (Silero VAD on the centre signals,
:func:`dubprep.qc.speech.detect_speech`); each span found is transcribed, so
the QC report can list the original words that survive in it, with timecode.

Outputs: ``transcript.json`` (turns with their words: text, start, end,
probability) and ``words_in_me.json``. A programme without speech gives
both with no turns and no spans, and the model is not even loaded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from dubprep import models, transcript
from dubprep.audio_io import SPEECH_RATE
from dubprep.errors import StageError
from dubprep.media import MediaInfo
from dubprep.params import RelativeToProject
from dubprep.qc.result import SpeechSpan
from dubprep.qc.speech import SPEECH_DETECTOR, detect_speech
from dubprep.stage import Stage, StageContext, register
from dubprep.stages.backends import fasterwhisper
from dubprep.stems import DX, MIX, MonoSource, WorkStems
from dubprep.transcript import Span, Word, assign_words, transcribed_turn, write_transcript

DETECTION_WINDOWS = 3  # 30-s windows of speech heard to detect the programme's language
_TURN_LIST = "exclusive_turns"


def _not_a_folder(value: str, folder: Path) -> bool:
    """A ``model`` that is registered, or no folder next to the project file, is not a path (a name, a hub id)."""
    return value in models.registry() or not (folder / Path(value).expanduser()).is_dir()


class TranscribeParams(BaseModel):
    """Which model transcribes, in which language, and how turns are cut.

    ``model``: a registered name (``dubprep models list``, found in the
    project's models dir), a folder holding a faster-whisper model (relative
    to the project file) or a Hugging Face id; a project's model files are
    checked when it is loaded, before any work. ``language``: a Whisper
    language code ('en', 'fr', 'zh', ...); None detects it once for the
    programme. ``margin_s``: audio heard past each
    end of a turn. ``fit_turns``: move each turn's boundaries to its first
    and last word. ``beam_size``: faster-whisper's beam (1 is greedy: faster,
    a little less accurate).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["faster-whisper"] = "faster-whisper"
    model: Annotated[str, RelativeToProject(unless=_not_a_folder)] = Field(
        default="whisper-large-v3", validate_default=True
    )
    language: str | None = None
    margin_s: float = Field(default=0.2, ge=0.0, le=2.0)
    fit_turns: bool = True
    beam_size: int = Field(default=5, ge=1, le=16)

    @field_validator("model")
    @classmethod
    def _located(cls, value: str, info: ValidationInfo) -> str:
        """The model's folder (a registered one in the project's models dir); a Hugging Face id as it is."""
        return str(fasterwhisper.locate(value, (info.context or {}).get("models_dir")))

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        codes = fasterwhisper.language_codes()
        if value is not None and value not in codes:
            raise ValueError(f"'{value}' is not a Whisper language code; use one of: {', '.join(codes)}")
        return value

    @model_validator(mode="after")
    def _language_of_model(self) -> TranscribeParams:
        only = fasterwhisper.languages(self.model)
        if only and self.language not in (None, *only):
            raise ValueError(
                f"model {Path(self.model).name} knows only {', '.join(only)}, not '{self.language}'; choose a "
                "multilingual model such as whisper-large-v3"
            )
        return self

    @model_validator(mode="after")
    def _files_checked(self, info: ValidationInfo) -> TranscribeParams:
        """A project's model has every file faster-whisper needs (ModelError naming the first missing)."""
        if info.context is not None:  # a project being loaded, not parameters made in code
            fasterwhisper.check(self.model, None)
        return self


@dataclass(frozen=True)
class Programme:
    """What the stage reads: the dialogue and M&E stems as mono 16 kHz, where QC looks for speech, the turns."""

    dialogue: MonoSource
    me_stem: MonoSource
    media: MediaInfo
    turns: list[Span]


@register
class TranscribeStage(Stage):
    name = "transcribe"
    position = 40
    optional = True
    inputs = (DX, MIX, "media.json", "turns.json")  # the M&E is mix - DX
    outputs = ("transcript.json", "words_in_me.json")
    Params = TranscribeParams

    def model_checksum(self, params: TranscribeParams) -> str:
        return fasterwhisper.checksum(params.model, None)

    def run(self, ctx: StageContext) -> None:
        params: TranscribeParams = ctx.params
        programme = _programme(ctx)
        me_blocks = (stems["ME"] for stems in WorkStems.of(ctx.inputs).blocks(("ME",)))
        me_spans = detect_speech(me_blocks, programme.media.layout, ctx.progress)
        if not programme.turns:
            ctx.log.warning("transcribe: no speaker turns in %s; the transcript is empty", ctx.inputs["turns.json"])
        if not programme.turns and not me_spans:
            _write(ctx, {"backend": params.backend, "model": params.model, "language": None, "language_source": "no speech"}, [], [])
            return
        model = fasterwhisper.load(params.model, None, ctx.device, params.beam_size, ctx.log)
        language, about = _language(model, params, programme, ctx.log)
        ctx.progress.start("transcribe", len(programme.turns) + len(me_spans))
        heard = [_hear(model, programme.dialogue, t.start_s, t.end_s, params.margin_s, language, ctx) for t in programme.turns]
        turns = [transcribed_turn(t, w, params.fit_turns) for t, w in zip(programme.turns, assign_words(programme.turns, heard))]
        me_words = [_hear(model, programme.me_stem, s.start_s, s.end_s, params.margin_s, language, ctx) for s in me_spans]
        ctx.progress.finish()
        _write(ctx, about, turns, list(zip(me_spans, me_words)))
        words = sum(len(t.words) for t in turns)
        ctx.log.info("transcribe: %d words in %d turns; %d words in %d span(s) of the M&E", words, len(turns),
                     sum(map(len, me_words)), len(me_spans))


def _programme(ctx: StageContext) -> Programme:
    media = MediaInfo.load(ctx.inputs["media.json"])
    document = json.loads(ctx.inputs["turns.json"].read_text())
    if _TURN_LIST not in document:
        raise StageError(f"{ctx.inputs['turns.json']}: has no '{_TURN_LIST}' (written by an older dubprep); "
                         "rerun with --force diarize")
    turns = [Span(t["speaker"], t["start_s"], t["end_s"], bool(t.get("overlap"))) for t in document[_TURN_LIST]]
    return Programme(
        dialogue=WorkStems.of(ctx.inputs).mono("DX", media.channel_names),
        me_stem=WorkStems.of(ctx.inputs).mono("ME", media.channel_names),
        media=media,
        turns=sorted(turns, key=lambda t: t.start_s),
    )


def _read(source: MonoSource, start_s: float, end_s: float) -> np.ndarray:
    """``source`` from ``start_s`` to ``end_s`` (clipped to the programme), mono 16 kHz; shape: (samples,)."""
    first = min(max(0, round(start_s * SPEECH_RATE)), source.samples)
    last = min(max(first, round(end_s * SPEECH_RATE)), source.samples)
    return source.read(first, last - first)


def _hear(
    model: fasterwhisper.FasterWhisper, source: MonoSource, start_s: float, end_s: float, margin_s: float,
    language: str | None, ctx: StageContext,
) -> list[Word]:
    """The words in ``source`` between ``start_s`` and ``end_s`` and ``margin_s`` either side, in programme time."""
    window_start_s = max(start_s - margin_s, 0.0)
    audio = _read(source, window_start_s, end_s + margin_s)
    words = model.transcribe(audio, language) if len(audio) else []
    ctx.progress.advance(1)
    return [Word(w.text, w.start_s + window_start_s, w.end_s + window_start_s, w.probability) for w in words]


def _language(
    model: fasterwhisper.FasterWhisper, params: TranscribeParams, programme: Programme, log: logging.Logger
) -> tuple[str | None, dict]:
    """The programme's language and how it was chosen (for transcript.json and the log)."""
    about = {"backend": params.backend, "model": params.model}
    if params.language is not None or not model.multilingual:
        language = params.language or "en"
        source = "given" if params.language else "the model knows only English"
        log.info("transcribe: language %s (%s)", language, source)
        return language, {**about, "language": language, "language_source": source}
    if not programme.turns:  # speech only in the M&E: each span's language is detected on its own
        return None, {**about, "language": None, "language_source": "no dialogue to detect it from"}
    speech = _longest_speech(programme, DETECTION_WINDOWS * fasterwhisper.WINDOW_SAMPLES)
    windows = [speech[i : i + fasterwhisper.WINDOW_SAMPLES] for i in range(0, len(speech), fasterwhisper.WINDOW_SAMPLES)]
    totals: dict[str, float] = {}
    for window in windows:
        for code, probability in model.language_probabilities(window).items():
            totals[code] = totals.get(code, 0.0) + probability / len(windows)
    language = max(totals, key=totals.get)
    log.info("transcribe: language %s detected (probability %.2f over %.0f s of speech)",
             language, totals[language], len(speech) / SPEECH_RATE)
    return language, {**about, "language": language, "language_source": "detected",
                      "language_probability": round(totals[language], 3)}


def _longest_speech(programme: Programme, samples: int) -> np.ndarray:
    """The longest turns' audio joined, at most ``samples`` long; shape: (samples,)."""
    pieces, total = [], 0
    for turn in sorted(programme.turns, key=lambda t: t.end_s - t.start_s, reverse=True):
        piece = _read(programme.dialogue, turn.start_s, turn.end_s)[: samples - total]
        pieces.append(piece)
        total += len(piece)
        if total >= samples:
            break
    return np.concatenate(pieces)


def _write(ctx: StageContext, about: dict, turns: list, me_spans: list[tuple[SpeechSpan, list[Word]]]) -> None:
    write_transcript(ctx.output("transcript.json"), turns, about)
    document = {
        "language": about.get("language"),
        "detector": SPEECH_DETECTOR,
        "spans": [
            {"start_s": round(span.start_s, 3), "end_s": round(span.end_s, 3),
             "text": transcript.join_words(words), "words": [transcript.word_json(w) for w in words]}
            for span, words in me_spans
        ],
    }
    ctx.output("words_in_me.json").write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
