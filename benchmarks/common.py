"""Shared by the benchmarks: run one stage in a fresh process and measure it.

A fresh (spawned) process per run means its peak RSS is that stage's and
not left over from making the test media or from an earlier stage. Peak RSS
is reported separately for the Python process and for the largest tool it
ran (ffmpeg), since both hold memory at once.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dubprep.stage import StageContext

# The benchmarks make their media with the tests' factory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


@dataclass(frozen=True)
class StageRun:
    """What one stage run cost; RSS in MiB (2**20 bytes)."""

    wall_s: float
    cpu_s: float
    start_rss_mib: float
    peak_rss_mib: float
    tool_peak_rss_mib: float

    def report(self, programme_s: float) -> str:
        return (
            f"{programme_s / self.wall_s:7.1f}x real time  wall {self.wall_s:6.2f} s  cpu {self.cpu_s:6.2f} s  "
            f"python peak RSS {self.peak_rss_mib:6.0f} MiB (before the stage {self.start_rss_mib:.0f})  "
            f"ffmpeg peak RSS {self.tool_peak_rss_mib:5.0f} MiB"
        )


def run_stage(stage: str, params: dict, inputs: dict[str, Path], media: Path, work_dir: Path) -> StageRun:
    """Run the stage class named ``stage`` ('module.Class') in a spawned process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (stage, params, inputs, media, work_dir))


def _measure(stage: str, params: dict, inputs: dict[str, Path], media: Path, work_dir: Path) -> StageRun:
    module, _, name = stage.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    work_dir.mkdir(parents=True, exist_ok=False)
    ctx = StageContext(cls.validate_params(params), inputs, work_dir, media, logging.getLogger(f"bench.{cls.name}"))
    start_rss_mib = _current_rss_mib()
    wall_start, cpu_start = time.perf_counter(), _cpu_s()
    cls().run(ctx)
    wall_s, cpu_s = time.perf_counter() - wall_start, _cpu_s() - cpu_start
    return StageRun(
        wall_s=wall_s,
        cpu_s=cpu_s,
        start_rss_mib=start_rss_mib,
        # ru_maxrss is in KiB on Linux.
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        tool_peak_rss_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (ffmpeg), user plus system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _current_rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20
