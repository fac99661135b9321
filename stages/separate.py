"""The separate stage: split the mix into dialogue (DX) and music + effects (ME).

A dialogue model runs on each channel where dialogue is searched for
(5.1/7.1: the front or centre channels; mono/stereo: every channel) and
gives DX there; DX is silent on the other channels. ME is ``mix - DX`` on
every channel, so the stems re-sum to the mix (the null test) and
everything the model does not call dialogue, LFE and surrounds included,
stays in ME at its original level.

The mix is streamed in blocks; each searched channel has its own streaming
model state and runs in its own thread, so channels use the machine's cores
in parallel and memory does not grow with the programme's length.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field

from dubprep.audio_io import SAMPLE_RATE, audio_info, iter_blocks, open_writer
from dubprep.errors import StageError
from dubprep.media import MediaInfo
from dubprep.progress import ProgressHook
from dubprep.stage import Stage, StageContext
from dubprep.stages.backends import dfn3


class SeparateParams(BaseModel):
    """How dialogue is separated.

    ``dialogue_channels`` picks the channels of a 5.1/7.1 mix the model
    searches: 'center' (C), 'front' (L R C) or 'all' (every channel but
    LFE); mono and stereo mixes are always searched on every channel.
    ``atten_lim_db`` caps how far the model pulls non-dialogue down in DX
    (e.g. 20 keeps background at -20 dB in DX); None means no cap.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["dfn3"] = "dfn3"
    dialogue_channels: Literal["center", "front", "all"] = "front"
    atten_lim_db: float | None = Field(default=None, gt=0)


class DialogueModel(Protocol):
    """A streaming dialogue estimator for one mono 48 kHz channel.

    ``process`` takes consecutive float32 blocks (frames,) and returns the
    dialogue samples completed so far; ``flush`` returns the rest. The
    outputs, concatenated, are sample-aligned with the input and exactly as
    long.
    """

    def process(self, block: np.ndarray) -> np.ndarray: ...

    def flush(self) -> np.ndarray: ...

    def close(self) -> None: ...


def open_model(params: SeparateParams) -> DialogueModel:
    """A fresh model stream for the configured backend."""
    return dfn3.Dfn3Dialogue(atten_lim_db=params.atten_lim_db)


def searched_channels(layout: str, mode: str, names: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the channels the model runs on, for a layout's channel ``names``."""
    if layout in ("mono", "stereo"):
        return tuple(range(len(names)))
    wanted = {"center": ("C",), "front": ("L", "R", "C")}.get(mode)
    if wanted is None:
        return tuple(i for i, name in enumerate(names) if name != "LFE")
    return tuple(i for i, name in enumerate(names) if name in wanted)


class _ChannelModels:
    """One model stream per searched channel, run side by side in threads.

    ctypes releases the GIL for the whole of each native frame call, so the
    threads keep every core busy without a process pool's start-up time,
    copies of every block, and ``if __name__ == "__main__"`` requirement.
    """

    def __init__(self, params: SeparateParams, count: int) -> None:
        self._models: list[DialogueModel] = []
        try:
            for _ in range(count):
                self._models.append(open_model(params))
        except BaseException:
            self.close()
            raise
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="dialogue")

    def process(self, blocks: list[np.ndarray]) -> list[np.ndarray]:
        """Feed one block (frames,) to each channel's model; return each answer (k,)."""
        return list(self._executor.map(lambda model, block: model.process(block), self._models, blocks))

    def flush(self) -> list[np.ndarray]:
        """Every model's tail (k,)."""
        return list(self._executor.map(lambda model: model.flush(), self._models))

    def close(self) -> None:
        for model in self._models:
            model.close()

    def __enter__(self) -> _ChannelModels:
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


class _StemWriter:
    """Writes DX and ME as the models' dialogue arrives, which lags the mix.

    The models hand back dialogue a look-ahead behind the mix they were fed,
    so the mix frames not yet matched by dialogue wait in ``_pending``
    (at most one block plus the look-ahead).
    """

    def __init__(
        self,
        dx_file: sf.SoundFile,
        me_file: sf.SoundFile,
        searched: tuple[int, ...],
        channels: int,
        progress: ProgressHook,
    ) -> None:
        self._dx_file = dx_file
        self._me_file = me_file
        self._searched = searched
        self._progress = progress
        self._pending = np.zeros((0, channels), dtype=np.float32)  # shape: (frames, channels)

    def write(self, mix_block: np.ndarray, dialogue: list[np.ndarray]) -> None:
        """Queue ``mix_block`` (frames, channels); write as many frames as ``dialogue`` (k,) covers."""
        self._pending = np.concatenate([self._pending, mix_block])
        done = len(dialogue[0])
        mix = self._pending[:done]
        dx = np.zeros_like(mix)
        for channel, samples in zip(self._searched, dialogue, strict=True):
            dx[:, channel] = samples
        # ME = mix - DX in float32, so DX + ME gives back the mix to float rounding.
        self._dx_file.write(dx)
        self._me_file.write(mix - dx)
        self._pending = self._pending[done:]
        self._progress.advance(done)


class SeparateStage(Stage):
    """mix.wav -> DX.wav (dialogue) + ME.wav (mix - DX), float32, same frames and channels."""

    name = "separate"
    inputs = ("mix.wav", "media.json")
    outputs = ("DX.wav", "ME.wav")
    Params = SeparateParams

    def code_modules(self, params: BaseModel) -> tuple[str, ...]:
        return (__name__, dfn3.__name__)

    def model_checksum(self, params: BaseModel) -> str:
        return dfn3.weights_checksum()

    def run(self, ctx: StageContext) -> None:
        mix = ctx.inputs["mix.wav"]
        media = MediaInfo.load(ctx.inputs["media.json"])
        frames = _check_mix(mix, media)
        names = media.channel_names
        searched = searched_channels(media.layout, ctx.params.dialogue_channels, names)
        ctx.log.info(
            "separate: %s on %s; other channels go to ME untouched",
            ctx.params.backend,
            " ".join(names[c] for c in searched),
        )
        ctx.progress.start("separate: dialogue", frames)
        with (
            open_writer(ctx.output("DX.wav"), frames, media.channels) as dx_file,
            open_writer(ctx.output("ME.wav"), frames, media.channels) as me_file,
            _ChannelModels(ctx.params, len(searched)) as models,
        ):
            stems = _StemWriter(dx_file, me_file, searched, media.channels, ctx.progress)
            start_frame = 0
            for block in iter_blocks(mix):
                _check_finite(block, start_frame, mix, names)
                start_frame += len(block)
                stems.write(block, models.process([block[:, c] for c in searched]))
            stems.write(np.zeros((0, media.channels), dtype=np.float32), models.flush())
        ctx.progress.finish()
