"""The separate stage: split the mix into dialogue (DX), music (MX) and effects (FX).

A dialogue model runs on each channel where dialogue is searched for
(5.1/7.1: the front or centre channels; mono: the one channel) and gives DX
there; DX is silent on the other channels. A stereo mix is searched, by
default, as mid (L+R)/2 and side (L-R)/2 rather than as L and R: dialogue
mixed to the phantom centre is all in the mid, where wide music and
effects partly cancel, and anything panned off centre is still found in
the side; the two dialogue estimates are turned back into L and R. ME is
``mix - DX`` on every channel, so everything the model does not call
dialogue, LFE and surrounds included, stays in ME at its original level.
ME is then split into MX and FX on every channel
(:mod:`dubprep.stages.backends.mefx`), with ``FX = ME - MX``: DX + MX + FX
and DX + ME both re-sum to the mix (the null test).

The mix is streamed in blocks; each dialogue stream has its own model state
and runs in its own thread, so channels use the machine's cores in parallel
and memory does not grow with the programme's length.

The ``bandit`` backend (:mod:`dubprep.stages.backends.bandit`) runs one
cinematic model (Bandit v2, BandIt Plus) that gives speech, music and
effects at once on the same searched signals: DX is its speech, MX its
music, ME = mix - DX and FX = ME - MX, so the same null sums hold. On the
channels not searched (LFE; surrounds unless dialogue_channels is 'all')
DX and MX are silent and the whole channel is FX (and ME): in film mixes
LFE and surrounds carry mostly effects and ambience.

The ``cinesep`` backend (:mod:`dubprep.stages.backends.cinesep`) runs
dubprep's own network, whose weights ship in the package, the same way: it
hears left/right partners that are both searched (L R, the 7.1 surround
pairs) as stereo pairs and every other searched channel (C, mono) alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from dubprep import models
from dubprep.audio_io import SAMPLE_RATE, audio_info, iter_blocks, open_writer
from dubprep.errors import StageError
from dubprep.media import MediaInfo
from dubprep.progress import ProgressHook
from dubprep.stage import Stage, StageContext
from dubprep.lazy import lazy_module
from dubprep.stages.backends import mefx, overlap_add

# Loaded when a run first uses them: the parameters below validate without torch.
bandit, cinesep, cinesep_net, dfn3 = (lazy_module(f"dubprep.stages.backends.{name}")
                                      for name in ("bandit", "cinesep", "cinesep_net", "dfn3"))

STEMS = ("DX.wav", "ME.wav", "MX.wav", "FX.wav")


class SeparateParams(BaseModel):
    """How dialogue is separated.

    ``dialogue_channels`` picks the channels of a 5.1/7.1 mix the model
    searches: 'center' (C), 'front' (L R C) or 'all' (every channel but
    LFE); mono and stereo mixes are always searched on every channel.
    ``stereo_search`` is how a stereo mix is searched: 'mid_side' (the
    phantom centre, where film and TV dialogue sits) or 'left_right' (each
    channel on its own). On benchmarks/separation.py mid_side scored 0.3 dB
    higher dialogue SDR on average: 0.5-1.3 dB with wide-stereo music,
    -0.2..+0.2 dB with music mixed to the centre. left_right is better when
    dialogue is panned hard to one side (e.g. a two-track interview): mid
    and side each carry that voice 6 dB down over both channels' background.
    ``atten_lim_db`` caps how far the model pulls non-dialogue down in DX
    (e.g. 20 keeps background at -20 dB in DX); None means no cap. The
    30-dB default scored 0.04-0.15 dB higher than no cap on every clip of
    the benchmark; it applies to dfn3 only.
    ``backend``: 'dfn3' (DeepFilterNet3 for dialogue, bundled, fast on a
    CPU), 'bandit' (a Bandit v2 / BandIt Plus model for speech, music and
    effects; needs its weights, a GPU for reasonable speed) or 'cinesep'
    (dubprep's own speech/music/effects network, bundled). ``model`` (bandit
    only) is a registered model name (``dubprep models list``) or a model
    directory; None means ``bandit-v2-dnr3-multi``. ``stereo_search`` applies
    to dfn3 and bandit; cinesep always hears a stereo pair whole.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["dfn3", "bandit", "cinesep"] = "dfn3"
    dialogue_channels: Literal["center", "front", "all"] = "front"
    stereo_search: Literal["mid_side", "left_right"] = "mid_side"
    atten_lim_db: float | None = Field(default=30.0, gt=0)
    model: str | None = None

    @field_validator("atten_lim_db")
    @classmethod
    def _dfn3_only(cls, value: float | None, info: ValidationInfo) -> float | None:
        if info.data.get("backend", "dfn3") != "dfn3":
            raise ValueError("applies to the dfn3 backend only; remove it")
        return value

    @field_validator("model")
    @classmethod
    def _bandit_only(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("backend", "dfn3") != "bandit":
            raise ValueError("only the bandit backend takes a model (dfn3's and cinesep's weights are bundled)")
        registered = models.registry().get(value)
        if registered is not None and registered.architecture not in bandit.ARCHITECTURES:
            runs = [m.name for m in models.registry().values() if m.architecture in bandit.ARCHITECTURES]
            raise ValueError(f"{value} is a {registered.architecture} model; the bandit backend runs: {', '.join(runs)}")
        return value


def model_directory(params: SeparateParams, models_dir: Path | None = None) -> Path:
    """Where the bandit backend's model is; ``models_dir`` is the project's (None: the default)."""
    return models.locate(params.model or bandit.DEFAULT_MODEL, models_dir)


class DialogueModel(Protocol):
    """A streaming estimator for one mono 48 kHz channel: the dialogue model
    (and :class:`~dubprep.stages.backends.mefx.MusicEffectsSplit`, for music).

    ``process`` takes consecutive float32 blocks (frames,) and returns the
    estimate's samples completed so far; ``flush`` returns the rest. The
    outputs, concatenated, are sample-aligned with the input and exactly as
    long.
    """

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def close(self) -> None: ...


def searched_channels(layout: str, mode: str, names: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the channels the model runs on, for a layout's channel ``names``."""
    if layout in ("mono", "stereo"):
        return tuple(range(len(names)))
    wanted = {"center": ("C",), "front": ("L", "R", "C")}.get(mode)
    if wanted is None:
        return tuple(i for i, name in enumerate(names) if name != "LFE")
    return tuple(i for i, name in enumerate(names) if name in wanted)


class _DialogueRouting:
    """Which signals the model hears, and how its answers become stem channels.

    Stereo searched as mid and side: those two; otherwise the searched channels as they are.
    """

    def __init__(self, mid_side: bool, searched: tuple[int, ...], channels: int) -> None:
        self.mid_side = mid_side
        self.searched = searched
        self.channels = channels

    def model_inputs(self, block: np.ndarray) -> list[np.ndarray]:
        """The model's input signals (frames,) for a mix block (frames, channels)."""
        if self.mid_side:
            left, right = block[:, 0], block[:, 1]
            return [(left + right) * np.float32(0.5), (left - right) * np.float32(0.5)]
        return [block[:, c] for c in self.searched]

    @property
    def signals(self) -> int:
        """How many signals the model hears."""
        return len(self.searched)

    def to_channels(self, answers: list[np.ndarray]) -> np.ndarray:
        """A stem (frames, channels) from the model's answers (frames,), one per input; silent elsewhere."""
        stem = np.zeros((len(answers[0]), self.channels), dtype=np.float32)
        if self.mid_side:
            mid, side = answers
            stem[:, 0], stem[:, 1] = mid + side, mid - side
            return stem
        for channel, samples in zip(self.searched, answers, strict=True):
            stem[:, channel] = samples
        return stem


class _ChannelStreams:
    """One stream per signal, run side by side in threads.

    ctypes releases the GIL for the whole of each native frame call, so the
    dialogue threads keep every core busy without a process pool's start-up
    time, copies of every block, and ``if __name__ == "__main__"``
    requirement.
    """

    def __init__(self, opener: Callable[[], DialogueModel], count: int) -> None:
        self._streams: list[DialogueModel] = []
        try:
            for _ in range(count):
                self._streams.append(opener())
        except BaseException:
            self.close()
            raise
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="separate")

    def process(self, blocks: list[np.ndarray]) -> list[np.ndarray]:
        """Feed one block (frames,) to each stream; return each answer (k,)."""
        return list(self._executor.map(lambda stream, block: stream.process(block), self._streams, blocks))

    def flush(self) -> list[np.ndarray]:
        """Every stream's tail (k,)."""
        return list(self._executor.map(lambda stream: stream.flush(), self._streams))

    def close(self) -> None:
        for stream in self._streams:
            stream.close()

    def __enter__(self) -> _ChannelStreams:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._executor.shutdown()
        self.close()


def _check_finite(block: np.ndarray, start_frame: int, mix: Path, names: tuple[str, ...]) -> None:
    """StageError naming the second and channel of the first NaN/Inf in ``block`` (frames, channels)."""
    bad = ~np.isfinite(block)
    if not bad.any():
        return
    frame, channel = np.argwhere(bad)[0]
    at_s = (start_frame + int(frame)) / SAMPLE_RATE
    raise StageError(
        f"{mix}: channel {names[channel]} has a NaN or infinite sample at {at_s:.3f} s "
        f"(second {int(at_s)}); the extracted mix is corrupt there: check the source around "
        f"that time and re-run the extract stage"
    )


def _check_mix(mix: Path, media: MediaInfo) -> int:
    """Frames of ``mix``; StageError if it does not match media.json."""
    info = audio_info(mix)
    if info.sample_rate != SAMPLE_RATE or info.channels != media.channels:
        raise StageError(
            f"{mix}: {info.channels} channels at {info.sample_rate} Hz, but media.json says "
            f"{media.channels} channels ({media.layout}) at {SAMPLE_RATE} Hz; re-run the extract stage"
        )
    return info.frames


class _Queue:
    """Frames (frames, channels) waiting for a lagging stream's answer."""

    def __init__(self, channels: int) -> None:
        self._frames = np.zeros((0, channels), dtype=np.float32)  # shape: (frames, channels)

    def push(self, block: np.ndarray) -> None:
        self._frames = np.concatenate([self._frames, block])

    def pop(self, count: int) -> np.ndarray:
        """The oldest ``count`` frames (count, channels)."""
        out, self._frames = self._frames[:count], self._frames[count:]
        return out


class _StemWriter:
    """Writes the four stems as the lagging streams catch up with the mix.

    Dialogue comes back a look-ahead (30 ms) behind the mix fed to the
    model, and music 8.3 s behind the ME fed to the splitter, so the mix and
    ME frames not yet answered wait in queues (at most one block plus the
    look-ahead each).
    """

    def __init__(
        self,
        files: dict[str, sf.SoundFile],
        routing: _DialogueRouting,
        splitters: _ChannelStreams,
        progress: ProgressHook,
    ) -> None:
        self._files = files
        self._routing = routing
        self._splitters = splitters
        self._progress = progress
        self._mix = _Queue(routing.channels)
        self._me = _Queue(routing.channels)

    def write_dialogue(self, mix_block: np.ndarray, answers: list[np.ndarray]) -> None:
        """Queue ``mix_block`` (frames, channels); write DX and ME for the frames ``answers`` (k,) cover."""
        self._mix.push(mix_block)
        dx = self._routing.to_channels(answers)
        # ME = mix - DX in float32, so DX + ME gives back the mix to float rounding.
        me = self._mix.pop(len(dx)) - dx
        self._files["DX.wav"].write(dx)
        self._files["ME.wav"].write(me)
        self._me.push(me)
        self._music(self._splitters.process(list(me.T)))

    def finish(self) -> None:
        """Write the music and effects still held by the splitters."""
        self._music(self._splitters.flush())

    def _music(self, answers: list[np.ndarray]) -> None:
        mx = np.stack(answers, axis=1)  # shape: (frames, channels)
        # FX = ME - MX in float32, so DX + MX + FX gives back the mix to float rounding.
        self._files["MX.wav"].write(mx)
        self._files["FX.wav"].write(self._me.pop(len(mx)) - mx)
        self._progress.advance(len(mx))


class _Backend(Protocol):
    """One way of filling the four stem ``files`` from the mix, given as checked blocks (frames, channels)."""

    def __call__(
        self, ctx: StageContext, files: dict[str, sf.SoundFile], routing: _DialogueRouting, blocks: Iterator[np.ndarray]
    ) -> None: ...


def _separate_dfn3(
    ctx: StageContext, files: dict[str, sf.SoundFile], routing: _DialogueRouting, blocks: Iterator[np.ndarray]
) -> None:
    """DX from DeepFilterNet3 on each searched signal; ME = mix - DX, split by mefx into MX and FX = ME - MX."""
    with (
        _ChannelStreams(lambda: dfn3.Dfn3Dialogue(atten_lim_db=ctx.params.atten_lim_db), routing.signals) as dialogue,
        _ChannelStreams(mefx.MusicEffectsSplit, routing.channels) as splitters,
    ):
        stems = _StemWriter(files, routing, splitters, ctx.progress)
        for block in blocks:
            stems.write_dialogue(block, dialogue.process(routing.model_inputs(block)))
        stems.write_dialogue(np.zeros((0, routing.channels), dtype=np.float32), dialogue.flush())
        stems.finish()


def _separate_bandit(
    ctx: StageContext, files: dict[str, sf.SoundFile], routing: _DialogueRouting, blocks: Iterator[np.ndarray]
) -> None:
    """DX and MX from a Bandit model's speech and music on each searched signal; ME = mix - DX, FX = ME - MX.

    The model's stems sum to its input (:func:`~dubprep.stages.backends.bandit.consistent`),
    so FX equals its effects to float rounding; mix frames wait in a queue
    until the model's chunks have covered them.
    """
    model = bandit.load_model(model_directory(ctx.params), ctx.device)
    separator = bandit.BanditSeparator(model, routing.signals)
    waiting = _Queue(routing.channels)
    for block in blocks:
        waiting.push(block)
        _write_bandit_stems(files, routing, waiting.pop, separator.process(routing.model_inputs(block)), ctx.progress)
    _write_bandit_stems(files, routing, waiting.pop, separator.flush(), ctx.progress)


def _write_bandit_stems(
    files: dict[str, sf.SoundFile],
    routing: _DialogueRouting,
    pop_mix: Callable[[int], np.ndarray],
    answers: np.ndarray,
    progress: ProgressHook,
) -> None:
    """Write the four stems for the frames ``answers`` (signals, 3, k: speech, music, effects) cover."""
    dx = routing.to_channels(list(answers[:, 0]))
    mx = routing.to_channels(list(answers[:, 1]))
    _write_model_stems(files, dx, mx, pop_mix, progress)


# Left/right partners cinesep hears as a stereo pair (names of dubprep.media.LAYOUT_CHANNELS).
_STEREO_PAIRS = (("L", "R"), ("Ls", "Rs"), ("Lrs", "Rrs"), ("Lss", "Rss"))


def cinesep_groups(searched: tuple[int, ...], names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """The searched channels as cinesep hears them: partners both searched as (left, right), the rest alone."""
    index = {name: channel for channel, name in enumerate(names)}
    pairs = [
        (index[left], index[right])
        for left, right in _STEREO_PAIRS
        if left in index and right in index and index[left] in searched and index[right] in searched
    ]
    paired = {channel for pair in pairs for channel in pair}
    return (*pairs, *((channel,) for channel in searched if channel not in paired))


def _separate_cinesep(
    ctx: StageContext, files: dict[str, sf.SoundFile], routing: _DialogueRouting, blocks: Iterator[np.ndarray]
) -> None:
    """DX and MX from cinesep's dialogue and music on each group of searched channels; ME = mix - DX, FX = ME - MX."""
    net = cinesep.load_shipped(ctx.device)
    groups = cinesep_groups(routing.searched, MediaInfo.load(ctx.inputs["media.json"]).channel_names)
    streams = [cinesep.CineSepStream(net, len(group)) for group in groups]
    waiting = _Queue(routing.channels)
    for block in blocks:
        waiting.push(block)
        answers = [stream.process(block[:, list(group)]) for stream, group in zip(streams, groups, strict=True)]
        _write_cinesep_stems(files, groups, routing.channels, waiting.pop, answers, ctx.progress)
    answers = [stream.flush() for stream in streams]
    _write_cinesep_stems(files, groups, routing.channels, waiting.pop, answers, ctx.progress)


def _write_cinesep_stems(
    files: dict[str, sf.SoundFile],
    groups: tuple[tuple[int, ...], ...],
    channels: int,
    pop_mix: Callable[[int], np.ndarray],
    answers: list[np.ndarray],
    progress: ProgressHook,
) -> None:
    """Write the four stems for the frames ``answers`` cover: one (3, k, len(group)) per group."""
    dx = np.zeros((answers[0].shape[1], channels), dtype=np.float32)
    mx = np.zeros_like(dx)
    for group, stems in zip(groups, answers, strict=True):
        dx[:, list(group)], mx[:, list(group)] = stems[0], stems[1]
    _write_model_stems(files, dx, mx, pop_mix, progress)


def _write_model_stems(
    files: dict[str, sf.SoundFile],
    dx: np.ndarray,
    mx: np.ndarray,
    pop_mix: Callable[[int], np.ndarray],
    progress: ProgressHook,
) -> None:
    """Write DX and MX (k, channels), ME = mix - DX and FX = ME - MX for the next k frames of the mix."""
    # In float32, as for dfn3: DX + ME and DX + MX + FX give back the mix to float rounding.
    me = pop_mix(len(dx)) - dx
    files["DX.wav"].write(dx)
    files["ME.wav"].write(me)
    files["MX.wav"].write(mx)
    files["FX.wav"].write(me - mx)
    progress.advance(len(dx))


_BACKENDS: dict[str, _Backend] = {"dfn3": _separate_dfn3, "bandit": _separate_bandit, "cinesep": _separate_cinesep}


def _checked_blocks(mix: Path, names: tuple[str, ...]) -> Iterator[np.ndarray]:
    """The mix in blocks (frames, channels), each checked for NaN/Inf before it is used."""
    start_frame = 0
    for block in iter_blocks(mix):
        _check_finite(block, start_frame, mix, names)
        start_frame += len(block)
        yield block


class SeparateStage(Stage):
    """mix.wav -> DX, ME (= mix - DX), MX and FX (= ME - MX): float32, same frames and channels."""

    name = "separate"
    inputs = ("mix.wav", "media.json")
    outputs = STEMS
    Params = SeparateParams

    def code_modules(self, params: BaseModel) -> tuple[str, ...]:
        backend = {
            "dfn3": (dfn3.__name__, mefx.__name__),
            "bandit": (bandit.__name__, overlap_add.__name__),
            "cinesep": (cinesep.__name__, cinesep_net.__name__, overlap_add.__name__),
        }
        return (__name__, *backend[params.backend])

    def model_checksum(self, params: BaseModel) -> str:
        if params.backend == "bandit":
            return bandit.checkpoint_checksum(model_directory(params))
        if params.backend == "cinesep":
            return cinesep.weights_checksum()
        return dfn3.weights_checksum()

    def run(self, ctx: StageContext) -> None:
        mix = ctx.inputs["mix.wav"]
        media = MediaInfo.load(ctx.inputs["media.json"])
        frames = _check_mix(mix, media)
        names = media.channel_names
        searched = searched_channels(media.layout, ctx.params.dialogue_channels, names)
        # cinesep hears a stereo pair whole: it does its own mid/side analysis.
        mid_side = media.layout == "stereo" and ctx.params.stereo_search == "mid_side"
        mid_side = mid_side and ctx.params.backend != "cinesep"
        routing = _DialogueRouting(mid_side, searched, media.channels)
        ctx.log.info(
            "separate: %s on %s%s; other channels go to ME untouched",
            ctx.params.backend,
            " ".join(names[c] for c in routing.searched),
            " (as mid and side)" if routing.mid_side else "",
        )
        ctx.progress.start("separate: dialogue, music, effects", frames)
        with ExitStack() as stack:
            files = {
                name: stack.enter_context(open_writer(ctx.output(name), frames, media.channels)) for name in STEMS
            }
            _BACKENDS[ctx.params.backend](ctx, files, routing, _checked_blocks(mix, names))
        ctx.progress.finish()
