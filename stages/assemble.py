"""Assemble: the stems and lists a dubbing studio receives.

Stems are Broadcast WAVs at 48 kHz whose ``bext`` TimeReference is the
picture's start timecode in samples, so they spot at the right place in Pro
Tools: ``ME`` and ``DX`` in the source layout, and one ``DX-<speaker>`` per
speaker (the dialogue stem gated to that speaker's turns, full programme
length, silence elsewhere). Levels are the original mix's: nothing is
normalised, so DX + ME re-sums to the mix. Beside them: the cue list (CSV),
SRT, and the turns as RTTM and JSON.
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
import string
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dubprep.audio_io import SAMPLE_RATE, audio_info, iter_blocks
from dubprep.bwf import BextMetadata, BwfWriter, open_bwf
from dubprep.cuelist import cues_from_turns, write_cue_csv, write_srt
from dubprep.errors import StageError
from dubprep.media import MediaInfo
from dubprep.qc import QcInputs, QcLimits, run_qc
from dubprep.stage import Stage, StageContext
from dubprep.timecode import FrameRate, timecode_to_samples

_FORMATS = {16: ("PCM_16", "16b"), 24: ("PCM_24", "24b"), 32: ("FLOAT", "32f")}
_TEMPLATE_FIELDS = {"title", "asset", "channels", "format"}
_AUDIO_ONLY_RATE = "25"


class AssembleParams(BaseModel):
    """Delivery format of the stems and lists.

    ``title`` names the programme in file names and bext descriptions.
    ``name_template`` names each stem from {title}, {asset} (ME, DX,
    DX-<speaker>), {channels} and {format} (24b, 16b, 32f). ``split_mono``
    writes 5.1/7.1 stems as one mono file per channel (.L .R .C .LFE .Ls .Rs).
    ``frame_rate`` and ``start_timecode`` replace what the source carries
    (an audio-only source has neither: 25 fps from 00:00:00:00 then).
    ``qc`` holds the limits the delivery is checked against (16-bit stems
    re-sum to the mix only about 65 dB down: set ``qc.null_test_min_db``
    near 45 for them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(default="PROGRAMME", min_length=1, max_length=64)
    bit_depth: Literal[16, 24, 32] = 24
    crossfade_ms: float = Field(default=10.0, ge=0.0, le=500.0)
    name_template: str = "{title}_{asset}_{channels}ch_48k_{format}.wav"
    split_mono: bool = False
    frame_rate: str | None = None
    start_timecode: str | None = None
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


class AssembleStage(Stage):
    name = "assemble"
    inputs = ("mix.wav", "media.json", "DX.wav", "ME.wav", "turns.json", "turns.rttm")
    outputs = ("turns.rttm", "turns.json", "cues.csv", "cues.srt", "qc.json", "report.html")
    Params = AssembleParams

    def code_modules(self, params: AssembleParams) -> tuple[str, ...]:
        return (__name__, "dubprep.bwf", "dubprep.cuelist", "dubprep.timecode", "dubprep.qc", "dubprep.qc_report")

    def run(self, ctx: StageContext) -> None:
        programme = _programme(MediaInfo.load(ctx.inputs["media.json"]), ctx)
        for stem in ("ME.wav", "DX.wav"):
            if audio_info(ctx.inputs[stem]).frames != programme.media.frames:
                raise StageError(f"{ctx.inputs[stem]}: length differs from the mix; rerun with --force separate")
        turns = json.loads(ctx.inputs["turns.json"].read_text())
        names = speaker_names(turns["speakers"])
        fade_frames = round(ctx.params.crossfade_ms * SAMPLE_RATE / 1000)
        writer = StemFiles(ctx, programme)
        writer.copy("ME", ctx.inputs["ME.wav"])
        writer.copy("DX", ctx.inputs["DX.wav"])
        speakers = {names[label]: turns_of(turns, label) for label in turns["speakers"]}
        writer.speakers(ctx.inputs["DX.wav"], speakers, fade_frames)
        cues = cues_from_turns(turns, names)
        write_cue_csv(ctx.output("cues.csv"), cues, programme.start_timecode, programme.rate)
        write_srt(ctx.output("cues.srt"), cues)
        shutil.copyfile(ctx.inputs["turns.rttm"], ctx.output("turns.rttm"))
        shutil.copyfile(ctx.inputs["turns.json"], ctx.output("turns.json"))
        ctx.log.info("assemble: %d speaker stems (%s), %d cues", len(speakers), ", ".join(speakers) or "none", len(cues))
        qc = QcInputs(
            work_dir=ctx.work_dir, stems=writer.assets, mix=ctx.inputs["mix.wav"], dx=ctx.inputs["DX.wav"],
            me=ctx.inputs["ME.wav"], media=programme.media, turns=ctx.inputs["turns.json"],
            start_timecode=programme.start_timecode, rate=programme.rate, source=ctx.media,
        )
        ctx.failed_checks.extend(run_qc(qc, ctx.params.qc, ctx.log, ctx.progress))


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
    """File-safe, unique delivery name for each diarization label."""
    names: dict[str, str] = {}
    for label in labels:
        name = safe_name(label).upper()
        suffix = 2
        while name in names.values():
            name = f"{safe_name(label).upper()}_{suffix}"
            suffix += 1
        names[label] = name
    return names


def turns_of(turns: dict, label: str) -> list[Turn]:
    """Sorted union of one speaker's turns in frames: disjoint, so ends are sorted too."""
    frames = sorted(
        Turn(round(t["start_s"] * SAMPLE_RATE), round(t["end_s"] * SAMPLE_RATE))
        for t in turns["turns"] if t["speaker"] == label
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


class StemFiles:
    """Opens delivery files for stems: one BWF in the source layout, or one mono BWF per channel."""

    def __init__(self, ctx: StageContext, programme: Programme):
        self.ctx = ctx
        self.programme = programme
        self.sample_format, self.format_tag = _FORMATS[ctx.params.bit_depth]
        self.origination = datetime.now().replace(microsecond=0)
        self.written: set[str] = set()
        self.assets: dict[str, tuple[Path, ...]] = {}

    def copy(self, asset: str, source: Path) -> None:
        """Re-encode a float stem block by block."""
        writers = self._open(asset)
        try:
            for block in iter_blocks(source):
                _write(writers, block)
        finally:
            self._close(asset, writers)

    def speakers(self, dx: Path, speakers: dict[str, list[Turn]], fade_frames: int) -> None:
        """One DX-<speaker> stem each: DX times that speaker's turn gain."""
        if not speakers:
            self.ctx.log.warning("assemble: no speaker turns; no per-speaker stems written")
            return
        files = {name: self._open(f"DX-{name}") for name in speakers}
        self.ctx.progress.start("assemble", self.programme.media.frames)
        try:
            position = 0
            for block in iter_blocks(dx):
                for name, turns in speakers.items():
                    gain = turn_gain(turns, position, len(block), fade_frames)
                    _write(files[name], block * gain[:, None])  # shape: (frames, channels)
                position += len(block)
                self.ctx.progress.advance(len(block))
        finally:
            for name, writers in files.items():
                self._close(f"DX-{name}", writers)
        self.ctx.progress.finish()

    def _open(self, asset: str) -> list[BwfWriter]:
        media = self.programme.media
        base = self.ctx.params.name_template.format(
            title=safe_name(self.ctx.params.title),
            asset=asset, channels=media.channels, format=self.format_tag,
        )
        if self.ctx.params.split_mono and media.channels > 2:
            paths = [base.removesuffix(".wav") + f".{name}.wav" for name in media.channel_names]
            layouts = ["mono"] * media.channels
        else:
            paths, layouts = [base], [media.layout]
        for path in paths:
            if path in self.written:
                raise StageError(f"assemble.name_template: two stems would both be named {path}; include {{asset}}")
            self.written.add(path)
        self.assets[asset] = tuple(self.ctx.output(p) for p in paths)
        return [open_bwf(self.ctx.output(p), layout, self.sample_format, self._bext(asset)) for p, layout in zip(paths, layouts)]

    def _bext(self, asset: str) -> BextMetadata:
        return BextMetadata(
            description=f"{self.ctx.params.title} {asset} stem, {self.programme.media.layout}, start {self.programme.start_timecode} at {self.programme.rate}",
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
