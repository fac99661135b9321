"""The QC report: one static HTML file with its plots inside.

Plots are PNGs drawn with matplotlib's Agg canvas (no display, no pyplot
state) and embedded as data URIs, and the style sheet is inline: the file
can be mailed or archived alone and opens offline, with no script, font or
request outside it. Every text from the inputs (file and speaker names) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dubprep.audio_io import SAMPLE_RATE
from dubprep.media import LAYOUT_CHANNELS
from dubprep.qc.checks import words_in_me
from dubprep.timecode import in_timecode, span_timecodes

if TYPE_CHECKING:
    from pathlib import Path

    from dubprep.qc.result import Check, QcResult, StemScan

_DPI = 100
_LANE_HEIGHT_IN = 0.55
_WIDTH_IN = 12.0  # 1200 px: one pixel column per envelope column
_TICKS = 7
_NICE_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
_LISTED_SPANS = 20
_MIN_SCALE = 0.01  # -40 dBFS: quieter stems are drawn at this scale, so noise does not look like content
_WAVE_COLOUR = "#2b6cb0"
_SPEECH_COLOUR = "#e53e3e"
_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em;color:#1a202c;max-width:1300px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #cbd5e0}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #cbd5e0;padding:.25em .6em;text-align:left}
th{background:#edf2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#276749;font-weight:bold}.fail{color:#c53030;font-weight:bold}.na{color:#718096}
.banner{padding:.6em 1em;border-radius:4px;font-weight:bold}
.banner.pass{background:#f0fff4;border:1px solid #9ae6b4}.banner.fail{background:#fff5f5;border:1px solid #feb2b2}
img{max-width:100%;height:auto;display:block;margin:.3em 0 1em}.note{color:#4a5568;font-size:.9em}
"""


def write_report(path: Path, result: QcResult) -> None:
    """Write report.html for ``result``."""
    inputs = result.inputs
    failures = result.failures
    banner = (
        '<p class="banner pass">All checks passed.</p>' if not failures
        else f'<p class="banner fail">{len(failures)} check(s) failed:</p><ul>'
        + "".join(f"<li>{_e(f)}</li>" for f in failures) + "</ul>"
    )
    sections = [
        f"<h1>Delivery QC: {_e(inputs.media.source)}</h1>",
        f'<p class="note">{inputs.media.layout}, {inputs.media.frames} samples at {SAMPLE_RATE} Hz '
        f"({inputs.media.duration_s:.3f} s), starting {_e(inputs.start_timecode)} at {_e(str(inputs.rate))}.</p>",
        banner,
        "<h2>Checks</h2>", _checks_table(result.checks),
        "<h2>Stems</h2>", _stems_table(result),
        "<h2>Null tests</h2>", _null_table(result),
        "<h2>Dialogue left in the M&amp;E</h2>", _speech_section(result), _words_section(result),
        "<h2>Speakers</h2>", _speaker_section(result),
        "<h2>Waveforms</h2>", _waveform_section(result),
        "<h2>Methods</h2>", _methods(),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>QC {_e(inputs.media.source)}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _table(header: list[str], rows: list[list[str]], numeric: tuple[int, ...] = ()) -> str:
    """A table of already-escaped cells; columns in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status(check: Check) -> str:
    if check.passed is None:
        return '<span class="na">n/a</span>'
    return '<span class="pass">pass</span>' if check.passed else '<span class="fail">FAIL</span>'


def _checks_table(checks: list[Check]) -> str:
    rows = [[_status(c), _e(c.name), _e(c.measured), _e(c.limit)] for c in checks]
    return _table(["Result", "Check", "Measured", "Limit"], rows)


def _number(value: float | None, unit: str) -> str:
    return "silent" if value is None else f"{value:.1f} {unit}"


def _stems_table(result: QcResult) -> str:
    rows = []
    for asset, loudness in [("mix (float, input)", result.loudness["mix"])] + [
        (a, result.loudness.get(a)) for a in result.scans
    ]:
        scan = result.scans.get(asset)
        rows.append([
            _e(asset),
            "" if scan is None else "<br>".join(_e(p.name) for p in scan.files),
            "" if scan is None else f"{scan.channels}, {_e(scan.subtype)}",
            "" if scan is None else " / ".join(str(n) for n in sorted(set(scan.frames))),
            *(["not measured"] * 4 if loudness is None else [  # a speaker stem
                _number(loudness.integrated_lufs, "LUFS"),
                _number(loudness.range_lu, "LU"),
                _number(loudness.true_peak_dbtp, "dBTP"),
                " / ".join("-inf" if p is None else f"{p:.1f}" for p in loudness.true_peaks_dbtp),
            ]),
            "" if scan is None else str(int(scan.clipped.sum())),
        ])
    header = ["Asset", "Files", "Channels, format", "Samples", "Integrated", "LRA", "True peak",
              "True peak per channel (dBTP)", "Clipped samples"]
    return _table(header, rows, numeric=(3, 4, 5, 6, 7, 8)) + (
        '<p class="note">Integrated loudness is programme-gated BS.1770-4 and only reported: the stems keep the '
        "mix's levels and an M&amp;E has no loudness target. No dialogue-gated figure is given (that gate has no "
        "open implementation). Sample peaks per channel are in qc.json.</p>"
    )


def _depth(value: float) -> str:
    return "bit-exact" if value == float("inf") else f"{value:.1f} dB"


def _null_table(result: QcResult) -> str:
    rows = [
        [
            f"mix - ({_e(null.label)})", _depth(null.delivered_depth_db), _depth(null.separation_depth_db),
            f"{null.residual_peak_dbfs:.1f} dBFS", str(null.frames),
        ]
        for null in result.nulls
    ]
    header = ["Residual", "Delivered stems, below the mix's RMS", "Separation's float stems", "Peak residual (delivered)",
              "Samples compared"]
    return _table(header, rows, numeric=(1, 2, 3, 4)) + (
        f'<p class="note">Limit: {result.limits.null_test_min_db:.1f} dB on the delivered stems. 24-bit stems re-sum '
        "within their quantisation (about -146 dBFS RMS for two stems, -144.5 for three).</p>"
    )


def _speech_section(result: QcResult) -> str:
    total_s = sum(s.duration_s for s in result.speech)
    worst = sorted(result.speech, key=lambda s: s.duration_s, reverse=True)[:_LISTED_SPANS]
    summary = (
        f"<p>{total_s:.1f} s of speech detected in {len(result.speech)} span(s) "
        f"(limit {result.limits.dialogue_in_me_max_s:.1f} s).</p>"
    )
    if not worst:
        return summary
    rows = [
        [
            _e(span_timecodes(s.start_s, s.end_s, result.inputs.start_timecode, result.inputs.rate)),
            f"{s.start_s:.2f}", f"{s.end_s:.2f}", f"{s.duration_s:.2f}", f"{s.peak_probability:.2f}",
        ]
        for s in worst
    ]
    header = ["Timecode (in-out)", "Start (s)", "End (s)", "Duration (s)", "Peak probability"]
    table = _table(header, rows, numeric=(1, 2, 3, 4))
    note = (
        '<p class="note">Longest spans first. Walla, efforts and sung lyrics belong in an M&amp;E and can read as '
        "speech: listen before re-separating. The spans are shaded on the M&amp;E waveform below.</p>"
    )
    return summary + table + note


def _words_section(result: QcResult) -> str:
    """The words the transcriber heard in the M&E's speech spans, with timecode (only when the project transcribes)."""
    if result.me_words is None:
        return ""
    spans = words_in_me(result)
    heading = "<h3>Words found in the M&amp;E</h3>"
    if not spans:
        return heading + "<p>No words heard in the M&amp;E.</p>"
    rows = [
        [_e(span["timecode"]), _e(span["text"]),
         "<br>".join(f'{_e(w["text"].strip())} <small>{_e(w["timecode"])} ({w["probability"]:.2f})</small>'
                     for w in span["words"])]
        for span in spans
    ]
    note = (
        f'<p class="note">Heard by the transcribe stage ({_e(str(result.me_words.get("language") or "language detected per span"))}) '
        "in each span where speech was detected: original dialogue that survives separation, or walla and lyrics "
        "that belong in an M&amp;E. Each word with its timecode and probability.</p>"
    )
    return heading + _table(["Timecode (in-out)", "Text", "Words"], rows) + note


def _speaker_section(result: QcResult) -> str:
    turns = result.turns.get("turns", [])
    speakers = result.turns.get("speakers", [])
    if not speakers:
        return "<p>No speaker turns.</p>"
    rows = []
    for label in speakers:
        own = [t for t in turns if t["speaker"] == label]
        talk_s = sum(t["end_s"] - t["start_s"] for t in own)
        first = in_timecode(result.inputs.start_timecode, min(t["start_s"] for t in own), result.inputs.rate) if own else ""
        rows.append([_e(label), str(len(own)), f"{talk_s:.1f}", str(sum(bool(t.get("overlap")) for t in own)), _e(first)])
    table = _table(["Speaker", "Turns", "Talk time (s)", "Overlapping turns", "First turn"], rows, numeric=(1, 2, 3))
    return _image(_timeline_png(result), "Speaker timeline") + table


def _waveform_section(result: QcResult) -> str:
    parts = [
        '<p class="note">One lane per channel; each stem drawn to its own peak (the scale beside its name); '
        "speech found in the M&amp;E shaded red.</p>"
    ]
    for asset, scan in result.scans.items():
        spans = [(s.start_s, s.end_s) for s in result.speech] if asset == "ME" else []
        scale = max(float(scan.peak.max()), _MIN_SCALE)
        parts.append(
            f"<h3>{_e(asset)} <small>(scale ±{20 * np.log10(scale):.1f} dBFS)</small></h3>"
            + _image(_waveform_png(scan, result.inputs.layout_of(asset), spans, scale, result), f"Waveform of {asset}")
        )
    return "".join(parts)


def _methods() -> str:
    return (
        '<ul class="note"><li>Loudness and true peak: ffmpeg <code>ebur128</code> (BS.1770-4; true peak by 4x '
        "oversampling, channel by channel), one pass per stem; values to 0.1 dB.</li>"
        "<li>Clipping: samples at or beyond the largest value of the file's format.</li>"
        "<li>Null tests: energy of mix - (DX + ME) and of mix - (DX + MX + FX) relative to the mix's, over all "
        "channels, read block by block.</li>"
        "<li>Dialogue in M&amp;E: Silero VAD at 16 kHz on the phantom centre (and the C channel of 5.1/7.1).</li>"
        "<li>Waveforms: minimum and maximum of each pixel column.</li></ul>"
    )


def _image(png: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _time_axis(axis, duration_s: float, result: QcResult) -> None:
    """Ticks every few timecode seconds from the start, labelled with the picture's timecode."""
    rate = result.inputs.rate
    step = next((s for s in _NICE_STEPS_S if duration_s / s <= _TICKS), _NICE_STEPS_S[-1])
    # Whole frames per tick, so each label is a round timecode (nearly, at drop-frame).
    ticks = [float(k * step * rate.nominal_fps / rate.fraction) for k in range(int(duration_s // step) + 1)]
    axis.set_xticks(ticks)
    axis.set_xticklabels([in_timecode(result.inputs.start_timecode, t, rate) for t in ticks], fontsize=7)
    axis.set_xlim(0.0, duration_s)


def _waveform_png(
    scan: StemScan, layout: str, speech: list[tuple[float, float]], scale: float, result: QcResult
) -> bytes:
    """One lane per channel, named from ``layout``: the min/max envelope within ±``scale``, speech spans shaded."""
    names = LAYOUT_CHANNELS.get(layout, ())
    names = names if len(names) == scan.channels else tuple(str(i + 1) for i in range(scan.channels))
    duration_s = max(scan.frames) / SAMPLE_RATE
    figure = Figure(figsize=(_WIDTH_IN, 0.5 + _LANE_HEIGHT_IN * scan.channels), dpi=_DPI)
    axes = figure.subplots(scan.channels, 1, sharex=True, squeeze=False)[:, 0]
    x = (np.arange(len(scan.env_min)) + 0.5) * duration_s / len(scan.env_min)
    for channel, axis in enumerate(axes):
        for start_s, end_s in speech:
            axis.axvspan(start_s, end_s, color=_SPEECH_COLOUR, alpha=0.25, linewidth=0)
        axis.fill_between(x, scan.env_min[:, channel], scan.env_max[:, channel], color=_WAVE_COLOUR, linewidth=0.4,
                          step="mid")
        axis.set_ylim(-scale, scale)
        axis.set_yticks([])
        axis.set_ylabel(names[channel], rotation=0, ha="right", va="center", fontsize=8)
        for edge in ("top", "right", "left"):
            axis.spines[edge].set_visible(False)
    _time_axis(axes[-1], duration_s, result)
    figure.subplots_adjust(left=0.05, right=0.99, top=0.97, bottom=0.5 / (0.5 + _LANE_HEIGHT_IN * scan.channels), hspace=0.1)
    return _png(figure)


def _timeline_png(result: QcResult) -> bytes:
    """One row per speaker, a bar per turn; overlapping turns drawn lighter."""
    speakers = result.turns["speakers"]
    figure = Figure(figsize=(_WIDTH_IN, 0.6 + 0.3 * len(speakers)), dpi=_DPI)
    axis = figure.subplots()
    for row, label in enumerate(speakers):
        for overlap in (False, True):
            bars = [(t["start_s"], t["end_s"] - t["start_s"]) for t in result.turns["turns"]
                    if t["speaker"] == label and bool(t.get("overlap")) == overlap]
            axis.broken_barh(bars, (row - 0.35, 0.7), color=f"C{row % 10}", alpha=0.45 if overlap else 0.9)
    axis.set_yticks(range(len(speakers)))
    axis.set_yticklabels([label.replace("$", r"\$") for label in speakers], fontsize=8)  # '$' starts mathtext
    axis.invert_yaxis()
    _time_axis(axis, result.inputs.media.duration_s, result)
    figure.tight_layout()
    return _png(figure)
