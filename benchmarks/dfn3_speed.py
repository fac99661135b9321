"""How fast DeepFilterNet3's runtime alone is on this machine: one stream, then two side by side.

    .venv/bin/python benchmarks/dfn3_speed.py

Runs dubprep's DeepFilterNet3 backend (no file I/O, no music/effects split)
on 60 s of real speech at 48 kHz (pyannote's sample, looped) in 10-s blocks,
through the stream runner the separate stage uses: once as a single stream,
then as two streams in two threads (a stereo file's mid and side). Prints
the real-time factor (wall seconds per programme second) of each, three
times, since other work on a shared machine moves it. The separate stage
cannot be faster than the two-stream figure on a stereo file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from dubprep.audio_io import SAMPLE_RATE
from dubprep.stages.backends.separation import SEPARATORS
# The stage's own runner of side-by-side streams, so this measures what the stage does.
from dubprep.stages.backends.streaming import StreamSet
from dubprep.stages.separate import SeparateStage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from speech import sample_speech_48k  # noqa: E402  (the tests' real-speech helper)

PROGRAMME_S = 60
BLOCK_FRAMES = 10 * SAMPLE_RATE


def stream_rtf(streams: int, audio: np.ndarray) -> float:
    """Wall seconds per programme second for ``streams`` DFN3 streams fed ``audio`` (frames,) side by side."""
    backend = SEPARATORS.get("dfn3")
    params = SeparateStage.validate_params({"backend": "dfn3"})  # the default attenuation limit
    with StreamSet(backend.open(params, [1] * streams, "cpu"), backend.parallel) as models:
        started = time.perf_counter()
        for offset in range(0, len(audio), BLOCK_FRAMES):
            models.process([audio[offset : offset + BLOCK_FRAMES, None]] * streams)
        models.flush()
        return (time.perf_counter() - started) / PROGRAMME_S


def main() -> None:
    speech = sample_speech_48k()
    audio = np.tile(speech, PROGRAMME_S * SAMPLE_RATE // len(speech) + 1)[: PROGRAMME_S * SAMPLE_RATE]
    for streams in (1, 2):
        rtfs = [stream_rtf(streams, audio) for _ in range(3)]
        print(f"{streams} stream(s): real-time factor " + " ".join(f"{rtf:.3f}" for rtf in rtfs))


if __name__ == "__main__":
    main()
