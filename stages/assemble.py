"""Assemble: the stems and lists a dubbing studio receives.

Stems are Broadcast WAVs at 48 kHz whose ``bext`` TimeReference is the
picture's start timecode in samples, so they spot at the right place in Pro
Tools:

- ``DX`` (dialogue), ``ME`` (music and effects), ``MX`` (music) and ``FX``
  (effects) in the source layout: DX + ME and DX + MX + FX each re-sum to
  the mix;
- one ``DX-<speaker>`` per speaker: the dialogue stem gated to that
  speaker's turns, full programme length, silence elsewhere; one mono
  channel folded as ``DX-GUIDE`` folds it (``speaker_layout: mono``, the
  default: its size does not grow with the source's channels), or the
  source layout (``speaker_layout: source``). Dialogue
  spoken over another speaker goes to both speakers' stems
  (``overlap: both``) or to one of them (``exclusive``, diarize's exclusive
  turns: the speaker stems then sum to DX wherever someone speaks);
- with ``dialogue_guide``, ``DX-GUIDE``: DX folded down to one mono channel.

Levels are the original mix's: nothing is normalised. Beside them: the cue
list (CSV), SRT, the turns as RTTM and JSON, ``timeline.otio`` (an
OpenTimelineIO timeline: DX and ME, and a clip per turn on each speaker's
track, referencing the stems) and the QC (qc.json, report.html). When the
project transcribes: the cues carry the text, cut to ``cues`` (the layout),
and ``cues.vtt``, ``dialogue_list.csv`` and ``transcript.json`` are added;
QC lists the words found in the M&E.
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dubprep.audio_io import SAMPLE_RATE, audio_info, fold_to_mono
from dubprep.bwf import BextMetadata, BwfWriter, open_bwf
from dubprep.cue_layout import CueLayout
from dubprep.cuelist import write_cue_lists
from dubprep.errors import StageError
from dubprep.media import LAYOUT_CHANNELS, MediaInfo
from dubprep.otio_timeline import StemTrack, write_timeline
from dubprep.qc.result import QcInputs, QcLimits
from dubprep.stage import Stage, StageContext, register
from dubprep.stems import DX, MIX, MX, WorkStems
from dubprep.timecode import FrameRate, timecode_to_samples

_FORMATS = {16: ("PCM_16", "16b"), 24: ("PCM_24", "24b"), 32: ("FLOAT", "32f")}
_TEMPLATE_FIELDS = {"title", "asset", "channels", "format"}
_AUDIO_ONLY_RATE = "25"
GUIDE = "DX-GUIDE"
_TURN_LISTS = {"both": "turns", "exclusive": "exclusive_turns"}  # turns.json list that gates the speaker stems
_BYTES_PER_SAMPLE = {16: 2, 24: 3, 32: 4}
_LISTS_MARGIN_BYTES = 64 * 2**20  # cue lists, timeline, QC report, file headers


class AssembleParams(BaseModel):
    """Delivery format of the stems and lists.

    ``title`` names the programme in file names and bext descriptions.
    ``name_template`` names each stem from {title}, {asset} (ME, MX, FX, DX,
    DX-GUIDE, DX-<speaker>), {channels} and {format} (24b, 16b, 32f).
    ``split_mono`` writes 5.1/7.1 stems as one mono file per channel (.L .R
    .C .LFE .Ls .Rs). ``frame_rate`` and ``start_timecode`` replace what the
    source carries (an audio-only source has neither: 25 fps from
    00:00:00:00 then). ``overlap``: where dialogue spoken while another
    speaker talks goes; ``both`` keeps it in each speaker's stem,
    ``exclusive`` gives each moment to one speaker (diarize's exclusive
    turns), so the speaker stems sum to DX during speech. ``dialogue_guide``
    adds ``DX-GUIDE``, DX folded down to mono. ``speaker_layout``: each
    DX-<speaker> stem as one mono channel folded like the guide (``mono``)
    or in the source layout (``source``). ``cues``: how long a cue of a
    transcribed programme may be (lines, characters per line, seconds);
    without a transcript each turn is one cue. ``qc`` holds the limits the
    delivery is checked against (16-bit stems re-sum to the mix only about
    65 dB down: set ``qc.null_test_min_db`` near 45 for them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(default="PROGRAMME", min_length=1, max_length=64)
    bit_depth: Literal[16, 24, 32] = 24
    crossfade_ms: float = Field(default=10.0, ge=0.0, le=500.0)
    name_template: str = "{title}_{asset}_{channels}ch_48k_{format}.wav"
    split_mono: bool = False
    frame_rate: str | None = None
    start_timecode: str | None = None
    overlap: Literal["both", "exclusive"] = "both"
    dialogue_guide: bool = False
    speaker_layout: Literal["mono", "source"] = "mono"
    cues: CueLayout = CueLayout()
    qc: QcLimits = QcLimits()

    @field_validator("name_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        if not fields <= _TEMPLATE_FIELDS or "asset" not in fields:
            raise ValueError("must use {asset} and only {title}, {asset}, {channels}, {format}")
        if "/" in value or "\\" in value or not value.endswith(".wav"):
            raise ValueError("must be a file name ending in .wav, without folders")
        return value


@dataclass(frozen=True, order=True)
class Turn:
    """A speaker turn in frames at 48 kHz: [start_frame, end_frame)."""

    start_frame: int
    end_frame: int


@dataclass(frozen=True)
class Programme:
    """Where the programme sits on the picture's timeline."""

    media: MediaInfo
    rate: FrameRate
    start_timecode: str

    @property
    def time_reference_samples(self) -> int:
        return timecode_to_samples(self.start_timecode, self.rate)


@register
class AssembleStage(Stage):
    name = "assemble"
    position = 90
    folder = "deliverables"
    inputs = (MIX, "media.json", DX, MX, "turns.json", "turns.rttm")  # ME and FX: computed (dubprep.stems)
    optional_inputs = ("transcript.json", "words_in_me.json")
    outputs = ("turns.rttm", "turns.json", "cues.csv", "cues.srt", "timeline.otio", "qc.json", "report.html")
    Params = AssembleParams

    def run(self, ctx: StageContext) -> None:
        programme = _programme(MediaInfo.load(ctx.inputs["media.json"]), ctx)
        work = WorkStems.of(ctx.inputs)
        for name in (DX, MX):
            if audio_info(ctx.inputs[name]).frames != programme.media.frames:
                raise StageError(f"{ctx.inputs[name]}: length differs from the mix; rerun with --force separate")
        turns = json.loads(ctx.inputs["turns.json"].read_text())
        names = speaker_names(turns["speakers"])
        gated = policy_turns(turns, ctx.params.overlap, ctx.inputs["turns.json"])
        speakers = {names[label]: turns_of(gated, label) for label in turns["speakers"]}
        writer = write_stems(ctx, programme, work, speakers)
        write_timeline(
            ctx.output("timeline.otio"), ctx.params.title, timeline_tracks(writer.assets, programme.media, speakers),
            programme.start_timecode, programme.rate, programme.media.frames,
        )
        cues = write_cue_lists(
            ctx.work_dir, turns, names, ctx.inputs.get("transcript.json"), ctx.params.cues, programme.start_timecode,
            programme.rate,
        )
        shutil.copyfile(ctx.inputs["turns.rttm"], ctx.output("turns.rttm"))
        shutil.copyfile(ctx.inputs["turns.json"], ctx.output("turns.json"))
        ctx.log.info("assemble: %d speaker stems (%s), %d cues", len(speakers), ", ".join(speakers) or "none", len(cues))
        from dubprep.qc.run import run_qc  # here, not above: QC loads torch and matplotlib, the parameters must not

        qc = QcInputs(
            work_dir=ctx.work_dir, stems=writer.assets, work=work, media=programme.media,
            turns=ctx.inputs["turns.json"], start_timecode=programme.start_timecode, rate=programme.rate,
            source=ctx.media, layouts=writer.layouts, me_words=ctx.inputs.get("words_in_me.json"),
            speakers=tuple(f"DX-{name}" for name in speakers),
        )
        ctx.failed_checks.extend(run_qc(qc, ctx.params.qc, ctx.log, ctx.progress))


def write_stems(
    ctx: StageContext, programme: Programme, work: WorkStems, speakers: dict[str, list[Turn]]
) -> StemFiles:
    """Every stem in one pass over the work files: ME, MX and FX as they are, then DX and what is made of it."""
    layout = programme.media.layout
    writer = StemFiles(ctx, programme)
    ctx.progress.start("assemble", programme.media.frames)
    renders: dict[str, list[StemRender]] = {asset: [Copy(asset, layout)] for asset in ("ME", "MX", "FX")}
    dialogue: list[StemRender] = [Copy("DX", layout)]
    if ctx.params.dialogue_guide:
        dialogue.append(MonoGuide(programme.media.channel_names))
    if speakers:
        fade_frames = round(ctx.params.crossfade_ms * SAMPLE_RATE / 1000)
        mono = ctx.params.speaker_layout == "mono"
        dialogue.append(SpeakerGate(speakers, mono, programme.media, _GAINS[ctx.params.overlap], fade_frames))
    else:
        ctx.log.warning("assemble: no speaker turns; no per-speaker stems written")
    renders["DX"] = dialogue
    check_space(ctx, programme, [layout for rs in renders.values() for r in rs for layout in r.layouts.values()])
    writer.render(work.blocks(tuple(renders)), renders)
    ctx.progress.finish()
    return writer


def check_space(ctx: StageContext, programme: Programme, layouts: list[str]) -> None:
    """StageError, before any stem is written, when the disk cannot hold the stems in ``layouts``.

    A disk that fills halfway through a 2-hour delivery would cost the
    hour already written; the engine keeps nothing of a failed stage, so
    the rerun after space is freed starts assembly again.
    """
    channels = sum(len(LAYOUT_CHANNELS[layout]) for layout in layouts)
    needed_bytes = programme.media.frames * channels * _BYTES_PER_SAMPLE[ctx.params.bit_depth] + _LISTS_MARGIN_BYTES
    free_bytes = shutil.disk_usage(ctx.work_dir).free
    if free_bytes < needed_bytes:
        raise StageError(
            f"{ctx.work_dir}: the delivery needs {needed_bytes / 2**30:.2f} GiB ({len(layouts)} stems) "
            f"but the disk has {free_bytes / 2**30:.2f} GiB free; free disk space and rerun (assembly starts "
            f"again, the earlier stages stay done) or choose another --output"
        )


def timeline_tracks(
    assets: dict[str, tuple[Path, ...]], media: MediaInfo, speakers: dict[str, list[Turn]]
) -> list[StemTrack]:
    """DX and ME as one clip each, then each speaker's stem with a clip per turn.

    A track per delivered file: split-mono stems get one per channel
    ('DX.L', 'DX.R', ...), since a clip references one file.
    """
    whole = ((0, media.frames),)
    spans = {"DX": whole, "ME": whole} | {
        f"DX-{name}": tuple((t.start_frame, t.end_frame) for t in turns) for name, turns in speakers.items()
    }
    tracks = []
    for asset, asset_spans in spans.items():
        files = assets[asset]
        labels = [asset] if len(files) == 1 else [f"{asset}.{channel}" for channel in media.channel_names]
        tracks += [StemTrack(label, file, asset_spans) for label, file in zip(labels, files)]
    return tracks


def _programme(media: MediaInfo, ctx: StageContext) -> Programme:
    params: AssembleParams = ctx.params
    rate_text = params.frame_rate or media.frame_rate
    if rate_text is None:
        ctx.log.warning("assemble: the source has no picture; timecode at %s fps (set assemble.frame_rate)", _AUDIO_ONLY_RATE)
        rate_text = _AUDIO_ONLY_RATE
    start = params.start_timecode or media.start_timecode
    if start is None:
        rate = FrameRate.parse(rate_text)
        start = "00:00:00;00" if rate.drop_frame else "00:00:00:00"
    return Programme(media, FrameRate.for_timecode(rate_text, start), start)


def safe_name(label: str) -> str:
    """A title, speaker or character name reduced to characters safe in any file name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_") or "UNNAMED"


def speaker_names(labels: list[str]) -> dict[str, str]:
    """File-safe, unique delivery name for each diarization label; never GUIDE, so DX-GUIDE stays the guide."""
    names: dict[str, str] = {}
    for label in labels:
        name = safe_name(label).upper()
        suffix = 2
        while name in names.values() or f"DX-{name}" == GUIDE:
            name = f"{safe_name(label).upper()}_{suffix}"
            suffix += 1
        names[label] = name
    return names


def policy_turns(turns: dict, overlap: str, path: Path) -> list[dict]:
    """The turns that gate the speaker stems under the ``overlap`` policy."""
    key = _TURN_LISTS[overlap]
    if key not in turns:
        raise StageError(f"{path}: has no '{key}' (written by an older dubprep); rerun with --force diarize")
    return turns[key]


def turns_of(turns: list[dict], label: str) -> list[Turn]:
    """Sorted union of one speaker's turns in frames: disjoint, so ends are sorted too."""
    frames = sorted(
        Turn(round(t["start_s"] * SAMPLE_RATE), round(t["end_s"] * SAMPLE_RATE))
        for t in turns if t["speaker"] == label
    )
    merged: list[Turn] = []
    for turn in frames:
        if merged and turn.start_frame <= merged[-1].end_frame:
            merged[-1] = Turn(merged[-1].start_frame, max(merged[-1].end_frame, turn.end_frame))
        else:
            merged.append(turn)
    return merged


def turn_gain(turns: list[Turn], block_start: int, block_frames: int, fade_frames: int) -> np.ndarray:
    """Gain 1 inside ``turns`` (merged), 0 outside, raised-cosine ramps outside each edge.

    The ramps lie outside the turn so no word inside it is attenuated.
    Returns shape (block_frames,), float32.
    """
    gain = np.zeros(block_frames, dtype=np.float32)
    frames = np.arange(block_start, block_start + block_frames)
    starts = [t.start_frame for t in turns]
    # Turns starting after the block (plus its ramp) cannot touch it; walk
    # back from the last one that can until turns end before the block.
    last = bisect.bisect_right(starts, block_start + block_frames + fade_frames)
    for turn in reversed(turns[:last]):
        if turn.end_frame + fade_frames < block_start:
            break
        if fade_frames:
            before = np.clip((frames - (turn.start_frame - fade_frames)) / fade_frames, 0.0, 1.0)
            after = np.clip(((turn.end_frame + fade_frames) - frames) / fade_frames, 0.0, 1.0)
            ramp = 0.5 - 0.5 * np.cos(np.pi * np.minimum(before, after))
        else:
            ramp = ((frames >= turn.start_frame) & (frames < turn.end_frame)).astype(np.float32)
        np.maximum(gain, ramp, out=gain)
    return gain


def overlapping_gains(speakers: list[list[Turn]], block_start: int, block_frames: int, fade_frames: int) -> np.ndarray:
    """Each speaker's own turn gain (``overlap: both``); shape (speakers, block_frames)."""
    return np.stack([turn_gain(turns, block_start, block_frames, fade_frames) for turns in speakers])


def exclusive_gains(speakers: list[list[Turn]], block_start: int, block_frames: int, fade_frames: int) -> np.ndarray:
    """Turn gains that sum to at most one (``overlap: exclusive``); shape (speakers, block_frames).

    Exclusive turns do not overlap, but a ramp lies outside its turn and can
    reach into the next speaker's: there the gains are scaled to sum to one,
    a crossfade across the change of speaker, so the stems sum to DX
    wherever a speaker has a turn.
    """
    gains = overlapping_gains(speakers, block_start, block_frames, fade_frames)
    return gains / np.maximum(gains.sum(axis=0), 1.0)


GainRule = Callable[[list[list[Turn]], int, int, int], np.ndarray]
_GAINS: dict[str, GainRule] = {"both": overlapping_gains, "exclusive": exclusive_gains}


class StemRender(Protocol):
    """Stems made from each block of one source: ``layouts`` maps each asset it makes to its layout."""

    @property
    def layouts(self) -> dict[str, str]: ...

    def __call__(self, block: np.ndarray, position: int) -> dict[str, np.ndarray]:
        """Each asset's block from ``block`` (shape (frames, channels), first frame ``position``)."""


@dataclass(frozen=True)
class Copy:
    """The source as it is."""

    asset: str
    layout: str

    @property
    def layouts(self) -> dict[str, str]:
        return {self.asset: self.layout}

    def __call__(self, block: np.ndarray, position: int) -> dict[str, np.ndarray]:
        return {self.asset: block}


@dataclass(frozen=True)
class MonoGuide:
    """DX-GUIDE: the dialogue folded down to mono."""

    channel_names: tuple[str, ...]

    @property
    def layouts(self) -> dict[str, str]:
        return {GUIDE: "mono"}

    def __call__(self, block: np.ndarray, position: int) -> dict[str, np.ndarray]:
        return {GUIDE: fold_to_mono(block, self.channel_names)}


@dataclass(frozen=True)
class SpeakerGate:
    """One DX-<speaker> stem per speaker: the dialogue (folded as DX-GUIDE when ``mono``) times the speaker's gain."""

    speakers: dict[str, list[Turn]]
    mono: bool
    media: MediaInfo
    gains: GainRule
    fade_frames: int

    @property
    def layouts(self) -> dict[str, str]:
        layout = "mono" if self.mono else self.media.layout
        return {f"DX-{name}": layout for name in self.speakers}

    def __call__(self, block: np.ndarray, position: int) -> dict[str, np.ndarray]:
        gains = self.gains(list(self.speakers.values()), position, len(block), self.fade_frames)
        if self.mono:
            block = fold_to_mono(block, self.media.channel_names)  # folded once, then gated per speaker
        return {
            f"DX-{name}": block * gain[:, None]  # shape: (frames, channels)
            for name, gain in zip(self.speakers, gains)
        }


class StemFiles:
    """Opens delivery files for stems: one BWF in the stem's layout, or one mono BWF per channel."""

    def __init__(self, ctx: StageContext, programme: Programme):
        self.ctx = ctx
        self.programme = programme
        self.sample_format, self.format_tag = _FORMATS[ctx.params.bit_depth]
        self.origination = datetime.now().replace(microsecond=0)
        self.written: set[str] = set()
        self.assets: dict[str, tuple[Path, ...]] = {}
        self.layouts: dict[str, str] = {}

    def render(self, blocks: Iterable[dict[str, np.ndarray]], renders: dict[str, list[StemRender]]) -> None:
        """Write every stem of ``renders`` (by the source stem each is made from) in one pass over ``blocks``."""
        files = {
            asset: self._open(asset, layout)
            for source in renders.values() for render in source for asset, layout in render.layouts.items()
        }
        try:
            position = 0
            for block in blocks:
                for source, source_renders in renders.items():
                    for render in source_renders:
                        for asset, stem in render(block[source], position).items():
                            _write(files[asset], stem)
                frames = len(block["DX"])
                position += frames
                self.ctx.progress.advance(frames)
        finally:
            for asset, writers in files.items():
                self._close(asset, writers)

    def _open(self, asset: str, layout: str) -> list[BwfWriter]:
        channel_names = LAYOUT_CHANNELS[layout]
        base = self.ctx.params.name_template.format(
            title=safe_name(self.ctx.params.title),
            asset=asset, channels=len(channel_names), format=self.format_tag,
        )
        if self.ctx.params.split_mono and len(channel_names) > 2:
            paths = [base.removesuffix(".wav") + f".{name}.wav" for name in channel_names]
            layouts = ["mono"] * len(channel_names)
        else:
            paths, layouts = [base], [layout]
        for path in paths:
            if path in self.written:
                raise StageError(f"assemble.name_template: two stems would both be named {path}; include {{asset}}")
            self.written.add(path)
        self.assets[asset] = tuple(self.ctx.output(p) for p in paths)
        self.layouts[asset] = layout
        bext = self._bext(asset, layout)
        return [
            open_bwf(self.ctx.output(p), file_layout, self.sample_format, bext) for p, file_layout in zip(paths, layouts)
        ]

    def _bext(self, asset: str, layout: str) -> BextMetadata:
        return BextMetadata(
            description=(
                f"{self.ctx.params.title} {asset} stem, {layout}, "
                f"start {self.programme.start_timecode} at {self.programme.rate}"
            ),
            origination=self.origination,
            time_reference_samples=self.programme.time_reference_samples,
        )

    def _close(self, asset: str, writers: list[BwfWriter]) -> None:
        clipped = sum(w.clipped_samples for w in writers)
        for writer in writers:
            writer.close()
        if clipped:
            self.ctx.log.warning("assemble: %s: %d samples clipped at full scale", asset, clipped)


def _write(writers: list[BwfWriter], block: np.ndarray) -> None:
    if len(writers) == 1:
        writers[0].write(block)
        return
    for channel, writer in enumerate(writers):
        writer.write(block[:, channel : channel + 1])
