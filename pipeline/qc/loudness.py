"""Integrated loudness, loudness range and true peak of a stem, by ffmpeg's ``ebur128`` filter.

ebur128 measures all three in one streaming pass with constant memory,
whatever the programme length, where pyloudnorm needs the whole signal in
memory; and it is the independent reference studios use. True peak is
taken channel by channel, since ffmpeg 8.0's ebur128 counts only the first
two channels of a wider stream in its peaks.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from dubprep.errors import StageError
from dubprep.media import LAYOUT_CHANNELS
from dubprep.qc.result import Loudness
from dubprep.tools import find_tool

_FFMPEG_SILENT_LUFS = -70.0  # ebur128 prints the absolute gate when nothing passes it


def measure_loudness(files: Sequence[Path], layout: str) -> Loudness:
    """Integrated loudness, loudness range and per-channel true peak of one stem, in one ffmpeg pass.

    Several mono files are merged in channel order into ``layout``, so
    BS.1770 weights the channels as in one file: surrounds +1.5 dB, LFE left
    out. True peak is measured channel by channel: ffmpeg 8.0's ebur128
    counts only the first two channels of a wider stream in its peaks.
    """
    command = [str(find_tool("ffmpeg")), "-nostdin", "-hide_banner", "-nostats", "-v", "info"]
    for path in files:
        command += ["-i", str(path)]
    command += ["-filter_complex", _loudness_graph(len(files), layout), "-map", "[out]", "-f", "null", "-"]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    summaries = dict(re.findall(r"\[ebur128@(\w+) @ \w+\] Summary:(.*?)(?=^\[|\Z)", done.stderr, re.S | re.M))
    channels = len(LAYOUT_CHANNELS[layout])
    if done.returncode != 0 or len(summaries) != channels + 1:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise StageError(f"{files[0]}: ffmpeg could not measure its loudness ({last[0]}); check the file is a complete WAV")
    integrated = _summary_value(summaries["loudness"], r"I:\s+(\S+) LUFS", files[0])
    silent = integrated <= _FFMPEG_SILENT_LUFS
    peaks = [_summary_value(summaries[f"tp{c}"], r"Peak:\s+(\S+) dBFS", files[0]) for c in range(channels)]
    return Loudness(
        integrated_lufs=None if silent else integrated,
        range_lu=None if silent else _summary_value(summaries["loudness"], r"LRA:\s+(\S+) LU", files[0]),
        true_peaks_dbtp=tuple(p if math.isfinite(p) else None for p in peaks),
    )


def _loudness_graph(files: int, layout: str) -> str:
    """ffmpeg filter graph: the stem to ebur128@loudness ([out]), and each channel to ebur128@tp<n>."""
    meter = "framelog=verbose"  # per-frame lines at verbose level: only the summaries print
    channels = len(LAYOUT_CHANNELS[layout])
    merged = (
        "[0:a]" if files == 1
        else "".join(f"[{i}:a]" for i in range(files)) + f"amerge=inputs={files},channelmap=channel_layout={layout},"
    )
    labels = "".join(f"[c{c}]" for c in range(channels))
    graph = [
        f"{merged}asplit=2[all][split]",
        f"[all]ebur128@loudness={meter}[out]",
        f"[split]channelsplit=channel_layout={layout}{labels}",
    ]
    graph += [f"[c{c}]ebur128@tp{c}=peak=true:{meter},anullsink" for c in range(channels)]
    return ";".join(graph)


def _summary_value(summary: str, pattern: str, path: Path) -> float:
    """A number from an ebur128 summary (printed to 0.1; '-inf' for silence)."""
    match = re.search(pattern, summary)
    if match is None:
        raise StageError(f"{path}: ffmpeg's ebur128 summary lacks '{pattern}'; check the ffmpeg build")
    return float(match.group(1))
