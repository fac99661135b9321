"""QC of the delivered stems: the checks a studio's QC would run, before the studio runs them.

``run_qc`` measures every delivered stem and writes ``qc.json`` and a
self-contained ``report.html`` (plots embedded as data URIs, no script, no
external resource) beside the stems. Checks:

- true peak (dBTP, BS.1770 4x oversampling) of the M&E, and of the other
  stems when a limit is set;
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

Loudness (BS.1770-4 integrated, LRA) and true peak come from ffmpeg's
``ebur128`` filter: it measures both in one streaming pass with constant
memory, whatever the programme length, where pyloudnorm needs the whole
signal in memory; and it is the independent reference studios use. True
peak is taken channel by channel, since ffmpeg 8.0's ebur128 counts only the
first two channels of a wider stream in its peaks. Integrated loudness is
reported, not checked: an M&E keeps the mix's levels and has no loudness
target. Everything else is computed here, block by block.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import firwin, lfilter

from dubprep.audio_io import BLOCK_FRAMES, SAMPLE_RATE
from dubprep.console import FILE_ONLY
from dubprep.errors import StageError
from dubprep.media import LAYOUT_CHANNELS, MediaInfo
from dubprep.progress import NullProgress, ProgressHook
from dubprep.qc_limits import QcLimits
from dubprep.qc_report import span_timecodes, words_in_me, write_report
from dubprep.timecode import FrameRate
from dubprep.tools import find_tool

ENVELOPE_COLUMNS = 1200  # one per pixel column of the waveform plots
_LOUDNESS_WORKERS = 2  # ffmpeg passes in parallel with the Python passes
_FFMPEG_SILENT_LUFS = -70.0  # ebur128 prints the absolute gate when nothing passes it
_PCM_BITS = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32}

# Silero VAD runs at 16 kHz on 512-sample windows. The programme is cut into
# lanes of _LANE_WINDOWS windows run as one batch (one step per window for the
# whole batch: ~20x faster than one lane at a time); each lane starts with
# _PREROLL_WINDOWS of the audio before it, whose probabilities are dropped, so
# the recurrent state has context at the cut.
_VAD_RATE = 16_000
_VAD_WINDOW = 512
_DECIMATION = SAMPLE_RATE // _VAD_RATE
_LANE_WINDOWS = 320
_PREROLL_WINDOWS = 16
_BATCH_ROWS = 64  # lanes x signals per batch: ~45 MB of 16 kHz audio
# 63-tap low-pass below the 8 kHz Nyquist of the VAD rate. Its 31-sample
# (0.65 ms) delay is left in: 1/50 of a VAD window.
_ANTI_ALIAS = firwin(63, 7_200, fs=SAMPLE_RATE).astype(np.float32)
# Spans: silero's defaults, with pauses under 0.3 s bridged so one line of
# dialogue reads as one span.
_VAD_THRESHOLD = 0.5
_MIN_SPEECH_MS = 250
_MIN_SILENCE_MS = 300
_SPEECH_PAD_MS = 30
_SPANS_IN_FAILURE = 3
SPEECH_DETECTOR = f"Silero VAD on the centre signals, threshold {_VAD_THRESHOLD}"
SEPARATED = ("DX", "ME", "MX", "FX")
NULL_SUMS = (("DX", "ME"), ("DX", "MX", "FX"))  # stems that re-sum to the mix


@dataclass(frozen=True)
class QcInputs:
    """What QC reads.

    ``stems`` maps each asset (ME, MX, FX, DX, DX-GUIDE, DX-<speaker>) to
    its delivered files: one file in the stem's layout, or one mono file per
    channel in channel order (L R C LFE Ls Rs). ``layouts`` gives the layout
    of a stem not in the programme's (the mono DX-GUIDE). ``mix`` is
    extract's float WAV and ``separated`` separate's float DX, ME, MX and FX.
    ``start_timecode`` and ``rate`` place the programme on the picture's
    timeline (as the stems' bext says). ``source`` is the programme's media
    file, for the picture's duration; None or a file without picture skips
    that comparison. ``me_words`` is the transcribe stage's
    ``words_in_me.json`` (None when the project does not transcribe).
    """

    work_dir: Path
    stems: dict[str, tuple[Path, ...]]
    mix: Path
    separated: dict[str, Path]
    media: MediaInfo
    turns: Path
    start_timecode: str
    rate: FrameRate
    source: Path | None = None
    layouts: dict[str, str] = field(default_factory=dict)
    me_words: Path | None = None

    def layout_of(self, asset: str) -> str:
        return self.layouts.get(asset, self.media.layout)


@dataclass(frozen=True)
class Loudness:
    """ffmpeg ebur128's summaries; None where the signal is silent (below the -70 LUFS gate, or all zero)."""

    integrated_lufs: float | None
    range_lu: float | None
    true_peaks_dbtp: tuple[float | None, ...]  # per channel

    @property
    def true_peak_dbtp(self) -> float | None:
        """The stem's true peak: the loudest channel's."""
        peaks = [p for p in self.true_peaks_dbtp if p is not None]
        return max(peaks) if peaks else None


@dataclass
class StemScan:
    """One stem's samples, scanned block by block.

    ``env_min``/``env_max``: shape (columns, channels), the waveform's extremes
    per plot column. ``peak`` and ``clipped``: per channel.
    """

    files: tuple[Path, ...]
    frames: tuple[int, ...]
    sample_rates: tuple[int, ...]
    channels: int
    subtype: str
    peak: np.ndarray
    clipped: np.ndarray
    env_min: np.ndarray
    env_max: np.ndarray


@dataclass(frozen=True)
class NullTest:
    """Residuals of mix - (sum of ``stems``): delivered stems, and separate's float stems (for diagnosis)."""

    stems: tuple[str, ...]
    delivered_depth_db: float
    separation_depth_db: float
    residual_peak_dbfs: float
    frames: int

    @property
    def label(self) -> str:
        """'DX + ME'."""
        return " + ".join(self.stems)


@dataclass(frozen=True)
class SpeechSpan:
    """Speech found in the M&E, in seconds from the programme start; ``peak_probability`` in [0, 1]."""

    start_s: float
    end_s: float
    peak_probability: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Check:
    """One QC check: ``passed`` is None when it does not apply (e.g. no picture)."""

    name: str
    passed: bool | None
    measured: str
    limit: str
    failure: str = ""


@dataclass
class QcResult:
    """Everything the report shows."""

    inputs: QcInputs
    limits: QcLimits
    loudness: dict[str, Loudness]
    scans: dict[str, StemScan]
    nulls: list[NullTest]
    speech: list[SpeechSpan]
    picture_s: float | None
    turns: dict
    me_words: dict | None = None  # words_in_me.json, when the project transcribes
    checks: list[Check] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        return [c.failure for c in self.checks if c.passed is False]


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
        if asset not in inputs.stems or asset not in inputs.separated:
            raise StageError(f"{inputs.work_dir}: QC needs the delivered and the float {asset} stem; one is missing")
    progress.start("qc", inputs.media.frames * (len(inputs.stems) + 2))
    with ThreadPoolExecutor(_LOUDNESS_WORKERS) as pool:
        pending = {
            asset: pool.submit(measure_loudness, files, inputs.layout_of(asset)) for asset, files in inputs.stems.items()
        }
        pending["mix"] = pool.submit(measure_loudness, (inputs.mix,), inputs.media.layout)
        scans = {asset: scan_stem(files, progress) for asset, files in inputs.stems.items()}
        nulls = null_tests(inputs, progress)
        speech = detect_speech(inputs.stems["ME"], inputs.media.layout, progress)
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


# --- measurements -------------------------------------------------------------------------------


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


def iter_aligned(groups: Sequence[Sequence[Path]], block_frames: int = BLOCK_FRAMES) -> Iterator[list[np.ndarray]]:
    """Blocks of several stems in step: one array per group, its files' channels side by side.

    Yields lists of float32 arrays, each of shape (frames, channels of the
    group), all with the same frames; stops at the end of the shortest file.
    """
    with ExitStack() as stack:
        files = [[stack.enter_context(sf.SoundFile(str(p))) for p in group] for group in groups]
        while True:
            blocks = [[f.read(block_frames, dtype="float32", always_2d=True) for f in group] for group in files]
            frames = min(len(b) for group in blocks for b in group)
            if frames == 0:
                return
            yield [np.concatenate([b[:frames] for b in group], axis=1) for group in blocks]
            if frames < block_frames:
                return


def full_scale(subtype: str) -> float:
    """Largest positive sample a format holds, as read into float32 (1 - 1 LSB; 1.0 for float)."""
    if subtype not in _PCM_BITS:
        return 1.0
    return float(np.float32(1.0 - 2.0 ** (1 - _PCM_BITS[subtype])))


def scan_stem(files: Sequence[Path], progress: ProgressHook) -> StemScan:
    """Peaks, clipped samples and the waveform envelope of one stem, in one pass."""
    infos = [sf.info(str(p)) for p in files]
    channels = sum(i.channels for i in infos)
    total = max(i.frames for i in infos)
    columns = min(ENVELOPE_COLUMNS, max(total, 1))
    scan = StemScan(
        files=tuple(files), frames=tuple(i.frames for i in infos), sample_rates=tuple(i.samplerate for i in infos),
        channels=channels, subtype=infos[0].subtype, peak=np.zeros(channels), clipped=np.zeros(channels, dtype=np.int64),
        env_min=np.zeros((columns, channels), dtype=np.float32), env_max=np.zeros((columns, channels), dtype=np.float32),
    )
    clip_level = min(full_scale(i.subtype) for i in infos)
    position = 0
    for (block,) in iter_aligned([files]):
        lowest, highest = _add_envelope(scan, block, position, total)
        # Counting is a full pass over the block; the envelope says when it can be skipped.
        if (highest >= clip_level).any() or (lowest <= -clip_level).any():
            scan.clipped += np.count_nonzero(np.abs(block) >= clip_level, axis=0)
        position += len(block)
        progress.advance(len(block))
    scan.peak = np.maximum(-scan.env_min.min(axis=0), scan.env_max.max(axis=0))
    return scan


def _add_envelope(scan: StemScan, block: np.ndarray, position: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``block`` (frames from ``position``) into the per-column minima and maxima.

    Returns the block's own minima and maxima per column touched; shape
    (columns touched, channels) each.
    """
    columns = len(scan.env_min)
    first, last = position * columns // total, (position + len(block) - 1) * columns // total
    ids = np.arange(first, last + 1)
    # Column c starts at frame ceil(c * total / columns).
    starts = np.maximum(-(-(ids * total) // columns) - position, 0)
    lowest = np.minimum.reduceat(block, starts, axis=0)
    highest = np.maximum.reduceat(block, starts, axis=0)
    scan.env_min[ids] = np.minimum(scan.env_min[ids], lowest)
    scan.env_max[ids] = np.maximum(scan.env_max[ids], highest)
    return lowest, highest


def null_tests(inputs: QcInputs, progress: ProgressHook) -> list[NullTest]:
    """mix - (sum) for each of NULL_SUMS over the frames all files share, delivered and float, in one pass."""
    groups = [(inputs.mix,)] + [inputs.stems[a] for a in SEPARATED] + [(inputs.separated[a],) for a in SEPARATED]
    mix_energy = 0.0
    delivered_energy, separation_energy, residual_peak = (np.zeros(len(NULL_SUMS)) for _ in range(3))
    frames = 0
    # Quarter blocks: nine files at once, and float64 residuals, since float32 rounding (~-160 dBFS) would
    # show in a residual that should sit at the 24-bit floor.
    for mix, *stems in iter_aligned(groups, BLOCK_FRAMES // 4):
        delivered = dict(zip(SEPARATED, stems[: len(SEPARATED)]))
        separated = dict(zip(SEPARATED, stems[len(SEPARATED) :]))
        mix64 = mix.astype(np.float64)
        mix_energy += float(np.square(mix64).sum())
        for index, assets in enumerate(NULL_SUMS):
            residual = _residual(mix64, [delivered[a] for a in assets])
            delivered_energy[index] += float(np.square(residual).sum())
            separation_energy[index] += float(np.square(_residual(mix64, [separated[a] for a in assets])).sum())
            residual_peak[index] = max(residual_peak[index], float(np.abs(residual).max()))
        frames += len(mix)
        progress.advance(len(mix))
    return [
        NullTest(
            stems=assets,
            delivered_depth_db=_depth_db(mix_energy, delivered_energy[index]),
            separation_depth_db=_depth_db(mix_energy, separation_energy[index]),
            residual_peak_dbfs=_db(residual_peak[index]),
            frames=frames,
        )
        for index, assets in enumerate(NULL_SUMS)
    ]


def _residual(mix64: np.ndarray, stems: list[np.ndarray]) -> np.ndarray:
    """``mix64`` minus each stem in turn, in float64 (a float32 sum of the stems would round first)."""
    residual = mix64.copy()
    for stem in stems:
        residual -= stem
    return residual


def _depth_db(signal_energy: float, residual_energy: float) -> float:
    """How far the residual lies below the signal, in dB: inf when it is exactly zero."""
    if residual_energy == 0.0:
        return math.inf
    if signal_energy == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / residual_energy)


def _db(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf


def picture_duration_s(source: Path | None) -> float | None:
    """Duration of the first picture stream of ``source`` (cover art aside); None when there is none."""
    if source is None or not source.is_file():
        return None
    command = [
        str(find_tool("ffprobe")), "-v", "error", "-select_streams", "V:0", "-of", "json",
        "-show_entries", "stream=duration,duration_ts,time_base:stream_tags=DURATION", str(source),
    ]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    streams = json.loads(done.stdout or "{}").get("streams", []) if done.returncode == 0 else []
    if not streams:
        return None
    stream = streams[0]
    if "duration_ts" in stream and "time_base" in stream:
        return float(int(stream["duration_ts"]) * Fraction(stream["time_base"]))
    if "duration" in stream:
        return float(stream["duration"])
    tag = stream.get("tags", {}).get("DURATION")  # Matroska: 'HH:MM:SS.nnnnnnnnn'
    if tag is None:
        return None
    hours, minutes, seconds = tag.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# --- dialogue left in the M&E -----------------------------------------------------------------


def vad_signals(block: np.ndarray, layout: str) -> np.ndarray:
    """Where dialogue sits: the phantom centre (L+R)/2, and C in 5.1/7.1; shape (frames, signals).

    The surrounds and LFE rarely carry dialogue and would only dilute it.
    """
    if layout == "mono":
        return block[:, :1]
    centre = 0.5 * (block[:, 0] + block[:, 1])
    if layout == "stereo":
        return centre[:, None]  # shape: (frames, 1)
    return np.stack([block[:, 2], centre], axis=1)  # shape: (frames, 2)


def detect_speech(files: Sequence[Path], layout: str, progress: ProgressHook) -> list[SpeechSpan]:
    """Speech spans in a stem, by Silero VAD on its centre signals (the highest probability of them per window)."""
    with _one_torch_thread():
        probabilities, vad_frames = _speech_probabilities(files, layout, progress)
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    spans = get_speech_timestamps_from_probs(
        probabilities.tolist(), sampling_rate=_VAD_RATE, threshold=_VAD_THRESHOLD,
        min_speech_duration_ms=_MIN_SPEECH_MS, min_silence_duration_ms=_MIN_SILENCE_MS,
        speech_pad_ms=_SPEECH_PAD_MS, audio_length_samples=vad_frames,
    )
    return [
        SpeechSpan(
            start_s=s["start"] / _VAD_RATE, end_s=s["end"] / _VAD_RATE,
            peak_probability=float(probabilities[s["start"] // _VAD_WINDOW : -(-s["end"] // _VAD_WINDOW)].max()),
        )
        for s in spans
    ]


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Torch on one thread, then the caller's setting back.

    Silero's small steps run ~70x slower on two threads than on one here
    (thread hand-off per step; its package sets one thread on import for the
    same reason, for the whole process, which this undoes afterwards).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _load_vad() -> torch.jit.ScriptModule:
    """Silero VAD from the weights inside the silero-vad package (no download)."""
    from silero_vad import load_silero_vad

    return load_silero_vad()


def _speech_probabilities(files: Sequence[Path], layout: str, progress: ProgressHook) -> tuple[np.ndarray, int]:
    """Speech probability per 512-sample window at 16 kHz (max over the centre signals), and the 16 kHz length."""
    model = _load_vad()
    decimator = _Decimator()
    cutter = _LaneCutter(signals=1 if layout in ("mono", "stereo") else 2)
    lanes: list[np.ndarray] = []
    chunks: list[np.ndarray] = []
    for (block,) in iter_aligned([files]):
        lanes += cutter.push(decimator(vad_signals(block, layout)))
        if len(lanes) * cutter.signals >= _BATCH_ROWS:
            chunks.append(_run_lanes(model, lanes))
            lanes = []
        progress.advance(len(block))
    lanes += cutter.flush()
    if lanes:
        chunks.append(_run_lanes(model, lanes))
    windows = -(-cutter.samples // _VAD_WINDOW)
    probabilities = np.concatenate(chunks)[:windows] if chunks else np.zeros(0, dtype=np.float32)
    return probabilities, cutter.samples


class _LaneCutter:
    """Cuts a 16 kHz stream into lanes of _LANE_WINDOWS windows, each led by the _PREROLL_WINDOWS before it."""

    def __init__(self, signals: int) -> None:
        self.lane_samples = _LANE_WINDOWS * _VAD_WINDOW
        self.preroll_samples = _PREROLL_WINDOWS * _VAD_WINDOW
        self.signals = signals
        self.pending = np.zeros((0, signals), dtype=np.float32)
        self.preroll = np.zeros((self.preroll_samples, signals), dtype=np.float32)  # silence before the start
        self.samples = 0

    def push(self, samples: np.ndarray) -> list[np.ndarray]:
        """Lanes completed by ``samples`` (shape (n, signals)); each lane shape (preroll + lane, signals)."""
        self.samples += len(samples)
        self.pending = np.concatenate([self.pending, samples])
        lanes = []
        while len(self.pending) >= self.lane_samples:
            lane, self.pending = self.pending[: self.lane_samples], self.pending[self.lane_samples :]
            lanes.append(np.concatenate([self.preroll, lane]))
            self.preroll = lane[-self.preroll_samples :]
        return lanes

    def flush(self) -> list[np.ndarray]:
        """The last, partial lane padded with silence (none when the stream ended on a lane boundary)."""
        if not len(self.pending):
            return []
        lane = np.zeros((self.lane_samples, self.pending.shape[1]), dtype=np.float32)
        lane[: len(self.pending)] = self.pending
        self.pending = self.pending[:0]
        return [np.concatenate([self.preroll, lane])]


def _run_lanes(model: torch.jit.ScriptModule, lanes: list[np.ndarray]) -> np.ndarray:
    """Speech probabilities of consecutive lanes, pre-roll dropped; shape (lanes x _LANE_WINDOWS,)."""
    signals = lanes[0].shape[1]
    batch = torch.from_numpy(np.concatenate([lane.T for lane in lanes]))  # shape: (lanes * signals, samples)
    model.reset_states()
    with torch.inference_mode():
        steps = [model(batch[:, i : i + _VAD_WINDOW], _VAD_RATE)[:, 0] for i in range(0, batch.shape[1], _VAD_WINDOW)]
    probabilities = torch.stack(steps, dim=1).numpy()[:, _PREROLL_WINDOWS:]  # shape: (lanes * signals, windows)
    per_signal = probabilities.reshape(len(lanes), signals, -1)  # shape: (lanes, signals, windows)
    return per_signal.max(axis=1).reshape(-1)  # shape: (lanes * windows,)


class _Decimator:
    """48 kHz -> 16 kHz in blocks: anti-alias FIR whose state carries across blocks, then every third sample."""

    def __init__(self) -> None:
        self.state: np.ndarray | None = None
        self.position = 0

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """``block`` shape (frames, signals) at 48 kHz -> (about frames / 3, signals) at 16 kHz."""
        if self.state is None:
            self.state = np.zeros((len(_ANTI_ALIAS) - 1, block.shape[1]), dtype=np.float32)
        filtered, self.state = lfilter(_ANTI_ALIAS, [1.0], block, axis=0, zi=self.state)
        first = -self.position % _DECIMATION  # keep the 48 kHz sample grid across blocks
        self.position += len(block)
        return filtered[first::_DECIMATION].astype(np.float32)


# --- checks -----------------------------------------------------------------------------------


def all_checks(result: QcResult) -> list[Check]:
    """Every check, stem by stem, then the null test and the M&E's dialogue."""
    checks: list[Check] = []
    for asset, scan in result.scans.items():
        checks.append(format_check(asset, scan, result.inputs.layout_of(asset)))
        checks.append(length_check(asset, scan, result.inputs.media))
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


# --- qc.json ----------------------------------------------------------------------------------


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
        "stems": {asset: _stem_json(scan, result.loudness[asset]) for asset, scan in result.scans.items()},
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


def _stem_json(scan: StemScan, loudness: Loudness) -> dict:
    return {
        "files": [p.name for p in scan.files],
        "frames": list(scan.frames),
        "channels": scan.channels,
        "format": scan.subtype,
        **_loudness_json(loudness),
        "sample_peak_dbfs": [_db(float(p)) for p in scan.peak],
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
