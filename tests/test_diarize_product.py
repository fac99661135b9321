"""pyannote's two-speaker sample.wav through the product path: extract to 48 kHz, separate, diarize the DX."""

import json
import shutil

from pyannote.database.util import load_rttm
from pyannote.metrics.diarization import DiarizationErrorRate

from dubprep.cli import main
from speech import REFERENCE, SAMPLE_WAV


def test_sample_through_dubprep_run_finds_its_two_speakers(tmp_path):
    media = tmp_path / "sample.wav"
    shutil.copy(SAMPLE_WAV, media)
    out = tmp_path / "out"
    assert main(["run", "-q", "-i", str(media), "-o", str(out), "--until", "diarize"]) == 0
    turns = json.loads((out / "work/diarize/turns.json").read_text())
    assert turns["speakers"] == ["SPK01", "SPK02"]
    hypothesis = next(iter(load_rttm(out / "work/diarize/turns.rttm").values()))
    metric = DiarizationErrorRate()
    # Each found speaker is mostly one of the two real ones, not both halves of one.
    assert sorted(metric.optimal_mapping(REFERENCE, hypothesis).values()) == ["speaker90", "speaker91"]
    # One speaker for everything scores about 50 %; 8 points are overlapped speech, about 4 the
    # first word, which the separated DX holds 20 dB down.
    assert metric(REFERENCE, hypothesis) < 0.30
