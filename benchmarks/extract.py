"""Extract benchmark: a 10-minute 5.1 programme decoded to the 48 kHz mix, stored as 24-bit FLAC (mix.flac).

    python benchmarks/extract.py

Two sources, each with a 160x90 mpeg4 picture (which extract must skip, not
decode) and one 5.1 audio stream of a different tone per channel:
  - .mov, pcm_s24le at 48 kHz: the usual studio delivery, no resampling;
  - .mp4, AAC at 44.1 kHz: a lossy decode plus resampling to 48 kHz.
Prints speed as multiples of real time, peak RSS and the size of mix.flac; making the media
(ffmpeg, about 20-30 s each) is not timed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import run_stage
from dubprep.stems import MIX
from media_factory import make_media

DURATION_S = 600.0
CASES = {
    "5.1 pcm_s24le 48 kHz .mov": {"suffix": ".mov", "codec": "pcm_s24le", "sample_rate": 48_000},
    "5.1 aac 44.1 kHz .mp4": {"suffix": ".mp4", "codec": "aac", "sample_rate": 44_100},
}


def main() -> None:
    print(f"extract: {DURATION_S / 60:.0f}-minute programme, 5.1, with picture")
    for label, case in CASES.items():
        with tempfile.TemporaryDirectory(prefix="dubprep-bench-") as tmp:
            made = time.perf_counter()
            media = make_media(
                Path(tmp) / f"programme{case['suffix']}", layout="5.1", duration_s=DURATION_S,
                codec=case["codec"], sample_rate=case["sample_rate"],
            )
            size_mib = media.stat().st_size / 2**20
            print(f"  {label}: {size_mib:.0f} MiB, made in {time.perf_counter() - made:.0f} s")
            run = run_stage("dubprep.stages.extract.ExtractStage", {}, {}, media, Path(tmp) / "work")
            mix_mib = (Path(tmp) / "work" / MIX).stat().st_size / 2**20
            print(f"    {run.report(DURATION_S)}; {MIX} {mix_mib:.0f} MiB")


if __name__ == "__main__":
    main()
