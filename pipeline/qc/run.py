"""QC of the delivered stems: the checks a studio's QC would run, before the studio runs them.

``run_qc`` measures every delivered stem and writes ``qc.json`` and a
self-contained ``report.html`` (plots embedded as data URIs, no script, no
external resource) beside the stems. Checks:

- true peak (dBTP, BS.1770 4x oversampling) of the M&E, and of the other
  stems when a limit is set (not of the per-speaker stems: they get the
  format, length and clipping checks only);
- length: every file exactly the programme's frames, and within a frame of
  the picture's duration;
- format: 48 kHz and the stem's channel count (the programme's; one for
  the mono DX-GUIDE);
- clipping: samples at or beyond the largest value the file's format holds;
- the null tests: mix - (DX + ME) and mix - (DX + MX + FX) from the
  delivered files, in dB below the mix's RMS: each way a studio rebuilds
  the mix;
- dialogue left in the M&E: speech found by Silero VAD, in seconds, with spans;
  when the project transcribes, the words heard in those spans (listed, not
  checked: the seconds of speech are the check).

Loudness (BS.1770-4 integrated, LRA) and true peak are ffmpeg's
(:mod:`~dubprep.qc.loudness`), run beside the passes over the samples.
Integrated loudness is reported, not checked: an M&E keeps the mix's levels
and has no loudness target. Every measurement streams, block by block.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dubprep.console import FILE_ONLY
from dubprep.errors import MediaError, StageError
from dubprep.probe import probe
from dubprep.progress import NullProgress, ProgressHook
from dubprep.qc.checks import all_checks, write_json
from dubprep.qc.loudness import measure_loudness
from dubprep.qc.nulls import null_tests
from dubprep.qc.peaks import scan_stem
from dubprep.qc.report import write_report
from dubprep.qc.result import SEPARATED, QcInputs, QcLimits, QcResult
from dubprep.qc.speech import detect_speech, file_blocks

_LOUDNESS_WORKERS = 2  # ffmpeg passes in parallel with the Python passes


def run_qc(
    inputs: QcInputs,
    limits: QcLimits = QcLimits(),
    log: logging.Logger = logging.getLogger("dubprep.qc"),
    progress: ProgressHook = NullProgress(),
) -> list[str]:
    """Measure the delivered stems, write qc.json and report.html into ``inputs.work_dir``.

    Returns one line per failed check (empty when everything passes).
    """
    for asset in SEPARATED:
        if asset not in inputs.stems:
            raise StageError(f"{inputs.work_dir}: QC needs the delivered {asset} stem; it is missing")
    progress.start("qc", inputs.media.frames * (len(inputs.stems) + 2))
    with ThreadPoolExecutor(_LOUDNESS_WORKERS) as pool:
        pending = {
            asset: pool.submit(measure_loudness, files, inputs.layout_of(asset))
            for asset, files in inputs.stems.items() if asset not in inputs.speakers
        }
        pending["mix"] = pool.submit(measure_loudness, (inputs.work.stored("mix"),), inputs.media.layout)
        scans = {asset: scan_stem(files, progress) for asset, files in inputs.stems.items()}
        nulls = null_tests(inputs, progress)
        speech = detect_speech(file_blocks(inputs.stems["ME"]), inputs.media.layout, progress)
        loudness = {asset: future.result() for asset, future in pending.items()}
    progress.finish()
    result = QcResult(
        inputs=inputs, limits=limits, loudness=loudness, scans=scans, nulls=nulls, speech=speech,
        picture_s=picture_duration_s(inputs.source), turns=json.loads(inputs.turns.read_text()),
        me_words=json.loads(inputs.me_words.read_text(encoding="utf-8")) if inputs.me_words else None,
    )
    result.checks = all_checks(result)
    write_json(inputs.work_dir / "qc.json", result)
    write_report(inputs.work_dir / "report.html", result)
    for failure in result.failures:
        log.warning("qc: %s", failure, extra=FILE_ONLY)  # the run's closing error line lists them
    log.info("qc: %d checks, %d failed; details in report.html beside the stems", len(result.checks), len(result.failures))
    return result.failures


def picture_duration_s(source: Path | None) -> float | None:
    """Duration of the picture in ``source`` (cover art aside); None when there is none or it cannot be read."""
    if source is None or not source.is_file():
        return None
    try:
        return probe(source).picture_duration_s
    except MediaError:
        return None

