"""The separate stage: split the mix into dialogue (DX), music (MX) and effects (FX).

A separation backend (:mod:`dubprep.stages.backends.separation`, chosen
by ``separate.backend``) runs on each channel where dialogue is searched
for (5.1/7.1: the front or centre channels; mono: the one channel) and
gives DX there; DX is silent on the other channels. A stereo mix is
searched, by default, as mid (L+R)/2 and side (L-R)/2 rather than as L and
R: dialogue mixed to the phantom centre is all in the mid, where wide music
and effects partly cancel, and anything panned off centre is still found
in the side; the two dialogue estimates are turned back into L and R. A
backend that hears stereo pairs whole does its own analysis and gets L and
R. ME is ``mix - DX`` on every channel, so everything the model does not
call dialogue, LFE and surrounds included, stays in ME at its original
level.

MX is the backend's music where it gives one (silent on the channels not
searched: there, in film mixes mostly effects and ambience, the whole
channel is FX), or else the backend's music splitter run on every channel
of the ME. FX = ME - MX, so DX + MX + FX and DX + ME both re-sum to the mix
(the null test). Only DX and MX are stored (24-bit FLAC, ``DX.flac`` and
``MX.flac``); ME and FX are computed from them and the mix on read
(:mod:`dubprep.stems`), here as downstream, so every stage sees the same
ME.

The mix is streamed in blocks; each stream keeps its own model state, and
memory does not grow with the programme's length.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from dubprep.audio_io import SAMPLE_RATE, audio_info, iter_blocks
from dubprep.errors import StageError
from dubprep.media import MediaInfo
from dubprep.progress import ProgressHook
from dubprep.stage import Stage, StageContext, register
from dubprep.stages.backends.separation import DIALOGUE, MUSIC, SEPARATORS, SeparationBackend
from dubprep.stages.backends.streaming import FrameQueue, StreamSet
from dubprep.stems import DX, MIX, MX, WorkWriter

STORED = (DX, MX)  # ME and FX are computed on read


class SeparateParams(BaseModel):
    """How dialogue is searched for; the backend's own keys sit beside these.

    ``backend``: a name in :data:`~dubprep.stages.backends.separation.SEPARATORS`
    (the first is the default); its module says what it does and which of
    its own keys it takes.
    ``dialogue_channels`` picks the channels of a 5.1/7.1 mix the model
    searches: 'center' (C), 'front' (L R C) or 'all' (every channel but
    LFE); mono and stereo mixes are always searched on every channel.
    ``stereo_search`` is how a stereo mix is searched by a backend that
    hears one signal at a time: 'mid_side' (the phantom centre, where film
    and TV dialogue sits) or 'left_right' (each channel on its own). On
    benchmarks/separation.py mid_side scored 0.3 dB higher dialogue SDR on
    average: 0.5-1.3 dB with wide-stereo music, -0.2..+0.2 dB with music
    mixed to the centre. left_right is better when dialogue is panned hard
    to one side (e.g. a two-track interview): mid and side each carry that
    voice 6 dB down over both channels' background.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = SEPARATORS.default
    dialogue_channels: Literal["center", "front", "all"] = "front"
    stereo_search: Literal["mid_side", "left_right"] = "mid_side"

    @field_validator("backend")
    @classmethod
    def _registered(cls, value: str) -> str:
        return SEPARATORS.check(value)


def searched_channels(layout: str, mode: str, names: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the channels the model runs on, for a layout's channel ``names``."""
    if layout in ("mono", "stereo"):
        return tuple(range(len(names)))
    wanted = {"center": ("C",), "front": ("L", "R", "C")}.get(mode)
    if wanted is None:
        return tuple(i for i, name in enumerate(names) if name != "LFE")
    return tuple(i for i, name in enumerate(names) if name in wanted)


class Routing:
    """Which signals the backend hears, in which groups, and how its answers become stem channels.

    The signals are the searched channels as they are, or a stereo mix's mid
    and side; ``groups`` holds indices into the signals, one stream each.
    """

    def __init__(self, backend: SeparationBackend, params: SeparateParams, media: MediaInfo) -> None:
        names = media.channel_names
        self.searched = searched_channels(media.layout, params.dialogue_channels, names)
        self.mid_side = media.layout == "stereo" and params.stereo_search == "mid_side" and backend.mid_side
        self.channels = media.channels
        signal_names = ("M", "S") if self.mid_side else tuple(names[c] for c in self.searched)
        self.groups = backend.grouping(tuple(range(len(signal_names))), signal_names)
        self.description = " ".join(names[c] for c in self.searched) + (" (as mid and side)" if self.mid_side else "")

    def group_blocks(self, block: np.ndarray) -> list[np.ndarray]:
        """Each group's input (frames, signals in the group) from a mix block (frames, channels)."""
        if self.mid_side:
            left, right = block[:, 0], block[:, 1]
            signals = [(left + right) * np.float32(0.5), (left - right) * np.float32(0.5)]
        else:
            signals = [block[:, c] for c in self.searched]
        return [np.stack([signals[s] for s in group], axis=1) for group in self.groups]

    def to_channels(self, answers: list[np.ndarray]) -> np.ndarray:
        """A stem (frames, channels) from each group's answer (frames, signals in the group); silent elsewhere."""
        signals = {}
        for group, answer in zip(self.groups, answers, strict=True):
            signals.update({signal: answer[:, i] for i, signal in enumerate(group)})
        stem = np.zeros((len(answers[0]), self.channels), dtype=np.float32)
        if self.mid_side:
            mid, side = signals[0], signals[1]
            stem[:, 0], stem[:, 1] = mid + side, mid - side
            return stem
        for signal, channel in enumerate(self.searched):
            stem[:, channel] = signals[signal]
        return stem


class _StemWriter:
    """Writes DX and MX as the lagging streams catch up with the mix.

    Each group's answers wait in queues until every group has answered the
    same frames; mix frames not yet answered wait too (at most a block plus
    the streams' lag).
    """

    def __init__(
        self, files: dict[str, WorkWriter], routing: Routing, stems: tuple[str, ...],
        splitters: StreamSet | None, progress: ProgressHook,
    ) -> None:
        self._files = files
        self._routing = routing
        self._splitters = splitters
        self._progress = progress
        self._mix = FrameQueue(routing.channels)
        self._answers = [{stem: FrameQueue(len(group)) for stem in stems} for group in routing.groups]

    def write(self, mix_block: np.ndarray, answers: list[dict[str, np.ndarray]]) -> None:
        """Queue ``mix_block`` (frames, channels) and each group's answer; write the frames all groups answered."""
        self._mix.push(mix_block)
        for queues, answer, group in zip(self._answers, answers, self._routing.groups, strict=True):
            for stem, queue in queues.items():
                queue.push(answer.get(stem, np.zeros((0, len(group)), dtype=np.float32)))
        ready = min(len(queue) for queues in self._answers for queue in queues.values())
        stems = {stem: self._routing.to_channels([queues[stem].pop(ready) for queues in self._answers])
                 for stem in self._answers[0]}
        # DX as stored (24-bit), so this ME is the one later stages compute from the files.
        dx = self._files[DX].write(stems[DIALOGUE])
        me = self._mix.pop(len(dx)) - dx
        if MUSIC in stems:
            self._write_music(stems[MUSIC])
        else:
            self._split_music(self._splitters.process(list(me.T)))

    def finish(self) -> None:
        """Write the music still held by the splitters."""
        if self._splitters is not None:
            self._split_music(self._splitters.flush())

    def _split_music(self, answers: list[np.ndarray]) -> None:
        """Write the music the splitters completed, (k,) per channel."""
        self._write_music(np.stack(answers, axis=1))  # shape: (frames, channels)

    def _write_music(self, mx: np.ndarray) -> None:
        """MX (FX = ME - MX is computed on read)."""
        self._files[MX].write(mx)
        self._progress.advance(len(mx))


def _check_mix(mix: Path, media: MediaInfo) -> int:
    """Frames of ``mix``; StageError if it does not match media.json."""
    info = audio_info(mix)
    if info.sample_rate != SAMPLE_RATE or info.channels != media.channels:
        raise StageError(
            f"{mix}: {info.channels} channels at {info.sample_rate} Hz, but media.json says "
            f"{media.channels} channels ({media.layout}) at {SAMPLE_RATE} Hz; re-run the extract stage"
        )
    return info.frames


@register
class SeparateStage(Stage):
    """mix.flac -> DX.flac and MX.flac (ME = mix - DX and FX = ME - MX on read): same frames and channels."""

    name = "separate"
    position = 20
    inputs = (MIX, "media.json")
    outputs = STORED
    Params = SeparateParams
    backends = SEPARATORS

    def run(self, ctx: StageContext) -> None:
        mix = ctx.inputs[MIX]
        media = MediaInfo.load(ctx.inputs["media.json"])
        frames = _check_mix(mix, media)
        backend: SeparationBackend = self.backend(ctx.params)
        routing = Routing(backend, ctx.params, media)
        ctx.log.info(
            "separate: %s on %s; other channels go to ME untouched", ctx.params.backend, routing.description
        )
        ctx.progress.start("separate: dialogue, music, effects", frames)
        with ExitStack() as stack:
            files = {name: stack.enter_context(WorkWriter(ctx.output(name), media.channels)) for name in STORED}
            streams = backend.open(ctx.params, [len(group) for group in routing.groups], ctx.device)
            dialogue = stack.enter_context(StreamSet(streams, backend.parallel))
            splitters = None
            if MUSIC not in backend.stems:
                splitters = StreamSet([backend.music_splitter() for _ in range(media.channels)], parallel=True)
                stack.enter_context(splitters)
            writer = _StemWriter(files, routing, backend.stems, splitters, ctx.progress)
            # No NaN/inf check here: extract refused them, and a 24-bit FLAC mix cannot hold them.
            for block in iter_blocks(mix):
                writer.write(block, dialogue.process(routing.group_blocks(block)))
            writer.write(np.zeros((0, media.channels), dtype=np.float32), dialogue.flush())
            writer.finish()
        ctx.progress.finish()
