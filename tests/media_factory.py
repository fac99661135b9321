"""Real media files for tests, made with ffmpeg in a fraction of a second each.

Every channel of every audio stream carries a sine of its own frequency
(:func:`channel_frequencies_hz`), so after decoding a test can tell which
source channel landed in which output channel, and which stream was taken.
The container follows the file's suffix (.mov, .mkv, .mp4, .wav, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ffmpeg
import numpy as np

from dubprep.tools import find_tool

# ffmpeg's channel names per layout, in the order ffmpeg decodes them.
FFMPEG_CHANNELS: dict[str, tuple[str, ...]] = {
    "mono": ("FC",),
    "stereo": ("FL", "FR"),
    "quad": ("FL", "FR", "BL", "BR"),
    "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR"),
    "5.1(side)": ("FL", "FR", "FC", "LFE", "SL", "SR"),
    "7.1": ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}
# Whole hertz so a 1 s file puts each tone on an FFT bin; the LFE tone is low
# because AAC and real LFE channels carry nothing above ~120 Hz.
_BASE_FREQUENCY_HZ = {"FL": 440, "FR": 550, "FC": 660, "LFE": 70, "BL": 770, "BR": 880, "SL": 990, "SR": 1100}
# Added per audio stream so streams differ; smaller than the 110 Hz spacing.
STREAM_STEP_HZ = 30
TONE_AMPLITUDE = 0.25
VIDEO_RATE = "24000/1001"
_VIDEO_SIZE = "160x90"


def channel_frequencies_hz(layout: str, stream: int = 0) -> tuple[int, ...]:
    """Tone frequency of each channel of audio stream ``stream`` with ``layout``, in decode order."""
    return tuple(_BASE_FREQUENCY_HZ[name] + STREAM_STEP_HZ * stream for name in FFMPEG_CHANNELS[layout])


def make_media(
    path: Path,
    *,
    layout: str = "stereo",
    duration_s: float = 1.0,
    sample_rate: int = 48_000,
    codec: str = "pcm_s24le",
    video: bool = True,
    audio_streams: Sequence[tuple[str, str | None]] | None = None,
    start_timecode: str | None = None,
    audio_start_offset_s: float = 0.0,
) -> Path:
    """Write ``path`` with tone audio and optionally a test-pattern picture.

    ``audio_streams`` lists (layout, language or None) per audio stream and
    replaces ``layout``; an empty list makes a file with no audio. Audio
    streams start ``audio_start_offset_s`` after the picture (ffmpeg's
    ``-itsoffset``); the picture lasts until the audio ends. Each audio
    stream is exactly ``round(duration_s x sample_rate)`` samples long.
    Matroska stores no channel layout for PCM, so ffprobe reports none there.
    """
    streams = [(layout, None)] if audio_streams is None else list(audio_streams)
    inputs = []
    options: dict[str, object] = {}
    if video:
        inputs.append(_picture(duration_s + max(audio_start_offset_s, 0.0)))
        # mpeg4 is built into every ffmpeg, unlike libx264.
        options.update(vcodec="mpeg4", pix_fmt="yuv420p")
    for position, (stream_layout, language) in enumerate(streams):
        inputs.append(_tones(stream_layout, position, duration_s, sample_rate, audio_start_offset_s))
        if language:
            options[f"metadata:s:a:{position}"] = f"language={language}"
    if streams:
        options["acodec"] = codec
    if start_timecode:
        options["timecode"] = start_timecode
    _run(ffmpeg.output(*inputs, str(path), **options), path)
    return path


def make_video_only(path: Path, duration_s: float = 1.0) -> Path:
    """A picture with no audio stream at all."""
    return make_media(path, duration_s=duration_s, audio_streams=[])


def make_truncated(path: Path, keep_fraction: float = 0.5, **media_options) -> Path:
    """A valid file (``make_media(path, **media_options)``) cut to its first ``keep_fraction`` of bytes.

    A cut .mov loses its index (moov, written last) and cannot be opened; a
    cut .mkv still opens and declares the full duration but decodes short; a
    cut .wav reads as a shorter, valid file (ffmpeg sizes it from the bytes).
    """
    make_media(path, **media_options)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def make_text_file(path: Path) -> Path:
    """A file with a media suffix that holds text, not media."""
    path.write_text("This is a shot list, not a media file.\n" * 20)
    return path


def probe(path: Path) -> dict:
    """ffprobe's JSON answer (format and streams) for ``path``."""
    return ffmpeg.probe(str(path), cmd=str(find_tool("ffprobe")))


def dominant_frequencies_hz(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Frequency of the strongest FFT bin of each channel; samples shape: (frames, channels)."""
    window = np.hanning(len(samples))[:, None]  # shape: (frames, 1)
    spectrum = np.abs(np.fft.rfft(samples * window, axis=0))  # shape: (bins, channels)
    return np.fft.rfftfreq(len(samples), 1.0 / sample_rate)[np.argmax(spectrum, axis=0)]


def _picture(duration_s: float):
    return ffmpeg.input(f"testsrc2=size={_VIDEO_SIZE}:rate={VIDEO_RATE}:duration={duration_s}", f="lavfi")


def _tones(layout: str, stream: int, duration_s: float, sample_rate: int, offset_s: float):
    expressions = "|".join(
        f"{TONE_AMPLITUDE}*sin(2*PI*{hz}*t)" for hz in channel_frequencies_hz(layout, stream)
    )
    source = f"aevalsrc={expressions}:s={sample_rate}:d={duration_s}:c={layout}"
    # -itsoffset delays every timestamp of this input: the container then
    # records that the audio starts after the picture (edit list, mkv timestamps).
    return ffmpeg.input(source, f="lavfi", itsoffset=offset_s) if offset_s else ffmpeg.input(source, f="lavfi")


def _run(output, path: Path) -> None:
    try:
        output.global_args("-nostdin", "-v", "error").overwrite_output().run(
            cmd=str(find_tool("ffmpeg")), capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as exc:
        raise RuntimeError(f"ffmpeg could not make {path}: {exc.stderr.decode(errors='replace')}") from None
