"""Separation benchmark: dialogue, music, effects and M&E on mixtures with known stems.

    python benchmarks/separation.py [--clips 10] [--seed 1000] [--param KEY=VALUE ...]

Builds 60-s, 48 kHz stereo mixtures in the Divide-and-Remaster style from
Debian-packaged recordings (benchmarks/sepdata.py), runs the separate stage
on each (the real stage, in a fresh process; default parameters unless
``--param`` sets one, e.g. ``--param stereo_search=left_right``) and prints
per stem:
  - global SDR, 10 log10(sum s^2 / sum (s - s_hat)^2) over both channels,
    per file, averaged over files (as in the Sound Demixing Challenge);
  - SI-SDR, per channel, averaged over channels and files;
for three estimates:
  - mixture: every stem estimated as the mix itself;
  - trivial: dialogue = the stage's DX, M&E = mix - DX, and music = effects
    = (mix - DX) / 2 (the split to beat);
  - dubprep: the stage's DX, MX, FX and ME.
Then speed (wall clock as a fraction of the programme's duration, and CPU
seconds per channel-second) with the load average, and peak RSS. Numbers
only, no assertions; timings are noisy while other work runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from common import StageRun, run_stage
from dubprep.stages.separate import SeparateStage
from dubprep.stems import DX, MIX, MX, WorkStems
from sepdata import CLIP_S, PACKAGES, SR, find_sources, make_clip, unpacked_root, write_clip

STEMS = ("dialogue", "music", "effects", "M&E")
ESTIMATES = ("mixture", "trivial", "dubprep")


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR over all samples of (frames, channels), in dB."""
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def si_sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR per channel of (frames, channels), averaged, in dB."""
    scores = []
    for ref, est in zip(reference.T, estimate.T, strict=True):
        target = ref * (np.dot(est, ref) / np.dot(ref, ref))
        scores.append(10 * np.log10(np.sum(target**2) / np.sum((target - est) ** 2)))
    return float(np.mean(scores))


def estimates(truth: dict[str, np.ndarray], stems: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Estimate per method and stem, each (frames, channels)."""
    half_me = (truth["mix"] - stems["DX"]) / 2
    return {
        "mixture": dict.fromkeys(STEMS, truth["mix"]),
        "trivial": {"dialogue": stems["DX"], "music": half_me, "effects": half_me, "M&E": stems["ME"]},
        "dubprep": {"dialogue": stems["DX"], "music": stems["MX"], "effects": stems["FX"], "M&E": stems["ME"]},
    }


def score(truth: dict[str, np.ndarray], stems: dict[str, np.ndarray]) -> dict[tuple[str, str, str], float]:
    """{(metric, method, stem): dB} for one clip."""
    references = {"dialogue": truth["speech"], "music": truth["music"], "effects": truth["effects"]}
    references["M&E"] = truth["music"] + truth["effects"]
    out = {}
    for method, guesses in estimates(truth, stems).items():
        for stem in STEMS:
            out["SDR", method, stem] = sdr_db(references[stem], guesses[stem])
            out["SI-SDR", method, stem] = si_sdr_db(references[stem], guesses[stem])
    return out


def build(clips: int, seed: int, tmp: Path) -> list[str]:
    """Make and write every clip into ``tmp``/clipNN; return a line per clip saying how it was made.

    Run in its own process: the decoded sources take over a GB, and Linux
    would count the parent's memory in the peak RSS of every stage process
    started after it (the high-water mark survives fork + exec).
    """
    sources = find_sources(unpacked_root())
    lines = []
    for index in range(clips):
        clip = make_clip(sources, index, seed + index)
        write_clip(clip, tmp / f"clip{index:02d}")
        music = sources.music[index % len(sources.music)][0]
        levels = " ".join(f"{name} {lufs:.1f}" for name, lufs in clip.loudness_lufs.items())
        lowered = f", all lowered {-clip.headroom_db:.1f} dB against clipping" if clip.headroom_db < 0 else ""
        lines.append(f"  clip {index}: music {music.parent.name}/{music.name}; LUFS {levels}{lowered}")
    return lines


def separate(folder: Path, params: dict) -> tuple[dict[str, np.ndarray], StageRun]:
    """Run the separate stage on the clip in ``folder``; return its stems (frames, channels) and costs."""
    inputs = {MIX: folder / MIX, "media.json": folder / "media.json"}
    stage = "dubprep.stages.separate.SeparateStage"
    run = run_stage(stage, params, inputs, folder / "mix.wav", folder / "work")
    work = WorkStems.of({**inputs, DX: folder / "work" / DX, MX: folder / "work" / MX})
    return work.read_all(("DX", "ME", "MX", "FX")), run


def _read(path: Path) -> np.ndarray:
    return sf.read(str(path), dtype="float32")[0]


def print_header(clips: int, seed: int) -> None:
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"separation: {clips} clips of {CLIP_S:.0f} s, 48 kHz stereo, seeds {seed}..{seed + clips - 1}")
    print("  speech centre at -17 LUFS, music (as mastered) -24, effects (random pans) -21, each +-2 LU")
    print("sources (Debian packages, apt-get download + dpkg -x, not installed):")
    for name, what in PACKAGES.items():
        print(f"  {name}: {what}")


def print_table(rows: list[dict[tuple[str, str, str], float]]) -> None:
    for metric in ("SDR", "SI-SDR"):
        print(f"\n{metric} (dB, mean over clips)".ljust(32) + "".join(f"{stem:>10s}" for stem in STEMS))
        for method in ESTIMATES:
            means = [np.mean([row[metric, method, stem] for row in rows]) for stem in STEMS]
            print(f"  {method:30s}" + "".join(f"{m:10.2f}" for m in means))


def print_speed(runs: list[StageRun], loads: list[float]) -> None:
    wall_rtf = [run.wall_s / CLIP_S for run in runs]
    cpu_per_channel = [run.cpu_s / (2 * CLIP_S) for run in runs]
    print(
        f"\nspeed (stereo, one thread per dialogue stream, {os.cpu_count()} CPUs): real-time factor "
        f"{np.median(wall_rtf):.3f} median (min {min(wall_rtf):.3f}); CPU seconds per channel-second "
        f"{np.median(cpu_per_channel):.3f}; 1-min load average after the runs {min(loads):.1f}..{max(loads):.1f}"
    )
    print(
        f"peak RSS of the stage process: {max(run.peak_rss_mib for run in runs):.0f} MiB "
        f"({max(run.start_rss_mib for run in runs):.0f} MiB before the stage)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first clip")
    parser.add_argument("--param", action="append", default=[], help="stage parameter KEY=VALUE (YAML value)")
    args = parser.parse_args()
    params = {key: yaml.safe_load(value) for key, _, value in (p.partition("=") for p in args.param)}
    print_header(args.clips, args.seed)
    print(f"separate stage parameters: {SeparateStage.validate_params(params)!r}")
    rows, runs, loads = [], [], []
    with tempfile.TemporaryDirectory(prefix="dubprep-sepbench-") as tmp:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            print("\n".join(pool.apply(build, (args.clips, args.seed, Path(tmp)))))
        for index in range(args.clips):
            folder = Path(tmp) / f"clip{index:02d}"
            stems, run = separate(folder, params)
            truth = {name: _read(folder / f"{name}.wav") for name in ("mix", "speech", "music", "effects")}
            rows.append(score(truth, stems))
            runs.append(run)
            loads.append(os.getloadavg()[0])
            scores = " ".join(f"{stem} {rows[-1]['SDR', 'dubprep', stem]:.2f}" for stem in STEMS)
            print(f"  clip {index}: SDR {scores}; {run.wall_s:.1f} s wall, load {loads[-1]:.1f}")
    print_table(rows)
    print_speed(runs, loads)


if __name__ == "__main__":
    main()
