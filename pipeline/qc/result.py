"""What QC measures and decides: its limits, inputs, measurements, checks and result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from dubprep.media import STEMS, MediaInfo
from dubprep.stems import WorkStems
from dubprep.timecode import FrameRate

SEPARATED = STEMS  # checked as delivered and as the work files make them
NULL_SUMS = (("DX", "ME"), ("DX", "MX", "FX"))  # stems that re-sum to the mix


class QcLimits(BaseModel):
    """Pass/fail limits of the delivery QC.

    ``me_true_peak_max_dbtp``: Netflix's M&E limit (EBU R128 uses the same).
    ``stem_true_peak_max_dbtp``: every other stem (DX, MX, FX, DX-GUIDE,
    DX-<speaker>); None reports without checking, since no delivery spec
    limits these stems and a hot one only restates a hot mix (levels are
    never changed). ``null_test_min_db``: mix - (DX + ME) and mix - (DX + MX
    + FX) from the delivered stems, each in dB below the mix's RMS. 24-bit
    stems re-sum within their quantisation, a residual near -146 dBFS RMS
    (-144.5 for three stems): 111 dB below the tests' -33 dBFS mix and
    still 90 dB below a -54 dBFS one. What the test is for lands far lower:
    a 0.01 dB gain change on one stem about 60-65 dB, DX one sample late 27
    dB, ME through 44.1 kHz and back 20 dB. 16-bit stems cannot reach 90
    (floor near -98 dBFS RMS, 65 dB below the tests' mix): use about 45 for them.
    ``dialogue_in_me_max_s``: seconds of detected speech the M&E may hold
    (walla and efforts stay in an M&E and can read as speech; the spans are
    listed for review). ``picture_tolerance_frames``: how far a stem's
    duration may be from the picture's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    me_true_peak_max_dbtp: float = -1.0
    stem_true_peak_max_dbtp: float | None = None
    null_test_min_db: float = Field(default=90.0, gt=0.0)
    dialogue_in_me_max_s: float = Field(default=2.0, ge=0.0)
    picture_tolerance_frames: int = Field(default=1, ge=0)


@dataclass(frozen=True)
class QcInputs:
    """What QC reads.

    ``stems`` maps each asset (ME, MX, FX, DX, DX-GUIDE, DX-<speaker>) to
    its delivered files: one file in the stem's layout, or one mono file per
    channel in channel order (L R C LFE Ls Rs). ``layouts`` gives the layout
    of a stem not in the programme's (the mono DX-GUIDE and speaker stems).
    ``work`` holds extract's mix and separate's DX and MX (ME and FX are
    computed from them: :mod:`dubprep.stems`).
    ``start_timecode`` and ``rate`` place the programme on the picture's
    timeline (as the stems' bext says). ``source`` is the programme's media
    file, for the picture's duration; None or a file without picture skips
    that comparison. ``me_words`` is the transcribe stage's
    ``words_in_me.json`` (None when the project does not transcribe).
    ``speakers`` names the per-speaker stems: checked for format, length
    and clipping only, since a loudness and true-peak pass per speaker
    would cost a pass of the programme per cast member and no delivery
    spec limits them.
    """

    work_dir: Path
    stems: dict[str, tuple[Path, ...]]
    work: WorkStems
    media: MediaInfo
    turns: Path
    start_timecode: str
    rate: FrameRate
    source: Path | None = None
    layouts: dict[str, str] = field(default_factory=dict)
    me_words: Path | None = None
    speakers: tuple[str, ...] = ()

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
    """Residuals of mix - (sum of ``stems``): delivered stems, and the work stems (for diagnosis)."""

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
    loudness: dict[str, Loudness]  # not the speaker stems'
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


def amplitude_db(amplitude: float) -> float:
    """20 log10 of ``amplitude``; -inf for silence."""
    return 20.0 * math.log10(amplitude) if amplitude > 0 else -math.inf
