"""Assemble: the stems and turn lists a dubbing studio receives.

Writes ``ME.wav`` and ``DX.wav`` in the source layout, one ``DX_<speaker>.wav``
per speaker (the dialogue stem gated to that speaker's turns, full programme
length, silence elsewhere), and copies the turns (RTTM and JSON). Stems keep
the original mix's levels: nothing is normalised, so DX + ME re-sums to it.
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from dubprep.audio_io import BLOCK_FRAMES, SAMPLE_RATE, audio_info, iter_blocks, open_writer
from dubprep.errors import StageError
from dubprep.stage import Stage, StageContext

_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "FLOAT"}


class AssembleParams(BaseModel):
    """Delivery format of the stems."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bit_depth: Literal[16, 24, 32] = 24
    crossfade_ms: float = Field(default=10.0, ge=0.0, le=500.0)


@dataclass(frozen=True)
class Turn:
    """A speaker turn in frames at 48 kHz: [start_frame, end_frame)."""

    start_frame: int
    end_frame: int


class AssembleStage(Stage):
    name = "assemble"
    inputs = ("mix.wav", "media.json", "DX.wav", "ME.wav", "turns.json", "turns.rttm")
    outputs = ("ME.wav", "DX.wav", "turns.rttm", "turns.json")
    Params = AssembleParams

    def run(self, ctx: StageContext) -> None:
        subtype = _SUBTYPES[ctx.params.bit_depth]
        mix = audio_info(ctx.inputs["mix.wav"])
        for stem in ("ME.wav", "DX.wav"):
            if audio_info(ctx.inputs[stem]).frames != mix.frames:
                raise StageError(f"{ctx.inputs[stem]}: length differs from the mix; rerun with --force separate")
            copy_stem(ctx, stem, subtype, mix.frames)
        turns = json.loads(ctx.inputs["turns.json"].read_text())
        speakers = speaker_turns(turns)
        fade_frames = round(ctx.params.crossfade_ms * SAMPLE_RATE / 1000)
        write_speaker_stems(ctx, speakers, subtype, mix.frames, fade_frames)
        shutil.copyfile(ctx.inputs["turns.rttm"], ctx.output("turns.rttm"))
        shutil.copyfile(ctx.inputs["turns.json"], ctx.output("turns.json"))
        ctx.log.info("assemble: %d speaker stems: %s", len(speakers), ", ".join(speakers) or "none")


def safe_name(label: str) -> str:
    """A speaker or character name reduced to characters safe in any file name."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")
    return cleaned or "SPEAKER"


def speaker_turns(turns: dict) -> dict[str, list[Turn]]:
    """Per speaker (file-safe, unique names), sorted turns in frames."""
    by_speaker: dict[str, list[Turn]] = {}
    names: dict[str, str] = {}
    for label in turns["speakers"]:
        name = safe_name(label)
        while name in names.values():
            name += "_"
        names[label] = name
        by_speaker[name] = []
    for turn in turns["turns"]:
        start = round(turn["start_s"] * SAMPLE_RATE)
        end = round(turn["end_s"] * SAMPLE_RATE)
        by_speaker[names[turn["speaker"]]].append(Turn(start, end))
    return {name: merge_turns(t) for name, t in by_speaker.items()}


def merge_turns(turns: list[Turn]) -> list[Turn]:
    """Sorted union of ``turns``: no two overlap, so their ends are sorted too."""
    merged: list[Turn] = []
    for turn in sorted(turns, key=lambda t: t.start_frame):
        if merged and turn.start_frame <= merged[-1].end_frame:
            merged[-1] = Turn(merged[-1].start_frame, max(merged[-1].end_frame, turn.end_frame))
        else:
            merged.append(turn)
    return merged


def turn_gain(turns: list[Turn], block_start: int, block_frames: int, fade_frames: int) -> np.ndarray:
    """Gain 1 inside ``turns``, 0 outside, raised-cosine ramps outside each edge.

    ``turns`` are merged (sorted, disjoint). The ramps lie outside the turn
    so no word inside it is attenuated.
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


def copy_stem(ctx: StageContext, name: str, subtype: str, frames: int) -> None:
    """Re-encode a float stem at the delivery bit depth, block by block."""
    channels = audio_info(ctx.inputs[name]).channels
    with open_writer(ctx.output(name), frames, channels, subtype) as out:
        for block in iter_blocks(ctx.inputs[name]):
            out.write(block)


def write_speaker_stems(
    ctx: StageContext, speakers: dict[str, list[Turn]], subtype: str, frames: int, fade_frames: int
) -> None:
    """One DX_<speaker>.wav each: DX times that speaker's turn gain."""
    if not speakers:
        ctx.log.warning("assemble: no speaker turns; no per-speaker stems written")
        return
    channels = audio_info(ctx.inputs["DX.wav"]).channels
    writers = {name: open_writer(ctx.output(f"DX_{name}.wav"), frames, channels, subtype) for name in speakers}
    ctx.progress.start("assemble", frames)
    try:
        position = 0
        for block in iter_blocks(ctx.inputs["DX.wav"], BLOCK_FRAMES):
            for name, turns in speakers.items():
                gain = turn_gain(turns, position, len(block), fade_frames)
                writers[name].write(block * gain[:, None])
            position += len(block)
            ctx.progress.advance(len(block))
    finally:
        for writer in writers.values():
            writer.close()
    ctx.progress.finish()
