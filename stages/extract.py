"""Extract: decode one audio stream of the input media to the 48 kHz mix, ``mix.flac``.

The mix is stored as 24-bit FLAC (:mod:`dubprep.stems`): losslessly for a
16- or 24-bit integer source at 48 kHz; a float or resampled source is
rounded to 24 bits and any sample past full scale clipped, and the log
says so with counts. It keeps the source's channel layout and order (5.1 stays L R C LFE Ls
Rs) and is sample-exact: it holds round((offset + duration) x 48000) frames,
where ``offset`` is how much later than the picture the audio stream starts
(zeros are written for it) and ``duration`` is the stream's own duration.
ffmpeg decodes to a pipe so nothing is held in memory beyond one block.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import IO, ClassVar

import ffmpeg
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dubprep.audio_io import BLOCK_FRAMES, SAMPLE_RATE
from dubprep.errors import MediaError
from dubprep.media import MediaInfo
from dubprep.probe import AudioStream, Probe, probe
from dubprep.stage import Stage, StageContext, register
from dubprep.stems import MIX, WorkWriter
from dubprep.tools import find_tool, version

# ffprobe layout name -> dubprep layout name. Both 5.1 variants decode to
# L R C LFE Ls Rs; '7.1' decodes to L R C LFE Lrs Rrs Lss Rss.
_LAYOUTS = {"mono": "mono", "stereo": "stereo", "5.1": "5.1", "5.1(side)": "5.1", "7.1": "7.1"}
_UNTAGGED = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}
# A decoded stream may fall short of the declared duration by codec priming
# or the last packet; more than this means the file is cut or corrupt.
_SHORTFALL_TOLERANCE_S = 0.1
# The last stretch of the stream decoded before the whole of it: a file cut
# short (a 3-hour container holding 40 minutes) decodes to nothing there.
_TAIL_S = 1.0


class ExtractParams(BaseModel):
    """Which audio stream to take: by position among audio streams or by language."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    audio_stream: int | None = Field(default=None, ge=0)
    language: str | None = None
    # Two ways of choosing the stream: a project that names one replaces the other where it extends a preset.
    alternatives: ClassVar[tuple[tuple[str, ...], ...]] = (("audio_stream",), ("language",))

    @model_validator(mode="after")
    def _one_selector(self) -> ExtractParams:
        if self.audio_stream is not None and self.language is not None:
            raise ValueError("give either audio_stream or language, not both")
        return self


@register
class ExtractStage(Stage):
    name = "extract"
    position = 10
    outputs = (MIX, "media.json")
    Params = ExtractParams

    def run(self, ctx: StageContext) -> None:
        ctx.log.info("extract: %s (%s)", version(find_tool("ffmpeg")), find_tool("ffmpeg"))
        info = probe(ctx.media)
        stream = select_stream(info, ctx.params)
        layout = resolve_layout(ctx.media, stream, ctx.log)
        media = _plan(info, stream, layout)
        check_tail(info, stream)
        ctx.log.info(
            "extract: %s, %s, %d Hz -> %d frames at 48 kHz (%.3f s)%s",
            stream.describe(), layout, stream.sample_rate, media.frames, media.duration_s,
            f", audio starts {media.start_offset_s:+.3f} s from picture" if media.start_offset_s else "",
        )
        decode(ctx.media, stream, media, ctx.output(MIX), ctx)
        media.save(ctx.output("media.json"))


def select_stream(info: Probe, params: ExtractParams) -> AudioStream:
    """The requested audio stream; MediaError listing the streams when absent."""
    listing = "; ".join(s.describe() for s in info.audio) or "none"
    if not info.audio:
        raise MediaError(f"{info.path}: no audio stream in this file; choose a file with audio")
    if params.language is not None:
        matches = [s for s in info.audio if s.language == params.language]
        if not matches:
            raise MediaError(
                f"{info.path}: no audio stream in language '{params.language}'; streams: {listing}"
            )
        return matches[0]
    position = params.audio_stream or 0
    if position >= len(info.audio):
        raise MediaError(f"{info.path}: no audio stream #{position}; streams: {listing}")
    return info.audio[position]


def resolve_layout(path: Path, stream: AudioStream, log) -> str:
    """dubprep's layout name for the stream; MediaError for unsupported ones."""
    if stream.channel_layout in _LAYOUTS:
        return _LAYOUTS[stream.channel_layout]
    if not stream.channel_layout and stream.channels in _UNTAGGED:
        guess = _UNTAGGED[stream.channels]
        log.warning("extract: %s has no channel layout tag; assuming %s", path, guess)
        return guess
    raise MediaError(
        f"{path}: channel layout '{stream.channel_layout or '?'}' ({stream.channels} channels) is not "
        f"supported; use mono, stereo, 5.1 or 7.1 (remap with ffmpeg's channelmap filter first)"
    )


def _plan(info: Probe, stream: AudioStream, layout: str) -> MediaInfo:
    duration_s = stream.duration_s if stream.duration_s is not None else info.duration_s
    if duration_s is None or duration_s <= 0:
        raise MediaError(f"{info.path}: the audio stream declares no duration; remux the file with ffmpeg")
    # The picture's first frame is the programme start; without a picture
    # the audio stream's own start is.
    offset_s = stream.start_s - info.start_s if info.frame_rate else 0.0
    frames = round((offset_s + duration_s) * SAMPLE_RATE)
    if frames <= 0:
        raise MediaError(f"{info.path}: the audio stream ends before the picture starts")
    return MediaInfo(
        source=str(info.path), audio_stream=stream.position, codec=stream.codec, layout=layout,
        channels=stream.channels, sample_rate=SAMPLE_RATE, frames=frames,
        source_sample_rate=stream.sample_rate, start_offset_s=offset_s,
        start_timecode=info.timecode, frame_rate=info.frame_rate,
    )


def _pcm_command(
    source: ffmpeg.nodes.FilterableStream, stream: AudioStream, loglevel: str, **output: object
) -> list[str]:
    """ffmpeg's command line decoding ``stream`` of ``source`` to 48 kHz float32 on stdout; ``output``: more options."""
    return (
        source.output("pipe:", map=f"0:a:{stream.position}", f="f32le", acodec="pcm_f32le", ar=SAMPLE_RATE, **output)
        .global_args("-nostdin", "-v", loglevel)
        .compile(cmd=str(find_tool("ffmpeg")))
    )


def check_tail(info: Probe, stream: AudioStream) -> None:
    """MediaError, in a fraction of a second, when the stream decodes to nothing in its declared last second.

    ffmpeg seeks there (the container's index, or a byte position) and
    decodes ``_TAIL_S``: a truncated file is refused before hours of
    decoding, which would only then find it short. A cut within the last
    second is left to the full decode's own length check.
    """
    duration_s = stream.duration_s if stream.duration_s is not None else info.duration_s
    tail_start_s = stream.start_s - info.start_s + duration_s - _TAIL_S
    if tail_start_s <= _TAIL_S:  # a short programme: its full decode is as fast
        return
    command = _pcm_command(
        ffmpeg.input(str(info.path), ss=f"{tail_start_s:.6f}"), stream, "quiet", t=_TAIL_S
    )
    tail = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout
    if not tail:
        raise MediaError(
            f"{info.path}: audio stream #{stream.position} decodes to nothing in its last {_TAIL_S:g} s but "
            f"declares {duration_s:.3f} s; the file is truncated or corrupt, re-export it"
        )


def decode(path: Path, stream: AudioStream, media: MediaInfo, out: Path, ctx: StageContext) -> None:
    """Decode ``stream`` through an ffmpeg pipe into ``out``, exactly ``media.frames`` long."""
    command = _pcm_command(ffmpeg.input(str(path)), stream, "error")
    lead_frames = round(media.start_offset_s * SAMPLE_RATE)
    ctx.progress.start("extract", media.frames)
    with tempfile.TemporaryFile() as errors, WorkWriter(out, media.channels) as writer:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
        try:
            written = _write_lead(writer, lead_frames, media, ctx)
            written, decoded = _pump(process.stdout, writer, written, -min(lead_frames, 0), media, ctx)
        finally:
            process.stdout.close()
            process.wait()
        _check_decode(path, process.returncode, errors, decoded, stream, media)
        _write_silence(writer, media.frames - written, media.channels)
    _log_storage(writer, stream, ctx)
    ctx.progress.finish()


def _log_storage(writer: WorkWriter, stream: AudioStream, ctx: StageContext) -> None:
    """Say whether the 24-bit FLAC mix holds the source exactly, and warn about clipped overs."""
    if not writer.rounded:
        ctx.log.info("extract: %s stored losslessly as 24-bit FLAC", writer.path.name)
        return
    ctx.log.info(
        "extract: the %s stream at %d Hz is float or resampled: %d samples rounded to 24 bits (error below "
        "-144 dBFS) in %s", stream.codec, stream.sample_rate, writer.rounded, writer.path.name,
    )
    if writer.clipped:
        ctx.log.warning(
            "extract: %s: %d samples beyond full scale clipped at ±1 in %s (the work files are 24-bit); "
            "re-export the source below full scale if those overs matter", ctx.media, writer.clipped, writer.path.name,
        )


def _write_lead(writer, lead_frames: int, media: MediaInfo, ctx: StageContext) -> int:
    """Zeros for an audio stream that starts after the picture; frames written."""
    lead = min(max(lead_frames, 0), media.frames)
    _write_silence(writer, lead, media.channels)
    ctx.progress.advance(lead)
    return lead


def _write_silence(writer, frames: int, channels: int) -> None:
    for start in range(0, max(frames, 0), BLOCK_FRAMES):
        writer.write(np.zeros((min(BLOCK_FRAMES, frames - start), channels), dtype=np.float32))


def _pump(
    pipe: IO[bytes], writer, written: int, skip_frames: int, media: MediaInfo, ctx: StageContext
) -> tuple[int, int]:
    """Copy decoded frames to ``writer`` until ``media.frames``; (written, decoded) counts.

    ``skip_frames`` drops audio that precedes the picture. Decoded frames past
    the programme length are read and counted but not written.
    """
    frame_bytes = 4 * media.channels
    decoded = 0
    while chunk := pipe.read(BLOCK_FRAMES * frame_bytes):
        block = np.frombuffer(chunk[: len(chunk) - len(chunk) % frame_bytes], dtype="<f4")
        block = block.reshape(-1, media.channels)  # shape: (frames, channels)
        start = max(skip_frames - decoded, 0)
        decoded += len(block)
        keep = block[start : start + media.frames - written]
        _check_finite(keep, written, ctx.media, media.channel_names)
        writer.write(keep)
        written += len(keep)
        ctx.progress.advance(len(keep))
    return written, decoded


def _check_finite(block: np.ndarray, first_frame: int, path: Path, names: tuple[str, ...]) -> None:
    """MediaError naming the time and channel of the first NaN/Inf in ``block`` (frames, channels).

    A float source can hold them; every later stage would choke on them, so
    they are refused here, where the source file can be named.
    """
    if np.isfinite(block).all():
        return
    frame, channel = np.argwhere(~np.isfinite(block))[0]
    raise MediaError(
        f"{path}: a NaN or infinite sample at {(first_frame + frame) / SAMPLE_RATE:.3f} s in channel "
        f"{names[channel]}; the file is corrupt there, re-export it"
    )


def _check_decode(
    path: Path, returncode: int, errors: IO[bytes], decoded: int, stream: AudioStream, media: MediaInfo
) -> None:
    errors.seek(0)
    lines = errors.read().decode(errors="replace").strip().splitlines()
    if returncode != 0:
        detail = lines[-1] if lines else f"ffmpeg exited with {returncode}"
        raise MediaError(f"{path}: audio stream #{stream.position} cannot be decoded ({detail}); check the file")
    expected = media.frames - round(media.start_offset_s * SAMPLE_RATE)
    shortfall_s = (expected - decoded) / SAMPLE_RATE
    if shortfall_s > _SHORTFALL_TOLERANCE_S:
        raise MediaError(
            f"{path}: audio stream #{stream.position} decodes to {decoded / SAMPLE_RATE:.3f} s but declares "
            f"{expected / SAMPLE_RATE:.3f} s; the file is truncated or corrupt, re-export it"
        )
