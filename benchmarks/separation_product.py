"""Separation measured through the product: `dubprep run` on film-like clips, scoring the delivered stems.

    python benchmarks/separation_product.py --set test --clips 8 --label main-dfn3 \
        [--preset default] [--param separate.backend=dfn3-spatial ...] [--dubprep PATH] [--seed N]
    python benchmarks/separation_product.py --compare LABEL_A LABEL_B

Clips come from benchmarks/filmclips.py (one split of corpus/splits.py per
run; ``--set reserved`` is refused until that set has sources). Each clip is
run as a user runs it, ``dubprep run project.yaml --input CLIP --output OUT
--quiet`` (the project only ``extends`` the preset and sets the ``--param``
keys), and the delivered BWF stems in OUT/deliverables (ME, DX, MX, FX) are
scored against the clip's ground truth:

- SDR: global, 10 log10(sum s^2 / sum (s - s_hat)^2) over every sample of
  every channel but the LFE, per clip (as in the Sound Demixing Challenge
  2023). The LFE is left out because the product passes it to the M&E
  untouched and the dialogue never has one: scoring it would add a free,
  perfect channel to ME/MX/FX.
- DX-in-ME: how much of the true dialogue the delivered M&E still holds,
  20 log10 |<ME_hat, DX>| / <DX, DX> (dB relative to the dialogue itself;
  the residue in phase with the original lines, which is what is heard
  under a dub).
- QC: seconds of speech QC found in the M&E (qc.json), as delivered.

Baselines per clip (computed once, cached in the clip's folder; the mix is
the clip's media decoded, so the AAC clip's coding noise is in every row):
- mix: every stem estimated as the mix;
- raw DFN3: DeepFilterNet3 alone with its delay removed and its default
  30-dB attenuation limit, none of the stage's logic: stereo = DFN3 on the
  mid (L+R)/2, the result in both channels; 5.1 = DFN3 on C only; ME =
  mix - DX;
- trivial: MX = FX = the product's ME / 2.

Results go to benchmarks/results/LABEL.json (small; committed) so that
``--compare`` can print per-clip deltas of two runs on the same set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from dubprep.progress import NullProgress
from dubprep.qc.speech import detect_speech
from dubprep.stages.backends.dfn3 import Dfn3Params, Dfn3Stream
from dubprep.stages.backends.separation import DIALOGUE
from filmclips import CHANNELS, DEFAULT_SEEDS, SETS, SR, build_set, cache_dir, clip_media, decode, describe

RESULTS = Path(__file__).resolve().parent / "results"
ASSETS = ("DX", "ME", "MX", "FX")
BLOCK_FRAMES = 10 * SR


def sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Global SDR over all samples of (frames, channels), in dB."""
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


def dialogue_in_me_db(dialogue: np.ndarray, me_estimate: np.ndarray) -> float:
    """Level of the true dialogue found in the M&E estimate, relative to the dialogue (dB; -inf: none)."""
    share = abs(float(np.sum(me_estimate * dialogue))) / float(np.sum(dialogue**2))
    return float(20 * np.log10(share)) if share > 0 else float("-inf")


def scored(stem: np.ndarray, layout: str) -> np.ndarray:
    """The channels that are scored: every one but the LFE; (frames, scored channels)."""
    names = CHANNELS[layout]
    return stem[:, [names.index(n) for n in names if n != "LFE"]]


def read_truth(folder: Path) -> dict[str, np.ndarray]:
    return {name: sf.read(str(folder / f"{name}.wav"), dtype="float32")[0] for name in ASSETS}


def raw_dfn3_dialogue(mix: np.ndarray, layout: str) -> np.ndarray:
    """DeepFilterNet3 on the mid (stereo) or C (5.1), delay removed, no stage logic; (frames, channels)."""
    names = CHANNELS[layout]
    signal = mix.mean(axis=1) if layout == "stereo" else mix[:, names.index("C")]
    stream = Dfn3Stream(Dfn3Params().atten_lim_db)
    try:
        blocks = (signal[at : at + BLOCK_FRAMES, None] for at in range(0, len(signal), BLOCK_FRAMES))
        parts = [stream.process(block)[DIALOGUE] for block in blocks]
        parts.append(stream.flush()[DIALOGUE])
    finally:
        stream.close()
    dialogue = np.concatenate(parts)[:, 0]
    out = np.zeros_like(mix)
    if layout == "stereo":
        out[:] = dialogue[:, None]
    else:
        out[:, names.index("C")] = dialogue
    return out


def baselines(folder: Path, layout: str) -> dict[str, np.ndarray]:
    """The decoded mix and raw DFN3's DX for a clip, cached in its folder; each (frames, channels)."""
    paths = {"mix": folder / "baseline_mix.wav", "raw_dx": folder / "baseline_raw_dfn3_DX.wav"}
    if not all(p.exists() for p in paths.values()):
        mix = decode(clip_media(folder), len(CHANNELS[layout]))
        for name, audio in (("mix", mix), ("raw_dx", raw_dfn3_dialogue(mix, layout))):
            _write_float(paths[name], audio)
    return {name: sf.read(str(p), dtype="float32")[0] for name, p in paths.items()}


def baseline_speech_s(folder: Path, layout: str, base: dict[str, np.ndarray]) -> dict[str, float]:
    """Seconds QC's speech detector finds in the true ME and in raw DFN3's ME (cached in the clip's folder).

    The true ME's figure is what the detector calls speech in music and
    effects alone (sung vocals, shouts): the floor no product can go under.
    """
    path = folder / "baseline_qc_speech.json"
    if not path.exists():
        me_path = folder / f".raw_dfn3_ME.{os.getpid()}.wav"
        _write_float(me_path, base["mix"] - base["raw_dx"])
        wavs = {"true_me": folder / "ME.wav", "raw_dfn3_me": me_path}
        found = {name: detect_speech([wav], layout, NullProgress()) for name, wav in wavs.items()}
        me_path.unlink()
        text = json.dumps({name: sum(s.duration_s for s in spans) for name, spans in found.items()})
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text + "\n")
        tmp.replace(path)
    return json.loads(path.read_text())


def _write_float(path: Path, audio: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.wav")
    sf.write(str(tmp), audio, SR, subtype="FLOAT")
    tmp.replace(path)


def nested(params: list[str]) -> dict:
    """'separate.backend=dfn3-spatial' ... as a project mapping {'separate': {'backend': 'dfn3-spatial'}}."""
    out: dict = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param {item!r}: write KEY=VALUE, e.g. separate.backend=dfn3")
        *parents, leaf = key.split(".")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    return out


def run_product(dubprep: Path, project: dict, media: Path, out: Path) -> tuple[dict[str, np.ndarray], dict, float]:
    """`dubprep run` on ``media``; the delivered stems (frames, channels), qc.json and the wall seconds."""
    project_path = out.parent / f"{out.name}.yaml"
    project_path.write_text(yaml.safe_dump(project))
    command = ["nice", "-n", "19", str(dubprep), "run", str(project_path)]
    command += ["--input", str(media), "--output", str(out), "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    if done.returncode not in (0, 3):  # 3: delivered, QC flagged it (scored all the same)
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    stems = {}
    for asset in ASSETS:
        found = sorted((out / "deliverables").glob(f"*_{asset}_*ch_48k_*.wav"))
        if len(found) != 1:
            raise RuntimeError(f"{out / 'deliverables'}: expected one {asset} stem, found {[p.name for p in found]}")
        stems[asset] = sf.read(str(found[0]), dtype="float32", always_2d=True)[0]
    return stems, json.loads((out / "deliverables" / "qc.json").read_text()), wall_s


def score_clip(
    truth: dict[str, np.ndarray], stems: dict[str, np.ndarray], base: dict[str, np.ndarray], layout: str
) -> dict:
    """Every number of one clip: product SDRs, baselines, dialogue left in the M&E."""
    frames = min(len(truth["DX"]), *(len(s) for s in stems.values()))
    t = {n: scored(a[:frames], layout) for n, a in truth.items()}
    est = {n: scored(a[:frames], layout) for n, a in stems.items()}
    mix = scored(base["mix"][:frames], layout)
    raw_dx = scored(base["raw_dx"][:frames], layout)
    return {
        "frames_scored": frames,
        "frames_delivered": {n: len(s) for n, s in stems.items()},
        "sdr_db": {n: sdr_db(t[n], est[n]) for n in ASSETS},
        "dx_in_me_db": dialogue_in_me_db(t["DX"], est["ME"]),
        "mix_sdr_db": {n: sdr_db(t[n], mix) for n in ASSETS},
        "raw_dfn3_sdr_db": {"DX": sdr_db(t["DX"], raw_dx), "ME": sdr_db(t["ME"], mix - raw_dx)},
        "raw_dfn3_dx_in_me_db": dialogue_in_me_db(t["DX"], mix - raw_dx),
        "trivial_sdr_db": {n: sdr_db(t[n], est["ME"] / 2) for n in ("MX", "FX")},
    }


def run_clip(folder: Path, dubprep: Path, project: dict, work: Path) -> dict:
    """Run and score one built clip."""
    info = json.loads((folder / "clip.json").read_text())
    layout = info["spec"]["layout"]
    base = baselines(folder, layout)
    stems, qc, wall_s = run_product(dubprep, project, clip_media(folder), work / folder.name)
    row = {"clip": folder.name, "layout": layout, **{key: info["spec"][key] for key in ("balance", "container")}}
    row |= score_clip(read_truth(folder), stems, base, layout)
    row["qc_speech_in_me_s"] = qc["dialogue_in_me"]["speech_s"]
    speech_s = baseline_speech_s(folder, layout, base)
    row["qc_speech_in_true_me_s"] = speech_s["true_me"]
    row["qc_speech_in_raw_dfn3_me_s"] = speech_s["raw_dfn3_me"]
    row["qc_passed"] = qc["passed"]
    row["run_wall_s"] = round(wall_s, 1)
    return row


COLUMNS = (  # (header, path into a row, worse is 'low' or 'high')
    ("DX", ("sdr_db", "DX"), "low"), ("ME", ("sdr_db", "ME"), "low"),
    ("MX", ("sdr_db", "MX"), "low"), ("FX", ("sdr_db", "FX"), "low"),
    ("rawDX", ("raw_dfn3_sdr_db", "DX"), "low"), ("rawME", ("raw_dfn3_sdr_db", "ME"), "low"),
    ("trivMX", ("trivial_sdr_db", "MX"), "low"), ("trivFX", ("trivial_sdr_db", "FX"), "low"),
    ("mixDX", ("mix_sdr_db", "DX"), "low"), ("mixME", ("mix_sdr_db", "ME"), "low"),
    ("DXinME", ("dx_in_me_db",), "high"), ("rawDXinME", ("raw_dfn3_dx_in_me_db",), "high"),
    ("QC s", ("qc_speech_in_me_s",), "high"), ("rawQC s", ("qc_speech_in_raw_dfn3_me_s",), "high"),
    ("trueQC s", ("qc_speech_in_true_me_s",), "high"),
)


def value(row: dict, path: tuple[str, ...]) -> float:
    for key in path:
        row = row[key]
    return float(row)


def print_table(rows: list[dict]) -> None:
    """Per-clip table, then the mean and the worst clip of each column."""
    print(f"{'clip':22s} {'layout':6s} {'balance':7s}" + "".join(f"{h:>10s}" for h, _, _ in COLUMNS))
    for row in rows:
        cells = "".join(f"{value(row, path):10.2f}" for _, path, _ in COLUMNS)
        print(f"{row['clip']:22s} {row['layout']:6s} {row['balance']:7s}" + cells)
    means = "".join(f"{np.mean([value(r, path) for r in rows]):10.2f}" for _, path, _ in COLUMNS)
    worst = "".join(
        f"{(min if side == 'low' else max)(value(r, path) for r in rows):10.2f}" for _, path, side in COLUMNS
    )
    print(f"{'mean':37s}" + means)
    print(f"{'worst':37s}" + worst)


def print_against_baselines(rows: list[dict]) -> None:
    """Issue 15's yardsticks: DX and ME against raw DFN3, MX and FX against the trivial split (mean, worst clip)."""
    pairs = (("DX", "raw_dfn3_sdr_db"), ("ME", "raw_dfn3_sdr_db"), ("MX", "trivial_sdr_db"), ("FX", "trivial_sdr_db"))
    parts = []
    for stem, baseline in pairs:
        gains = [row["sdr_db"][stem] - row[baseline][stem] for row in rows]
        worst = int(np.argmin(gains))
        name = "raw DFN3" if baseline.startswith("raw") else "trivial"
        parts.append(f"{stem} {np.mean(gains):+.2f} vs {name} (worst {gains[worst]:+.2f}, {rows[worst]['clip']})")
    print("gain: " + "; ".join(parts))


def code_version(dubprep: Path) -> str:
    """Commit (and '+dirty') of the checkout whose dubprep is run."""
    folder = str(dubprep.resolve().parent)
    head = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    status = ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"]
    dirty = subprocess.run(status, capture_output=True, text=True).stdout.strip()
    return f"{head or 'unknown'}{'+dirty' if dirty else ''}"


def compare(label_a: str, label_b: str) -> None:
    """Per-clip deltas B - A of two saved runs on the same clips."""
    a, b = (json.loads((RESULTS / f"{label}.json").read_text()) for label in (label_a, label_b))
    rows_a = {r["clip"]: r for r in a["rows"]}
    shared = [r for r in b["rows"] if r["clip"] in rows_a]
    if not shared:
        raise SystemExit(f"{label_a} ({a['set']}) and {label_b} ({b['set']}) share no clip; compare runs on one set")
    print(f"{label_b} - {label_a} ({len(shared)} clips of {b['set']}; dB, QC s)")
    picked = [c for c in COLUMNS if c[0] in ("DX", "ME", "MX", "FX", "DXinME", "QC s")]
    print(f"{'clip':22s} {'layout':6s} {'balance':7s}" + "".join(f"{h:>10s}" for h, _, _ in picked))
    deltas = []
    for row in shared:
        deltas.append([value(row, path) - value(rows_a[row["clip"]], path) for _, path, _ in picked])
        print(f"{row['clip']:22s} {row['layout']:6s} {row['balance']:7s}" + "".join(f"{d:+10.2f}" for d in deltas[-1]))
    print(f"{'mean':37s}" + "".join(f"{d:+10.2f}" for d in np.mean(deltas, axis=0)))
    for label, rows in ((label_a, [rows_a[r["clip"]] for r in shared]), (label_b, shared)):
        print(f"{label}: ", end="")
        print_against_baselines(rows)


def save(label: str, header: dict, rows: list[dict]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{label}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")
    tmp.replace(path)
    return path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="split", choices=("tune", "test", "reserved"))
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seed", type=int, help="seed of the set (default: 2000 tune, 3000 test)")
    parser.add_argument("--preset", default="default", help="the preset (or project YAML) the run extends")
    parser.add_argument("--param", action="append", default=[], help="project key=value: separate.backend=dfn3")
    parser.add_argument("--dubprep", type=Path, default=Path(sys.executable).parent / "dubprep", help="executable")
    parser.add_argument("--label", help="name of the results file, benchmarks/results/LABEL.json")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="per-clip deltas B - A of two saved labels")
    args = parser.parse_args()
    if not args.compare and not (args.split and args.label):
        parser.error("give --set and --label to run, or --compare A B")
    if args.split == "reserved" and args.split not in SETS:
        parser.error("the reserved set has no sources in benchmarks/filmclips.py SETS yet; add them there first")
    return args


def main() -> None:
    args = parse_args()
    if args.compare:
        compare(*args.compare)
        return
    seed = DEFAULT_SEEDS[args.split] if args.seed is None else args.seed
    project = {"extends": args.preset, **nested(args.param)}
    cache = cache_dir()
    header = {
        "label": args.label, "set": args.split, "seed": seed, "clips": args.clips,
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "dubprep": str(args.dubprep),
        "dubprep_commit": code_version(args.dubprep), "project": project,
    }
    print(f"command: {header['command']}\ndubprep: {args.dubprep} at {header['dubprep_commit']}; project {project}")
    folders = build_set(args.split, args.clips, seed, cache)
    rows = []
    (cache / "runs").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{args.label}-", dir=cache / "runs") as work:
        for folder in folders:
            print(describe(folder), flush=True)
            rows.append(run_clip(folder, args.dubprep, project, Path(work)))
            shutil.rmtree(Path(work) / folder.name)  # delivered stems are large; scored, they go
            save(args.label, header, rows)
    print_table(rows)
    print_against_baselines(rows)
    print(f"results: {save(args.label, header, rows)}")


if __name__ == "__main__":
    main()
