"""Diarization quality and speed of the builtin backend.

Always: pyannote.audio's bundled sample.wav (30 s, two real speakers, with
its reference RTTM), resampled to a 48 kHz DX stem. With
``--debian-voices``: conversations with known turns (and some overlaps)
built from recorded voices in Debian packages (flite's ARCTIC voices awb,
rms, slt and kal16, and the Allison prompts of asterisk-core-sounds-en-g722),
fetched with ``apt-get download`` and unpacked with ``dpkg -x`` (nothing
installed), to check that the settings are not fitted to the one sample.
Each conversation is scored twice: alone as the DX stem, and mixed centre
over music and effects at the separation benchmark's levels
(benchmarks/sepdata.py: speech -17, music -24, effects -21 LUFS, each
+-2 LU), separated by the separate stage (default settings) and diarized
from its DX, as the pipeline does.

Prints DER and JER (pyannote.metrics, no collar, overlap scored), DER with
a +-0.25 s collar around reference boundaries, the speaker-count error and
the real-time factor of the diarize stage (wall time, model loading
included; the CPU seconds beside it are less disturbed by other work on
the machine).

    .venv/bin/python benchmarks/diarization.py [--debian-voices]
"""

from __future__ import annotations

import argparse
import glob
import multiprocessing
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from pyannote.core import Annotation, Segment
from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate
from scipy.signal import resample_poly

from common import run_stage
from dubprep.media import MediaInfo
from dubprep.tools import find_tool
from sepdata import find_sources, speech_over_background, unpacked_root, write_clip
from speech import SAMPLE_RTTM, sample_speech_48k

_DEBS = ("flite", "libflite1", "asterisk-core-sounds-en-g722")
_LINES = (
    "Where were you last night when the lights went out?",
    "I was at the station, waiting for the late train.",
    "Nobody saw you there. Not the guard, not the ticket clerk.",
    "Then ask the driver. He waved at me when the doors closed.",
    "We did ask him. He says the train never stopped.",
    "That is impossible, I stood on the platform for an hour.",
    "Let us start again, and this time tell me everything.",
    "Fine. I left the office at seven and walked along the river.",
    "Did you meet anyone on the way?",
    "Only the old man who sells newspapers by the bridge.",
    "He closed his stall early yesterday because of the rain.",
    "You seem to know a great deal about my evening.",
    "It is my job to know. Sit down, please.",
    "The captain wants an answer before midnight.",
    "Bring the file from my desk, the blue one with the photographs.",
    "Missing? Who else had the key to that drawer?",
    "He went home an hour ago, he said his daughter was ill.",
    "It is freezing outside, and the car will not start.",
)
# (name, voices, turns, seed): two to five speakers, one alone, and a 15-minute
# programme (clustering then runs on a subsample of the windows).
_CONVERSATIONS = (
    ("two", ("rms", "slt"), 30, 1),
    ("three", ("awb", "rms", "allison"), 40, 3),
    ("five", ("rms", "slt", "awb", "kal16", "allison"), 50, 2),
    ("four", ("awb", "slt", "kal16", "allison"), 40, 7),
    ("one-allison", ("allison",), 15, 4),
    ("one-rms", ("rms",), 10, 5),
    ("15-minutes", ("rms", "slt", "awb", "kal16", "allison"), 200, 11),
)


def score(reference: Annotation, work: Path, programme_s: float, wall_s: float, cpu_s: float) -> str:
    """One result line: DER, JER, speakers found vs true, real-time factor (wall and CPU)."""
    hypothesis = next(iter(load_rttm(work / "turns.rttm").values()), Annotation())
    der = DiarizationErrorRate()(reference, hypothesis, detailed=True)
    collar_der = DiarizationErrorRate(collar=0.5)(reference, hypothesis)  # pyannote's collar: 0.25 s either side
    jer = JaccardErrorRate()(reference, hypothesis)
    found, true = len(hypothesis.labels()), len(reference.labels())
    return (
        f"DER {100 * der['diarization error rate']:5.1f} %  (miss {100 * der['missed detection'] / der['total']:4.1f}"
        f"  false alarm {100 * der['false alarm'] / der['total']:4.1f}  confusion "
        f"{100 * der['confusion'] / der['total']:4.1f})  collar DER {100 * collar_der:5.1f} %  JER {100 * jer:5.1f} %"
        f"  speakers {found}/{true} "
        f"(error {found - true:+d})  RTF {wall_s / programme_s:.3f} ({programme_s:.0f} s in {wall_s:.1f} s, "
        f"CPU {cpu_s:.1f} s)"
    )


def run_on(name: str, speech_48k: np.ndarray, reference: Annotation, folder: Path) -> None:
    """Write ``speech_48k`` as a mono DX stem, diarize it in a fresh process and print the scores."""
    inputs = folder / name / "in"
    inputs.mkdir(parents=True)
    sf.write(inputs / "DX.wav", speech_48k, 48000, subtype="FLOAT")
    media = MediaInfo(f"{name}.wav", 0, "pcm_f32le", "mono", 1, 48000, len(speech_48k), 48000, 0.0, None, None)
    media.save(inputs / "media.json")
    diarize(name, inputs / "DX.wav", inputs / "media.json", reference, folder / name / "work")


def run_under_background(name: str, speech_48k: np.ndarray, reference: Annotation, index: int, folder: Path) -> None:
    """Mix ``speech_48k`` over music and effects, separate it, diarize its DX and print the scores."""
    clip = folder / f"{name}-mixed"
    np.save(folder / f"{name}.npy", speech_48k)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        # Its own process: the decoded music and effects would count in the stages' peak RSS.
        pool.apply(_write_mix, (folder / f"{name}.npy", index, clip))
    inputs = {"mix.wav": clip / "mix.wav", "media.json": clip / "media.json"}
    run_stage("dubprep.stages.separate.SeparateStage", {}, inputs, clip / "mix.wav", clip / "separated")
    diarize(f"{name}+ME", clip / "separated" / "DX.wav", clip / "media.json", reference, clip / "work")


def _write_mix(speech_path: Path, index: int, folder: Path) -> None:
    """The conversation centred over music and effects (clip ``index``'s music) as mix.wav and media.json."""
    speech = np.load(speech_path)
    write_clip(speech_over_background(speech, find_sources(unpacked_root()), index, 1000 + index), folder)


def diarize(name: str, dx: Path, media: Path, reference: Annotation, work: Path) -> None:
    """Run the diarize stage on ``dx`` in a fresh process and print its scores."""
    run = run_stage("dubprep.stages.diarize.DiarizeStage", {}, {"DX.wav": dx, "media.json": media}, dx, work)
    programme_s = sf.info(str(dx)).duration
    print(f"{name:15s} {score(reference, work, programme_s, run.wall_s, run.cpu_s)}  "
          f"peak RSS {run.peak_rss_mib:.0f} MiB", flush=True)


def fetch_voices(folder: Path) -> Path:
    """Download and unpack the Debian packages with the voices; returns the unpacked root."""
    root = folder / "debian"
    root.mkdir()
    subprocess.run(["apt-get", "download", *_DEBS], cwd=folder, check=True, capture_output=True)
    for deb in folder.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    return root


class Voices:
    """Speech in one of the Debian voices as 16 kHz mono float32."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.allison = sorted(glob.glob(str(root / "usr/share/asterisk/sounds/en_US_f_Allison/*.g722")))
        self.env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/x86_64-linux-gnu"))

    def flite(self, voice: str, text: str) -> np.ndarray:
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            command = [str(self.root / "usr/bin/flite"), "-voice", voice, "-t", text, "-o", f.name]
            subprocess.run(command, env=self.env, check=True)
            speech, rate = sf.read(f.name, dtype="float32")
        return resample_poly(speech, 16000, rate).astype(np.float32) if rate != 16000 else speech

    def prompt(self, path: str) -> np.ndarray:
        command = [str(find_tool("ffmpeg")), "-v", "error", "-f", "g722", "-i", path, "-f", "f32le", "-ac", "1",
                   "-ar", "16000", "-"]
        return np.frombuffer(subprocess.run(command, capture_output=True, check=True).stdout, np.float32)

    def turn(self, voice: str, rng: np.random.Generator) -> np.ndarray:
        """One or two sentences (flite) or prompts (Allison), trimmed, at -26 +/- 4 dBFS RMS."""
        if voice == "allison":
            prompts = rng.choice(self.allison, size=rng.integers(1, 3), replace=False)
            speech = np.concatenate([np.r_[self.prompt(p), np.zeros(1600, np.float32)] for p in prompts])
        else:
            speech = self.flite(voice, " ".join(rng.choice(_LINES, size=rng.integers(1, 3), replace=False)))
        loud = np.flatnonzero(np.abs(speech) > 0.01)
        speech = speech[loud[0] : loud[-1] + 1]
        return speech * 10 ** ((-26 + rng.uniform(-4, 4)) / 20) / (np.sqrt(np.mean(speech**2)) + 1e-9)


def conversation(voices: Voices, speakers: tuple[str, ...], turns: int, seed: int) -> tuple[np.ndarray, Annotation]:
    """Turns of alternating speakers with gaps of -0.4 (overlap) to 0.9 s over -50 dBFS noise, at 48 kHz."""
    rng = np.random.default_rng(seed)
    reference, pieces, end_s, previous = Annotation(uri="programme"), [], 0.5, None
    for _ in range(turns):
        speaker = str(rng.choice([s for s in speakers if s != previous] or speakers))
        speech = voices.turn(speaker, rng)
        start_s = max(0.0, end_s + rng.uniform(-0.4, 0.9))
        end_s = start_s + len(speech) / 16000
        pieces.append((round(start_s * 16000), speech))
        reference[Segment(start_s, end_s), len(pieces)] = speaker
        previous = speaker
    mix = rng.normal(0.0, 10 ** (-50 / 20), round((end_s + 0.5) * 16000)).astype(np.float32)
    for start, speech in pieces:
        mix[start : start + len(speech)] += speech
    return resample_poly(mix, 3, 1).astype(np.float32), reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--debian-voices", action="store_true", help="also score conversations of Debian voices")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run_on("sample.wav", sample_speech_48k(), next(iter(load_rttm(SAMPLE_RTTM).values())), folder)
        if args.debian_voices:
            voices = Voices(fetch_voices(folder))
            for index, (name, speakers, turns, seed) in enumerate(_CONVERSATIONS):
                speech, reference = conversation(voices, speakers, turns, seed)
                run_on(name, speech, reference, folder)
                run_under_background(name, speech, reference, index, folder)


if __name__ == "__main__":
    main()
