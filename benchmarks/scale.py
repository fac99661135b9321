"""Scale benchmark: the whole pipeline on 5.1 programmes of 10, 60 and 120 minutes.

    python benchmarks/scale.py                  (10, 60 and 120 minutes: hours)
    python benchmarks/scale.py --minutes 1 2    (a quick check)
    python benchmarks/scale.py --keep           (keep each run's output folder)

Each programme is a .mov with a 160x90 mpeg4 picture and one 5.1 stream of
48 kHz 24-bit PCM, streamed by ffmpeg from the example's 30-s stems
(examples/make_example.py): real two-speaker speech on C, music (a 20-s
loop, so it drifts against the speech) on L/R and quieter on Ls/Rs,
effects on L/R and Ls/Rs, and the music and effects under 120 Hz on LFE.
Programmes are made once into .cache/scale/ and reused; output folders are
deleted after each run unless --keep. A programme whose run the disk cannot
hold (judged from the previous, shorter one) is refused before it starts.

The pipeline runs as four `dubprep run --from S --until S` processes, one
per stage, on one output folder: together they are the whole pipeline, and
each process's figures are that stage's. Per stage it prints:
  - stage s: the engine's own time for the stage (from OUT/dubprep.log);
  - RTF: real-time factor, stage seconds per programme second (lower is faster);
  - process s: the process's wall time, start-up and model loading included;
  - cores used: CPU seconds (user + system, every thread, ffmpeg included)
    per wall second of the process;
  - peak RSS: the largest single process of the tree (the kernel's high-water
    mark from wait4, which covers dubprep and the ffmpeg it waited for), and
    the whole tree's RSS summed (psutil, sampled every 0.1 s: may miss a
    spike shorter than that, but counts dubprep and ffmpeg alive together);
  - MiB/min: what the stage left in the output folder, per programme minute;
  - load: the machine's 1-minute load average when the stage ended (the
    machine may be shared: speed figures are only clean at a load under
    its core count).
Then the disk: GiB per programme minute of the whole output folder, of the
deliverables alone (what is left after --clean-work), of one mono speaker
stem, and each projected to a 2-hour film. Then it compares the longest programme with the shortest: RTF and peak RSS
should grow by at most 20 % (nothing grows with length) and stay under 4 GB.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from dubprep.engine import LOG_NAME
from dubprep.stage import stages
from dubprep.tools import find_tool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from make_example import make_example  # noqa: E402  (a script folder, not a package)

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "scale"
DUBPREP = Path(sys.executable).parent / "dubprep"
SAMPLE_RATE = 48_000
SPEECH_LOOP_S = 30  # the whole example: speech, and effects placed between its lines
MUSIC_LOOP_S = 20  # one cycle of the example's four chords
RSS_LIMIT_BYTES = 4_000_000_000
TOLERANCE = 0.20
_POLL_S = 0.1
# c0 speech (mono), c1/c2 music L/R, c3/c4 effects L/R -> 5.1 (FL FR FC LFE BL BR).
_PAN_5_1 = "5.1|FL=c1+c3|FR=c2+c4|FC=c0|LFE=0.5*c1+0.5*c2+0.5*c3+0.5*c4|BL=0.5*c1+0.4*c3|BR=0.5*c2+0.4*c4"


@dataclass(frozen=True)
class StageRun:
    """One stage's process; RSS in bytes."""

    stage: str
    stage_s: float
    process_s: float
    cpu_s: float
    largest_rss_bytes: int
    tree_rss_bytes: int
    written_bytes: int  # what the stage added to the output folder
    load_1min: float

    @property
    def peak_rss_bytes(self) -> int:
        """The higher of the two peaks: what the machine must have free."""
        return max(self.largest_rss_bytes, self.tree_rss_bytes)


def example_stems() -> dict[str, Path]:
    """The example's speech, music and effects stems (stereo float32, 30 s), made once."""
    folder = CACHE / "stems"
    stems = {name: folder / f"{name}.wav" for name in ("speech", "music", "effects")}
    if not all(path.is_file() for path in stems.values()):
        make_example(folder)
    return stems


def programme(minutes: float, stems: dict[str, Path]) -> Path:
    """The cached ``minutes``-long 5.1 .mov, streamed by ffmpeg when missing."""
    path = CACHE / f"programme-{minutes:g}min.mov"
    if path.is_file():
        return path
    seconds = minutes * 60
    graph = (
        f"[0:a]aloop=loop=-1:size={SPEECH_LOOP_S * SAMPLE_RATE},pan=mono|c0=0.5*c0+0.5*c1[dx];"
        f"[1:a]atrim=end={MUSIC_LOOP_S},aloop=loop=-1:size={MUSIC_LOOP_S * SAMPLE_RATE}[mx];"
        f"[2:a]aloop=loop=-1:size={SPEECH_LOOP_S * SAMPLE_RATE}[fx];"
        f"[dx][mx][fx]amerge=inputs=3,pan={_PAN_5_1},lowpass=f=120:c=LFE[a]"
    )
    partial = path.with_name(path.name + ".part")
    command = [
        str(find_tool("ffmpeg")), "-nostdin", "-v", "error", "-y",
        "-i", str(stems["speech"]), "-i", str(stems["music"]), "-i", str(stems["effects"]),
        "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=24000/1001",
        "-filter_complex", graph, "-map", "3:v", "-map", "[a]", "-t", f"{seconds}",
        "-c:v", "mpeg4", "-pix_fmt", "yuv420p", "-c:a", "pcm_s24le", "-f", "mov", str(partial),
    ]
    subprocess.run(command, check=True)
    os.replace(partial, path)
    return path


def run_stage(stage: str, media: Path, output: Path) -> StageRun:
    """``dubprep run --from stage --until stage`` in its own process, measured."""
    command = [str(DUBPREP), "run", "--quiet", "--input", str(media), "--output", str(output),
               "--from", stage, "--until", stage]
    before_bytes = folder_bytes(output) if output.is_dir() else 0
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        sampler = _TreeSampler(process.pid)
        sampler.start()
        # wait4, not Popen.wait: it returns the rusage of this child and the children it waited for.
        _, status, usage = os.wait4(process.pid, 0)
        process_s = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.join()
        stderr.seek(0)
        messages = stderr.read().decode(errors="replace")
    # Exit 3: every file written, QC flagged the synthetic mix; the timing still counts.
    if process.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{messages}")
    return StageRun(
        stage=stage,
        stage_s=_engine_seconds(output, stage),
        process_s=process_s,
        cpu_s=usage.ru_utime + usage.ru_stime,
        largest_rss_bytes=usage.ru_maxrss * 1024,  # KiB on Linux
        tree_rss_bytes=sampler.peak_bytes,
        written_bytes=folder_bytes(output) - before_bytes,
        load_1min=os.getloadavg()[0],
    )


class _TreeSampler(threading.Thread):
    """Polls the summed RSS of a process and all its descendants until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._root = psutil.Process(pid)
        self.peak_bytes = 0

    def run(self) -> None:
        while self._root.is_running():
            total = 0
            for process in [self._root, *self._children()]:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:  # exited (or a zombie) since it was listed
                    continue
            self.peak_bytes = max(self.peak_bytes, total)
            time.sleep(_POLL_S)

    def _children(self) -> list[psutil.Process]:
        try:
            return self._root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []


def _engine_seconds(output: Path, stage: str) -> float:
    """The stage's time from the engine's last 'STAGE: done in N s' log line."""
    found = re.findall(rf"{stage}: done in ([\d.]+) s", (output / LOG_NAME).read_text(encoding="utf-8"))
    return float(found[-1])


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def report_runs(runs: list[StageRun], programme_s: float) -> None:
    print(f"    {'stage':<9} {'stage s':>8} {'RTF':>7} {'process s':>9} {'cores used':>10} "
          f"{'peak RSS largest MiB':>21} {'peak RSS tree MiB':>18} {'MiB/min':>8} {'load':>5}")
    for run in runs:
        print(f"    {run.stage:<9} {run.stage_s:8.1f} {run.stage_s / programme_s:7.3f} {run.process_s:9.1f} "
              f"{run.cpu_s / run.process_s:10.2f} {run.largest_rss_bytes / 2**20:21.0f} "
              f"{run.tree_rss_bytes / 2**20:18.0f} {run.written_bytes / 2**20 / (programme_s / 60):8.1f} "
              f"{run.load_1min:5.1f}")
    stage_s = sum(run.stage_s for run in runs)
    process_s = sum(run.process_s for run in runs)
    print(f"    {'total':<9} {stage_s:8.1f} {stage_s / programme_s:7.3f} {process_s:9.1f} "
          f"{sum(run.cpu_s for run in runs) / process_s:10.2f}")


def report_disk(output: Path, minutes: float) -> None:
    """GiB per programme minute: everything, the deliverables alone, a mono speaker stem; and for a 2-hour film."""
    deliverables = output / "deliverables"
    speakers = sorted(deliverables.glob("*_DX-SPK*.wav"))
    sizes = {
        "whole output folder (resume kept)": folder_bytes(output),
        "deliverables only (after --clean-work)": folder_bytes(deliverables),
        "work folder": folder_bytes(output / "work"),
        "one mono speaker stem": speakers[0].stat().st_size if speakers else 0,
    }
    print(f"    disk ({len(speakers)} speakers):  GiB per programme minute   projected for 120 min (GiB)")
    for label, size in sizes.items():
        per_minute = size / 2**30 / minutes
        print(f"      {label:<40} {per_minute:8.4f}   {per_minute * 120:8.2f}")


def compare(short: tuple[float, list[StageRun]], long: tuple[float, list[StageRun]]) -> None:
    """Per stage: RTF and peak RSS of the long programme against the short one."""
    (short_min, short_runs), (long_min, long_runs) = short, long
    print(f"\n{long_min:g} min against {short_min:g} min (ratio; grown by at most {TOLERANCE:.0%}? "
          f"long programme's peak RSS under {RSS_LIMIT_BYTES / 1e9:g} GB?)")
    for before, after in zip(short_runs, long_runs, strict=True):
        rtf_ratio = (after.stage_s / long_min) / (before.stage_s / short_min)
        rss_ratio = after.peak_rss_bytes / before.peak_rss_bytes
        # Only growth counts: a long programme amortising start-up over more minutes is no fault.
        within = rtf_ratio <= 1 + TOLERANCE and rss_ratio <= 1 + TOLERANCE
        print(f"    {after.stage:<9} RTF x{rtf_ratio:.2f}  peak RSS x{rss_ratio:.2f}  "
              f"grown at most {TOLERANCE:.0%}: {'yes' if within else 'NO'}  "
              f"under 4 GB: {'yes' if after.peak_rss_bytes < RSS_LIMIT_BYTES else 'NO'}")


def check_space(output: Path, needed_bytes: int) -> None:
    """Refuse to start a run the disk cannot hold."""
    free = shutil.disk_usage(output.parent).free
    if free < needed_bytes:
        raise SystemExit(f"{output.parent}: {free / 1e9:.1f} GB free, the run needs about "
                         f"{needed_bytes / 1e9:.1f} GB; free space or run fewer --minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60, 120], help="programme lengths")
    parser.add_argument("--keep", action="store_true", help="keep each run's output folder")
    args = parser.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    stems = example_stems()
    results: list[tuple[float, list[StageRun]]] = []
    output_bytes_per_s = 0.0
    for minutes in sorted(args.minutes):
        made = time.perf_counter()
        media = programme(minutes, stems)
        print(f"\n{minutes:g}-minute 5.1 programme: {media} ({media.stat().st_size / 2**20:.0f} MiB, "
              f"ready in {time.perf_counter() - made:.0f} s)")
        output = CACHE / f"out-{minutes:g}min"
        shutil.rmtree(output, ignore_errors=True)
        # 10 % over what the last, shorter programme's outputs took per second.
        check_space(output, int(output_bytes_per_s * minutes * 60 * 1.1))
        # The default project's stages: an optional one (transcribe) runs only when a project asks for it.
        runs = [run_stage(stage.name, media, output) for stage in stages() if not stage.optional]
        report_runs(runs, minutes * 60)
        report_disk(output, minutes)
        output_bytes_per_s = folder_bytes(output) / (minutes * 60)
        print(f"    outputs: {output_bytes_per_s * minutes * 60 / 2**30:.2f} GiB in {output}")
        if not args.keep:
            shutil.rmtree(output)
        results.append((minutes, runs))
    if len(results) > 1:
        compare(results[0], results[-1])


if __name__ == "__main__":
    main()
