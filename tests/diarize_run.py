"""Run the diarize stage on audio in memory, as the engine would after the separate stage."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
from pyannote.database.util import load_rttm

from dubprep.media import LAYOUT_CHANNELS, MediaInfo
from dubprep.stage import StageContext
from dubprep.stages.diarize import DiarizeParams, DiarizeStage
from speech import SAMPLE_RTTM, sample_speech_48k

REFERENCE = next(iter(load_rttm(SAMPLE_RTTM).values()))


def diarize(folder: Path, dx: np.ndarray, layout: str = "mono", **params) -> Path:
    """Run the stage on ``dx`` (frames,) or (frames, channels) written as a DX stem; returns the work folder."""
    (folder / "in").mkdir(parents=True)
    sf.write(folder / "in/DX.wav", dx, 48000, subtype="FLOAT")
    channels = len(LAYOUT_CHANNELS[layout])
    MediaInfo("reel.wav", 0, "pcm_f32le", layout, channels, 48000, len(dx), 48000, 0.0, None, None).save(
        folder / "in/media.json"
    )
    work = folder / "work"
    work.mkdir()
    inputs = {name: folder / "in" / name for name in DiarizeStage.inputs}
    ctx = StageContext(DiarizeParams(**params), inputs, work, Path("reel.wav"), logging.getLogger("test.diarize"))
    DiarizeStage().run(ctx)
    return work


def one_speaker_of_sample(label: str) -> np.ndarray:
    """The parts of the sample where only ``label`` speaks, joined; shape: (frames,)."""
    speech = sample_speech_48k()
    others = REFERENCE.subset([label], invert=True).get_timeline().support()
    alone = REFERENCE.label_timeline(label).support().extrude(others)
    return np.concatenate([speech[round(s.start * 48000) : round(s.end * 48000)] for s in alone])
