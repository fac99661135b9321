"""The QC checks, and ``qc.json``: every limit, check, failure and measurement."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from dubprep.audio_io import SAMPLE_RATE
from dubprep.media import LAYOUT_CHANNELS, MediaInfo
from dubprep.qc.result import Check, Loudness, NullTest, QcInputs, QcLimits, QcResult, SpeechSpan, StemScan, amplitude_db
from dubprep.qc.speech import SPEECH_DETECTOR
from dubprep.timecode import FrameRate, span_timecodes

_SPANS_IN_FAILURE = 3


def all_checks(result: QcResult) -> list[Check]:
    """Every check, stem by stem, then the null test and the M&E's dialogue."""
    checks: list[Check] = []
    for asset, scan in result.scans.items():
        checks.append(format_check(asset, scan, result.inputs.layout_of(asset)))
        checks.append(length_check(asset, scan, result.inputs.media))
        if asset in result.inputs.speakers:  # a speaker stem: format, length and clipping only
            checks.append(clipping_check(asset, scan))
            continue
        checks.append(picture_check(asset, scan, result.picture_s, result.inputs.rate, result.limits))
        checks.append(clipping_check(asset, scan))
        checks.append(true_peak_check(asset, result.loudness[asset], result.limits))
    checks += [null_check(null, result.limits) for null in result.nulls]
    checks.append(dialogue_check(result.speech, result.inputs, result.limits))
    return checks


def format_check(asset: str, scan: StemScan, layout: str) -> Check:
    channels = len(LAYOUT_CHANNELS[layout])
    expected_files = 1 if len(scan.files) == 1 else channels
    rates = sorted(set(scan.sample_rates))
    measured = f"{'/'.join(str(r) for r in rates)} Hz, {scan.channels} ch in {len(scan.files)} file(s)"
    limit = f"{SAMPLE_RATE} Hz, {channels} ch"
    passed = rates == [SAMPLE_RATE] and scan.channels == channels and len(scan.files) == expected_files
    return Check(f"{asset} format", passed, measured, limit, f"{asset} format {measured}; expected {limit}")


def length_check(asset: str, scan: StemScan, media: MediaInfo) -> Check:
    wrong = [(p.name, n) for p, n in zip(scan.files, scan.frames) if n != media.frames]
    measured = ", ".join(f"{n} samples" for n in sorted(set(scan.frames)))
    detail = "; ".join(f"{name} {n - media.frames:+d} samples" for name, n in wrong)
    return Check(
        f"{asset} length", not wrong, measured, f"= {media.frames} samples (programme)",
        f"{asset} length differs from the programme's {media.frames} samples: {detail}",
    )


def picture_check(asset: str, scan: StemScan, picture_s: float | None, rate: FrameRate, limits: QcLimits) -> Check:
    tolerance_s = limits.picture_tolerance_frames / float(rate.fraction)
    limit = f"picture ± {limits.picture_tolerance_frames} frame(s) at {rate}"
    if picture_s is None:
        return Check(f"{asset} length vs picture", None, "no picture", limit)
    stem_s = max(scan.frames) / SAMPLE_RATE
    difference_s = stem_s - picture_s
    measured = f"{stem_s:.3f} s vs picture {picture_s:.3f} s ({difference_s:+.3f} s)"
    return Check(
        f"{asset} length vs picture", abs(difference_s) <= tolerance_s + 0.5 / SAMPLE_RATE, measured, limit,
        f"{asset} length {stem_s:.3f} s is {difference_s:+.3f} s from the picture's {picture_s:.3f} s "
        f"(> {limits.picture_tolerance_frames} frame)",
    )


def clipping_check(asset: str, scan: StemScan) -> Check:
    clipped = int(scan.clipped.sum())
    return Check(
        f"{asset} clipping", clipped == 0, f"{clipped} samples at full scale", "0 samples",
        f"{asset} clipping: {clipped} samples at or beyond full scale",
    )


def true_peak_check(asset: str, loudness: Loudness, limits: QcLimits) -> Check:
    limit_dbtp = limits.me_true_peak_max_dbtp if asset == "ME" else limits.stem_true_peak_max_dbtp
    peak = loudness.true_peak_dbtp
    measured = "silent" if peak is None else f"{peak:.1f} dBTP"
    if limit_dbtp is None:
        return Check(f"{asset} true peak", None, measured, "not limited")
    return Check(
        f"{asset} true peak", peak is None or peak <= limit_dbtp, measured, f"≤ {limit_dbtp:.1f} dBTP",
        f"{asset} true peak {measured} > {limit_dbtp:.1f} dBTP",
    )


def null_check(null: NullTest, limits: QcLimits) -> Check:
    depth = null.delivered_depth_db
    measured = "bit-exact" if depth == math.inf else f"{depth:.1f} dB below the mix"
    return Check(
        f"Null test (mix - {' - '.join(null.stems)})", depth >= limits.null_test_min_db, measured,
        f"≥ {limits.null_test_min_db:.1f} dB",
        f"Null test: mix - ({null.label}) is only {depth:.1f} dB below the mix (< {limits.null_test_min_db:.1f} dB); "
        f"{null.label} do not re-sum to the mix",
    )


def dialogue_check(speech: list[SpeechSpan], inputs: QcInputs, limits: QcLimits) -> Check:
    total_s = sum(s.duration_s for s in speech)
    worst = sorted(speech, key=lambda s: s.duration_s, reverse=True)[:_SPANS_IN_FAILURE]
    spans = ", ".join(_span_timecodes(s, inputs) for s in worst)
    return Check(
        "Dialogue in M&E", total_s <= limits.dialogue_in_me_max_s, f"{total_s:.1f} s of speech in {len(speech)} span(s)",
        f"≤ {limits.dialogue_in_me_max_s:.1f} s",
        f"Dialogue in M&E: {total_s:.1f} s of speech > {limits.dialogue_in_me_max_s:.1f} s; longest: {spans}",
    )


def _span_timecodes(span: SpeechSpan, inputs: QcInputs) -> str:
    return span_timecodes(span.start_s, span.end_s, inputs.start_timecode, inputs.rate)


def write_json(path: Path, result: QcResult) -> None:
    """qc.json: limits, checks, failures and every measurement; non-finite numbers as null."""
    inputs = result.inputs
    document = {
        "generated": datetime.now().replace(microsecond=0).isoformat(),
        "programme": {
            "source": inputs.media.source, "layout": inputs.media.layout, "frames": inputs.media.frames,
            "duration_s": inputs.media.duration_s, "start_timecode": inputs.start_timecode, "frame_rate": str(inputs.rate),
            "picture_duration_s": result.picture_s,
        },
        "limits": result.limits.model_dump(),
        "passed": not result.failures,
        "failures": result.failures,
        "checks": [asdict(c) for c in result.checks],
        "mix": _loudness_json(result.loudness["mix"]),
        "stems": {asset: _stem_json(scan, result.loudness.get(asset)) for asset, scan in result.scans.items()},
        "null_tests": {null.label: asdict(null) for null in result.nulls},
        "dialogue_in_me": {
            "speech_s": sum(s.duration_s for s in result.speech),
            "detector": SPEECH_DETECTOR,
            "spans": [
                {**asdict(s), "duration_s": s.duration_s, "timecode": _span_timecodes(s, inputs)}
                for s in result.speech
            ],
        },
        "speakers": result.turns.get("speakers", []),
    }
    if result.me_words is not None:
        document["dialogue_in_me"]["words"] = words_in_me(result)
    path.write_text(json.dumps(_finite(document), indent=2, ensure_ascii=False) + "\n")


def words_in_me(result: QcResult) -> list[dict]:
    """Each M&E span in which words were heard: its timecode, its text and its words (each with timecode)."""
    inputs = result.inputs
    return [
        {**span, "timecode": span_timecodes(span["start_s"], span["end_s"], inputs.start_timecode, inputs.rate),
         "words": [
             {**word, "timecode": span_timecodes(word["start_s"], word["end_s"], inputs.start_timecode, inputs.rate)}
             for word in span["words"]
         ]}
        for span in result.me_words["spans"] if span["words"]
    ]


def _stem_json(scan: StemScan, loudness: Loudness | None) -> dict:
    """A stem's measurements; a speaker stem's (``loudness`` None) without loudness or true peak."""
    return {
        "files": [p.name for p in scan.files],
        "frames": list(scan.frames),
        "channels": scan.channels,
        "format": scan.subtype,
        **({} if loudness is None else _loudness_json(loudness)),
        "sample_peak_dbfs": [amplitude_db(float(p)) for p in scan.peak],
        "clipped_samples": [int(n) for n in scan.clipped],
    }


def _loudness_json(loudness: Loudness) -> dict:
    return {
        **asdict(loudness), "true_peaks_dbtp": list(loudness.true_peaks_dbtp), "true_peak_dbtp": loudness.true_peak_dbtp,
    }


def _finite(value):
    """``value`` with inf/nan replaced by None, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
