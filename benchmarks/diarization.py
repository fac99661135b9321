"""Diarization through the product: ``dubprep run`` on media files, scoring the delivered turns.rttm.

    nice -n 19 .venv/bin/python benchmarks/diarization.py --set tune [--label main] [--dubprep PATH]
    .venv/bin/python benchmarks/diarization.py --set tune --compare main diarize

Cases: pyannote.audio's bundled sample.wav (30 s, two real speakers, its
reference RTTM; a public regression case) run as it is, and the eight
conversations of ``--set`` built by benchmarks/diarconv.py (1-6 recorded
voices of that split of corpus/splits.py, under its music and effects,
stereo and 5.1, as .mov). Each is run as ``dubprep run --input MEDIA
--output OUT --quiet`` with the default preset; ``--dubprep`` picks the
executable, so another branch's build can be scored. A run that ends in a
failed QC check still delivers its turns, and is scored (its exit status
is in the results).

Scores (pyannote.metrics, overlap scored): DER with no collar and with a
+-0.25 s collar, JER, speakers found vs true, and the part of the first
0.5 s of the first reference line that lies in a delivered turn; the wall
time of the whole run, and the diarize stage's real-time factor as its log
line gives it (wall time: inflated when the machine is loaded). Results
go to ``CASES/results/<set>-<label>.json`` (with the executable's commit);
``--compare A B`` prints two labels side by side.

The test set is for reporting only: never tune anything on its numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyannote.audio
import soundfile as sf
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

from diarconv import DEFAULT_SEEDS, build_set

SAMPLE_WAV = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
COLLAR_S = 0.5  # pyannote's collar is the whole width: +-0.25 s around each reference boundary
FIRST_WORD_S = 0.5
DEFAULT_CASES = Path.home() / ".cache" / "dubprep-diarbench"


def _annotation(rttm: Path) -> Annotation:
    """The first (only) recording's turns in ``rttm``; empty when it has none."""
    return next(iter(load_rttm(rttm).values()), Annotation()) if rttm.exists() and rttm.stat().st_size else Annotation()


def score(reference: Annotation, hypothesis: Annotation, duration_s: float) -> dict:
    """DER (no collar, and +-0.25 s), its parts, JER, speaker counts and first-word coverage, over 0..``duration_s``."""
    uem = Timeline([Segment(0.0, duration_s)])
    detailed = DiarizationErrorRate(collar=0.0, skip_overlap=False)(reference, hypothesis, uem=uem, detailed=True)
    total = detailed["total"]
    first = reference.get_timeline().support()[0]
    first_word = Segment(first.start, min(first.end, first.start + FIRST_WORD_S))
    covered_s = hypothesis.get_timeline().support().crop(first_word).duration() if hypothesis else 0.0
    return {
        "der": detailed["diarization error rate"],
        "miss": detailed["missed detection"] / total,
        "false_alarm": detailed["false alarm"] / total,
        "confusion": detailed["confusion"] / total,
        "der_collar": DiarizationErrorRate(collar=COLLAR_S, skip_overlap=False)(reference, hypothesis, uem=uem),
        "jer": JaccardErrorRate()(reference, hypothesis, uem=uem),
        "found": len(hypothesis.labels()),
        "true": len(reference.labels()),
        "first_word": covered_s / first_word.duration,
    }


def run_product(dubprep: Path, media: Path, folder: Path, keep_rttm: Path) -> tuple[Annotation, dict]:
    """``dubprep run`` on ``media`` into ``folder``/out; its delivered turns (copied to ``keep_rttm``), wall time, exit status."""
    out = folder / "out"
    start = time.perf_counter()
    run = subprocess.run([str(dubprep), "run", "--input", str(media), "--output", str(out), "--quiet"],
                         capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    turns = out / "deliverables" / "turns.rttm"
    if not turns.exists():
        raise RuntimeError(f"dubprep run on {media} delivered no turns.rttm (exit {run.returncode}):\n{run.stderr[-2000:]}")
    keep_rttm.write_bytes(turns.read_bytes())
    note = run.stderr.strip().splitlines()[-1][:120] if run.returncode else ""
    logged = re.search(r"diarize: done in ([\d.]+) s", (out / "dubprep.log").read_text())
    diarize_s = float(logged[1]) if logged else float("nan")
    return _annotation(turns), {"wall_s": round(wall_s, 1), "diarize_s": diarize_s, "exit": run.returncode, "note": note}


def commit_of(dubprep: Path) -> str:
    """The git commit of the worktree ``dubprep`` (WORKTREE/.venv/bin/dubprep) runs from, '+dirty' if changed."""
    root = dubprep.parent.parent.parent
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (head.stdout.strip() or "unknown") + ("+dirty" if dirty else "")


def run_cases(split: str, cases_dir: Path, dubprep: Path, turns_dir: Path) -> Iterator[dict]:
    """Every case of ``split`` and sample.wav through ``dubprep``; one result row each, printed as it comes.

    The delivered turns are kept in ``turns_dir`` (<case>.rttm).
    """
    turns_dir.mkdir(parents=True, exist_ok=True)
    cases = [("sample.wav", SAMPLE_WAV, SAMPLE_WAV.with_suffix(".rttm"), {"duration_s": sf.info(str(SAMPLE_WAV)).duration})]
    for case in build_set(split, cases_dir, DEFAULT_SEEDS[split]):
        details = json.loads((case.folder / "case.json").read_text())
        cases.append((case.folder.name, case.media, case.rttm, details))
    print(_HEADER, flush=True)
    for name, media, rttm, details in cases:
        with tempfile.TemporaryDirectory(prefix="diarbench-") as tmp:
            hypothesis, run = run_product(dubprep, media, Path(tmp), turns_dir / f"{name}.rttm")
        row = {"case": name, **score(_annotation(rttm), hypothesis, details["duration_s"]), **run,
               "duration_s": details["duration_s"], "voices": details.get("voices", [])}
        print(_line(row), flush=True)
        yield row


_HEADER = (f"{'case':28s} {'DER':>6s} {'miss':>5s} {'FA':>5s} {'conf':>5s} {'DER.25':>6s} {'JER':>6s} {'spk':>5s}"
           f" {'1st':>4s} {'wall':>6s} {'dia.RTF':>7s}  note")


def _line(row: dict) -> str:
    """One printed row: percentages, speakers found/true, first-word coverage, wall time of the whole run."""
    pct = lambda key: f"{100 * row[key]:5.1f}"  # noqa: E731
    return (f"{row['case']:28s} {pct('der'):>6s} {pct('miss')} {pct('false_alarm')} {pct('confusion')} "
            f"{pct('der_collar'):>6s} {pct('jer'):>6s} {row['found']:>2d}/{row['true']:<2d} {row['first_word']:4.2f} "
            f"{row['wall_s']:5.0f}s {row.get('diarize_s', float('nan')) / row['duration_s']:7.3f}  {row['note']}")


def summary(rows: list[dict]) -> str:
    """Means over the conversations (sample.wav apart) and the fraction with the speaker count right."""
    conversations = [row for row in rows if row["case"] != "sample.wav"]
    mean = lambda key: 100 * sum(row[key] for row in conversations) / len(conversations)  # noqa: E731
    right = sum(row["found"] == row["true"] for row in conversations)
    return (f"{'mean of ' + str(len(conversations)) + ' conversations':28s} {mean('der'):6.1f} {mean('miss'):5.1f} "
            f"{mean('false_alarm'):5.1f} {mean('confusion'):5.1f} {mean('der_collar'):6.1f} {mean('jer'):6.1f}  "
            f"count right {right}/{len(conversations)} ({100 * right / len(conversations):.0f} %), "
            f"worst DER.25 {max(100 * row['der_collar'] for row in conversations):.1f}")


def compare(split: str, results_dir: Path, labels: tuple[str, str]) -> None:
    """Print two saved results of ``split`` case by case."""
    saved = [json.loads((results_dir / f"{split}-{label}.json").read_text()) for label in labels]
    for result in saved:
        print(f"== {result['label']}: {result['dubprep']} at {result['commit']}")
        print(_HEADER)
        for row in result["rows"]:
            print(_line(row))
        print(summary(result["rows"]))
    a, b = ({row["case"]: row for row in result["rows"]} for result in saved)
    print(f"== {labels[0]} -> {labels[1]}: DER, DER.25, speakers found/true")
    for case in [name for name in a if name in b]:
        print(f"{case:28s} {100 * a[case]['der']:5.1f} -> {100 * b[case]['der']:5.1f}   "
              f"{100 * a[case]['der_collar']:5.1f} -> {100 * b[case]['der_collar']:5.1f}   "
              f"{a[case]['found']}/{a[case]['true']} -> {b[case]['found']}/{b[case]['true']}")


def rescore(split: str, cases_dir: Path, label: str) -> None:
    """Score a saved run's delivered turns again against the cases' references as they are now."""
    target = cases_dir / "results" / f"{split}-{label}.json"
    result = json.loads(target.read_text())
    references = {case.folder.name: case.rttm for case in build_set(split, cases_dir, DEFAULT_SEEDS[split])}
    references["sample.wav"] = SAMPLE_WAV.with_suffix(".rttm")
    for row in result["rows"]:
        delivered = _annotation(target.with_suffix("") / f"{row['case']}.rttm")
        row.update(score(_annotation(references[row["case"]]), delivered, row["duration_s"]))
    _save(result, target)
    print(_HEADER)
    for row in result["rows"]:
        print(_line(row))
    print(summary(result["rows"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("tune", "test"), required=True, dest="split")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES, help="the conversations' folder (diarconv --cases)")
    parser.add_argument("--dubprep", type=Path, default=Path(sys.executable).with_name("dubprep"))
    parser.add_argument("--label", default="main", help="name of this run's results")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="print two labels' saved results")
    parser.add_argument("--rescore", action="store_true", help="score --label's kept turns again (references changed)")
    args = parser.parse_args()
    results_dir = args.cases / "results"
    if args.rescore:
        rescore(args.split, args.cases, args.label)
        return
    if args.compare:
        compare(args.split, results_dir, tuple(args.compare))
        return
    result = {"label": args.label, "set": args.split, "dubprep": str(args.dubprep), "commit": commit_of(args.dubprep),
              "rows": []}
    for row in run_cases(args.split, args.cases, args.dubprep, results_dir / f"{args.split}-{args.label}"):
        result["rows"].append(row)
        _save(result, results_dir / f"{args.split}-{args.label}.json")
    print(summary(result["rows"]))


def _save(result: dict, target: Path) -> None:
    """``result`` as JSON at ``target``, replaced atomically (after each case, so a stopped run keeps its rows)."""
    result["saved"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(target)


if __name__ == "__main__":
    main()
