"""The transcribe stage's speed through ``dubprep run``, with the tests' tiny random Whisper model.

Builds the tiny model (tests/tiny_whisper.py: two layers of width 64, no
download), a programme of the speech sample looped over music and noise,
runs the whole pipeline with ``transcribe`` set, then reruns the stage
alone (``--force transcribe``) and prints the stage's real-time factor
from the log each time. The figure measures the stage's own work (reading
the stems, language detection, one faster-whisper call per turn and per
speech span of the M&E, word alignment) with a model far smaller than any
real one: real models' speed is faster-whisper's published figures (README).

    .venv/bin/python benchmarks/transcribe_speed.py [--seconds 60] [--reruns 2]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from speech import speech_with_background  # noqa: E402
from tiny_whisper import build_tiny_whisper  # noqa: E402

DONE = re.compile(r"transcribe: done in ([\d.]+) s \(([\d.]+)x real time\)")
COUNTS = re.compile(r"transcribe: (\d+) words in (\d+) turns; (\d+) words in (\d+) span")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="programme length")
    parser.add_argument("--reruns", type=int, default=2, help="runs of the transcribe stage alone after the first")
    args = parser.parse_args()
    dubprep = Path(sys.executable).parent / "dubprep"
    with tempfile.TemporaryDirectory(prefix="dubprep-transcribe-") as folder:
        root = Path(folder)
        model = build_tiny_whisper(root / "tiny-whisper")
        media = speech_with_background(root / "programme.wav", duration_s=args.seconds)
        project = root / "project.yaml"
        project.write_text(f"extends: default\ninput: {media}\noutput: out\ntranscribe: {{model: '{model}'}}\n")
        commands = [[str(dubprep), "run", str(project), "--quiet"]]
        commands += [[str(dubprep), "run", str(project), "--quiet", "--force", "transcribe", "--until", "transcribe"]] * args.reruns
        for run, command in enumerate(commands, start=1):
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode not in (0, 3):  # 3: QC flagged the delivery, everything was written
                sys.exit(f"dubprep run failed ({done.returncode}): {done.stderr.strip()}")
            log = (root / "out" / "dubprep.log").read_text()
            seconds, rtf = DONE.findall(log)[-1]
            words, turns, me_words, spans = COUNTS.findall(log)[-1]
            print(f"run {run}: transcribe {seconds} s for {args.seconds:.0f} s of programme = {rtf}x real time "
                  f"({words} words in {turns} turns, {me_words} words in {spans} M&E span(s))")


if __name__ == "__main__":
    main()
