"""Evaluate cinesep against DeepFilterNet3 on mixtures made only from the RESERVED packages.

    python -m training.evaluate [--clips 6] [--seed 5000] [--threads 2]

The reserved packages (training.sources.RESERVED_PACKAGES: other speakers
and languages, other composers, other games' effects) never feed training,
so these clips measure how the network does on sources it has not heard.
Clips are built exactly as benchmarks/separation.py builds its own (60 s,
48 kHz stereo, Divide-and-Remaster levels; benchmarks/sepdata.py) and scored
the same way (global SDR and SI-SDR per stem). Per clip, three systems:

- dfn3: the separate stage as it is (DeepFilterNet3 DX, spectral MX/FX);
- trivial: dfn3's DX, and music = effects = half of mix - DX (the split to beat);
- cinesep: the shipped weights (or ``--weights FILE --sha256 HEX``).

Then cinesep's speed: wall-clock real-time factor with ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dubprep.audio_io import iter_blocks
from dubprep.stages.backends.cinesep import CineSepStream, load_net, shipped_weights
from dubprep.stages.backends.cinesep_net import CineSepNet
from dubprep.stages.backends.separation import DIALOGUE, EFFECTS, MUSIC
from training.sources import RESERVED_PACKAGES, fetch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from sepdata import CLIP_S, Sources, make_clip, write_clip  # noqa: E402
from separation import separate, sdr_db, si_sdr_db  # noqa: E402

EVAL_PACKAGES = (
    "asterisk-core-sounds-fr-g722", "asterisk-core-sounds-it-g722", "asterisk-core-sounds-ru-g722",
    "asterisk-core-sounds-es-g722", "fretsonfire-songs-sectoid", "drascula-music", "asc-music",
    "colobot-common-sounds", "freedroid-data", "pingus-data",
)
STEMS = ("dialogue", "music", "effects", "M&E")
_NOT_SPEECH = ("silence", "beep", "tone", "confbridge")


def reserved_sources(root: Path) -> Sources:
    """Speech, music and effects from the reserved packages only; music alternates between packages."""
    share = root / "usr/share"
    speech = sorted(
        p for p in (share / "asterisk/sounds").glob("*_*_*/**/*.g722") if not any(w in str(p) for w in _NOT_SPEECH)
    )
    songs = sorted(p for p in (share / "games/fretsonfire/data/songs/sectoid").iterdir() if p.is_dir())
    by_package = [
        [tuple(sorted(song.glob("*.ogg"))) for song in songs],
        [(p,) for p in sorted((share / "scummvm/drascula/audio").glob("*.ogg"))],
        [(p,) for p in sorted((share / "games/asc/music").glob("*.mp3"))],
        [(p,) for p in sorted((share / "games/colobot/music").glob("*.ogg"))],
        [(p,) for p in sorted((share / "games/pingus/data/music").iterdir())],
    ]
    music = [group[i] for i in range(max(map(len, by_package))) for group in by_package if i < len(group)]
    effects = sorted((share / "games/colobot/sounds").glob("*.wav"))
    effects += sorted((share / "games/freedroid/sound").glob("*.wav"))
    effects += sorted((share / "games/pingus/data/sounds").glob("*.wav"))
    return Sources(speech=tuple(speech), music=tuple(music), effects=tuple(effects))


def run_cinesep(net: CineSepNet, mix: Path) -> tuple[dict[str, np.ndarray], float, float]:
    """cinesep's stems (frames, 2) of ``mix``, and the wall-clock and CPU seconds it took."""
    stream = CineSepStream(net, channels=2)
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    parts = [stream.process(block) for block in iter_blocks(mix)] + [stream.flush()]
    wall_s, cpu_s = time.perf_counter() - wall_start, time.process_time() - cpu_start
    dx, mx, fx = (np.concatenate([part[stem] for part in parts]) for stem in (DIALOGUE, MUSIC, EFFECTS))
    return {"DX": dx, "MX": mx, "FX": fx, "ME": mx + fx}, wall_s, cpu_s


def scores(truth: dict[str, np.ndarray], systems: dict[str, dict[str, np.ndarray]]) -> dict[tuple, float]:
    """{(metric, system, stem): dB} for one clip."""
    refs = {"dialogue": truth["speech"], "music": truth["music"], "effects": truth["effects"]}
    refs["M&E"] = truth["music"] + truth["effects"]
    out = {}
    for system, stems in systems.items():
        guesses = {"dialogue": stems["DX"], "music": stems["MX"], "effects": stems["FX"], "M&E": stems["ME"]}
        for stem in STEMS:
            out["SDR", system, stem] = sdr_db(refs[stem], guesses[stem])
            out["SI-SDR", system, stem] = si_sdr_db(refs[stem], guesses[stem])
    return out


def evaluate_clip(folder: Path, net: CineSepNet) -> tuple[dict[tuple, float], tuple[float, float], float]:
    """Scores of every system on the clip in ``folder``, cinesep's (wall, CPU) seconds and its re-sum error."""
    truth = {name: _read(folder / f"{name}.wav") for name in ("mix", "speech", "music", "effects")}
    dfn3, _ = separate(folder, {})
    half = (truth["mix"] - dfn3["DX"]) / 2
    trivial = {"DX": dfn3["DX"], "MX": half, "FX": half, "ME": truth["mix"] - dfn3["DX"]}
    cinesep, wall_s, cpu_s = run_cinesep(net, folder / "mix.wav")
    resum = float(np.abs(cinesep["DX"] + cinesep["MX"] + cinesep["FX"] - truth["mix"]).max())
    return scores(truth, {"trivial": trivial, "dfn3": dfn3, "cinesep": cinesep}), (wall_s, cpu_s), resum


def _read(path: Path) -> np.ndarray:
    import soundfile as sf

    return sf.read(str(path), dtype="float32")[0]


def print_table(rows: list[dict[tuple, float]]) -> None:
    for metric in ("SDR", "SI-SDR"):
        print(f"\n{metric} (dB, mean over clips)".ljust(32) + "".join(f"{stem:>10s}" for stem in STEMS))
        for system in ("trivial", "dfn3", "cinesep"):
            means = [np.mean([row[metric, system, stem] for row in rows]) for stem in STEMS]
            print(f"  {system:30s}" + "".join(f"{m:10.2f}" for m in means))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 ran fastest on 2 busy cores)")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped ones)")
    parser.add_argument("--sha256", help="sha256 of --weights")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dubprep-eval")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights, sha256 = (args.weights, args.sha256) if args.weights else shipped_weights()
    net = load_net(weights, sha256)
    step = torch.load(weights, map_location="cpu", weights_only=True).get("step")
    sources = reserved_sources(fetch(EVAL_PACKAGES, args.cache))
    print("command: " + " ".join([Path(sys.executable).name, "-m", "training.evaluate", *sys.argv[1:]]))
    print(f"cinesep weights {weights} (sha256 {sha256[:12]}..., step {step})")
    print(f"{args.clips} clips of {CLIP_S:.0f} s from the reserved packages ({', '.join(RESERVED_PACKAGES)}): "
          f"{len(sources.speech)} speech files, {len(sources.music)} songs, {len(sources.effects)} effects")
    rows, costs = [], []
    with tempfile.TemporaryDirectory(prefix="dubprep-cinesep-eval-") as tmp:
        for index in range(args.clips):
            folder = Path(tmp) / f"clip{index:02d}"
            write_clip(make_clip(sources, index, args.seed + index), folder)
            row, cost, resum = evaluate_clip(folder, net)
            rows.append(row)
            costs.append(cost)
            music = sources.music[index % len(sources.music)][0]
            print(f"  clip {index} ({music.parent.name}/{music.name}): SDR dialogue dfn3 "
                  f"{row['SDR', 'dfn3', 'dialogue']:.2f} cinesep {row['SDR', 'cinesep', 'dialogue']:.2f}; music "
                  f"{row['SDR', 'cinesep', 'music']:.2f} effects {row['SDR', 'cinesep', 'effects']:.2f}; "
                  f"re-sum max error {resum:.1e}", flush=True)
    print_table(rows)
    wall_rtf = [wall / CLIP_S for wall, _ in costs]
    cpu_rtf = [cpu / CLIP_S for _, cpu in costs]
    print(f"\ncinesep speed (stereo, {args.threads} torch threads, {os.cpu_count()} CPUs): real-time factor "
          f"{np.median(wall_rtf):.3f} median (min {min(wall_rtf):.3f}); CPU seconds per second of audio "
          f"{np.median(cpu_rtf):.3f}; 1-min load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
