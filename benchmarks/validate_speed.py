"""How fast a typo in a project file is answered: `dubprep validate` timed end to end.

    python benchmarks/validate_speed.py [--runs 5]

Each run is a fresh `dubprep validate` process on a project whose
``assemble.bitdepth`` is misspelt, timed from start to exit (interpreter
start, imports, YAML, validation, the error line). A bare `python -c pass`
is timed too: the floor no command can go under. Prints every run's wall
time and the median of wall and CPU (user + system) time; on a busy shared
machine wall time waits for a core, and CPU time is what an idle one would
take. The load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DUBPREP = Path(sys.executable).parent / "dubprep"
TYPO = "input: reel.wav\noutput: out\nassemble:\n  bitdepth: 24\n"


def timed(command: list[str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds of ``command`` run to its end, and what it returned."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall_s, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder) / "project.yaml"
        project.write_text(TYPO)
        (Path(folder) / "reel.wav").write_bytes(b"")
        rows = {"python -c pass": [sys.executable, "-c", "pass"], "dubprep validate (typo)": [str(DUBPREP), "validate", str(project)]}
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for label, command in rows.items():
            walls, cpus = [], []
            for _ in range(runs):
                wall_s, cpu_s, done = timed(command)
                walls.append(wall_s)
                cpus.append(cpu_s)
            print(f"{label:<26} median wall {statistics.median(walls):6.2f} s  cpu {statistics.median(cpus):5.2f} s   "
                  f"walls: {' '.join(f'{s:.2f}' for s in walls)}")
            if label.startswith("dubprep"):
                assert done.returncode == 1 and "assemble.bitdepth: unknown key" in done.stderr, done.stderr
                print(f"  its answer: {done.stderr.strip()}")
        print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
