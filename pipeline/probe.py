"""Reading a media file's streams with ffprobe."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg

from dubprep.errors import MediaError
from dubprep.tools import find_tool


@dataclass(frozen=True)
class AudioStream:
    """One audio stream; ``position`` counts audio streams only (0 = first)."""

    position: int
    index: int
    codec: str
    channels: int
    channel_layout: str
    sample_rate: int
    language: str | None
    start_s: float
    duration_s: float | None

    def describe(self) -> str:
        lang = self.language or "und"
        return f"#{self.position} {self.codec} {self.channel_layout or '?'} {self.sample_rate} Hz [{lang}]"


@dataclass(frozen=True)
class Probe:
    """The parts of ffprobe's answer the pipeline uses."""

    path: Path
    audio: tuple[AudioStream, ...]
    start_s: float
    duration_s: float | None
    frame_rate: str | None
    timecode: str | None
    picture_duration_s: float | None  # of the first picture stream; None without one


def probe(path: Path) -> Probe:
    """Probe ``path``; MediaError when it is missing or not media."""
    if not path.is_file():
        raise MediaError(f"{path}: input file not found; check the 'input' path or --input")
    try:
        answer = ffmpeg.probe(str(path), cmd=str(find_tool("ffprobe")))
    except ffmpeg.Error as exc:
        reason = exc.stderr.decode(errors="replace").strip().splitlines()
        detail = reason[-1] if reason else "ffprobe failed"
        raise MediaError(f"{path}: not a readable media file ({detail}); check the file is complete") from None
    _check_wav_complete(path)
    streams = answer.get("streams", [])
    fmt = answer.get("format", {})
    audio = tuple(_audio_stream(pos, s) for pos, s in enumerate(x for x in streams if x["codec_type"] == "audio"))
    video = [s for s in streams if s["codec_type"] == "video" and not s.get("disposition", {}).get("attached_pic")]
    return Probe(
        path=path,
        audio=audio,
        start_s=float(fmt.get("start_time", 0.0)),
        duration_s=_float_or_none(fmt.get("duration")),
        frame_rate=_frame_rate(video[0]) if video else None,
        timecode=_timecode(fmt, streams),
        picture_duration_s=_stream_duration(video[0]) if video else None,
    )


def _check_wav_complete(path: Path) -> None:
    """MediaError when a RIFF WAV's data chunk declares more bytes than the file has.

    ffprobe quietly re-estimates a cut WAV's duration from its size, so a
    half-copied file would otherwise pass as a shorter, valid one.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        riff = f.read(12)
        if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
            return
        while header := f.read(8):
            if len(header) < 8:
                return
            chunk_id, chunk_bytes = header[:4], int.from_bytes(header[4:], "little")
            if chunk_id == b"data":
                missing = f.tell() + chunk_bytes - size
                if missing > 0:
                    raise MediaError(
                        f"{path}: WAV data chunk declares {chunk_bytes} bytes but the file ends {missing} "
                        f"bytes short; the file is truncated, copy or export it again"
                    )
                return
            f.seek(chunk_bytes + chunk_bytes % 2, 1)


def _audio_stream(position: int, s: dict) -> AudioStream:
    tags = s.get("tags", {})
    return AudioStream(
        position=position,
        index=int(s["index"]),
        codec=s.get("codec_name", "unknown"),
        channels=int(s.get("channels", 0)),
        channel_layout=s.get("channel_layout", ""),
        sample_rate=int(s.get("sample_rate", 0)),
        language=tags.get("language"),
        start_s=float(s.get("start_time", 0.0)),
        duration_s=_stream_duration(s),
    )


def _stream_duration(s: dict) -> float | None:
    """Exact duration from duration_ts x time_base when given, else the float fields."""
    if "duration_ts" in s and "time_base" in s:
        return float(int(s["duration_ts"]) * Fraction(s["time_base"]))
    if "duration" in s:
        return float(s["duration"])
    # Matroska keeps the stream duration in a tag: 'HH:MM:SS.nnnnnnnnn'.
    tag = s.get("tags", {}).get("DURATION")
    if tag:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    return None


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value not in (None, "N/A") else None


def _frame_rate(video: dict) -> str | None:
    for key in ("r_frame_rate", "avg_frame_rate"):
        rate = video.get(key, "0/0")
        num, _, den = rate.partition("/")
        if den and int(den) and int(num):
            return str(Fraction(int(num), int(den)))
    return None


def _timecode(fmt: dict, streams: list[dict]) -> str | None:
    """Start timecode from the container tags or a tmcd/video stream tag."""
    for tags in [fmt.get("tags", {})] + [s.get("tags", {}) for s in streams]:
        if "timecode" in tags:
            return tags["timecode"]
    return None
