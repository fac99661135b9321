"""The delivery QC's pass/fail limits: part of the assemble stage's parameters.

Apart from the QC itself (:mod:`dubprep.qc`), so a project validates without
loading what QC measures with (torch, scipy, matplotlib).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
