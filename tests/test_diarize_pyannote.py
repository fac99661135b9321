"""Diarize with the pyannote backend, through a pipeline folder built here.

The folder has the layout of pyannote/speaker-diarization-community-1
(config.yaml, segmentation and embedding checkpoints, PLDA), but its models
are small and randomly initialised: the turns mean nothing, the wiring is
real (loading, device, waveform, speaker count, labels, outputs).
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import lightning
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from pyannote.audio.core.task import Problem, Resolution, Specifications
from pyannote.audio.models.embedding import WeSpeakerResNet34
from pyannote.audio.models.segmentation import PyanNet
from pyannote.database.util import load_rttm
from pydantic import ValidationError

from dubprep.config import load_project
from dubprep.errors import ModelError
from dubprep.stages.backends import pyannote_diarizer
from dubprep.stages.diarize import DiarizeStage
from speech import SAMPLE_WAV, sample_speech_48k

CHUNK_S = 5.0


def save_checkpoint(model: torch.nn.Module, folder: Path) -> None:
    """A Lightning checkpoint as pyannote.audio writes one (its ``pyannote.audio`` entry included)."""
    folder.mkdir(parents=True)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, folder / "pytorch_model.bin")


def segmentation_model() -> PyanNet:
    """Powerset segmentation over 3 speakers, 2 at a time, as community-1's, with tiny layers.

    An untrained classifier gives nearly the same scores for any audio, so
    its weights are scaled up until its choice changes with the audio, and
    the two-speaker classes are pushed down so that there are frames of one
    speaker alone, which pyannote needs to cluster.
    """
    model = PyanNet(lstm={"hidden_size": 16, "num_layers": 1}, linear={"hidden_size": 16, "num_layers": 1})
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=CHUNK_S,
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model.build()
    with torch.no_grad():
        model.classifier.weight *= 100.0
        model.classifier.bias[4:] -= 5.0  # classes: none, {1}, {2}, {3}, {1, 2}, {1, 3}, {2, 3}
    return model


def embedding_model() -> WeSpeakerResNet34:
    """WeSpeaker ResNet34 (256-d) on 16 mel bands instead of 80, to keep it quick on a CPU."""
    model = WeSpeakerResNet34(num_mel_bins=16)
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=CHUNK_S, classes=["a", "b"]
    )
    model.build()
    return model


def write_plda(folder: Path) -> None:
    """An orthonormal 256 -> 128 LDA and an identity PLDA with decreasing between-speaker variances."""
    folder.mkdir()
    lda = np.linalg.qr(np.random.default_rng(0).normal(size=(256, 128)))[0]  # shape: (256, 128)
    np.savez(folder / "xvec_transform.npz", mean1=np.zeros(256), mean2=np.zeros(128), lda=lda)
    np.savez(folder / "plda.npz", mu=np.zeros(128), tr=np.eye(128), psi=np.linspace(2.0, 0.1, 128))


@pytest.fixture(scope="session")
def pipeline_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("community-like")
    torch.manual_seed(1)
    save_checkpoint(segmentation_model(), folder / "segmentation")
    save_checkpoint(embedding_model(), folder / "embedding")
    write_plda(folder / "plda")
    config = {
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": "$model/segmentation",
                "embedding": "$model/embedding",
                "plda": "$model/plda",
                "clustering": "VBxClustering",
                "embedding_exclude_overlap": True,
                "segmentation_step": 0.5,  # community-1 slides by 10 %; half the chunks keep the test quick
                "segmentation_batch_size": 8,
                "embedding_batch_size": 8,
            },
        },
        "params": {"segmentation": {"min_duration_off": 0.0}, "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}},
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def sample_run(diarize, tmp_path_factory, pipeline_folder) -> Path:
    return diarize(
        tmp_path_factory.mktemp("pyannote"), sample_speech_48k(), backend="pyannote",
        pyannote_pipeline=str(pipeline_folder),
    )


def assert_disjoint(turns: list[dict]) -> None:
    ordered = sorted((t["start_s"], t["end_s"]) for t in turns)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(ordered, ordered[1:]))


def test_pipeline_folder_runs_end_to_end_on_real_speech(sample_run):
    turns = json.loads((sample_run / "turns.json").read_text())
    assert turns["turns"], "the random segmentation model still marks some speech"
    assert all(s == f"SPK{i + 1:02d}" for i, s in enumerate(turns["speakers"]))
    assert list(dict.fromkeys(t["speaker"] for t in turns["turns"])) == turns["speakers"]
    assert all(0.0 <= t["start_s"] < t["end_s"] <= 30.0 for t in turns["turns"] + turns["exclusive_turns"])
    assert {t["speaker"] for t in turns["exclusive_turns"]} <= set(turns["speakers"])
    assert_disjoint(turns["exclusive_turns"])
    rttm = next(iter(load_rttm(sample_run / "turns.rttm").values()))
    from_rttm = sorted((label, s.start, s.end) for s, _, label in rttm.itertracks(yield_label=True))
    from_json = sorted((t["speaker"], t["start_s"], t["end_s"]) for t in turns["turns"])
    assert [label for label, _, _ in from_rttm] == [label for label, _, _ in from_json]
    # RTTM stores start and duration to the ms, JSON start and end: ends may differ by rounding.
    np.testing.assert_allclose([t[1:] for t in from_rttm], [t[1:] for t in from_json], atol=0.0015)
    centroids = np.load(sample_run / "speakers.npz")
    assert sorted(centroids.files) == sorted(turns["speakers"])
    for name in centroids.files:
        assert centroids[name].shape == (256,)
        assert np.linalg.norm(centroids[name]) in (pytest.approx(0.0), pytest.approx(1.0, abs=1e-5))
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "0"


def test_overlap_flags_come_from_overlapping_turns(sample_run):
    turns = json.loads((sample_run / "turns.json").read_text())["turns"]
    for turn in turns:
        others = [t for t in turns if t["speaker"] != turn["speaker"]]
        overlapped = any(t["start_s"] < turn["end_s"] and turn["start_s"] < t["end_s"] for t in others)
        assert turn["overlap"] == overlapped


def test_more_speakers_asked_than_heard_warns_instead_of_crashing(diarize, tmp_path, pipeline_folder, caplog):
    """pyannote's own k-means raises when asked for more speakers than it has voice embeddings."""
    with caplog.at_level(logging.WARNING, logger="test.diarize"):
        work = diarize(
            tmp_path, sample_speech_48k(), backend="pyannote", pyannote_pipeline=str(pipeline_folder),
            num_speakers=40,
        )
    assert "pyannote hears fewer distinct voices than the 40 asked for" in caplog.text
    assert "fewer than the 40 asked for" in caplog.text
    turns = json.loads((work / "turns.json").read_text())
    assert 1 <= len(turns["speakers"]) < 40
    assert sorted(np.load(work / "speakers.npz").files) == sorted(turns["speakers"])


def test_reference_clip_is_embedded_by_the_pipeline_model(diarize, tmp_path, pipeline_folder, caplog):
    """Random models find every voice alike, so the clip names the speaker that has a centroid."""
    clip = tmp_path / "alice.wav"
    speech, rate = sf.read(SAMPLE_WAV, dtype="float32")
    sf.write(clip, speech[round(21.85 * rate) : round(27.8 * rate)], rate)
    with caplog.at_level(logging.INFO, logger="test.diarize"):
        work = diarize(
            tmp_path / "run", sample_speech_48k(), backend="pyannote", pyannote_pipeline=str(pipeline_folder),
            speakers={"ALICE": clip}, reference_similarity=0.5,
        )
    assert "ALICE named from" in caplog.text
    centroids = np.load(work / "speakers.npz")
    assert sorted(json.loads((work / "turns.json").read_text())["speakers"]) == sorted(centroids.files)
    assert "ALICE" in centroids.files
    assert np.linalg.norm(centroids["ALICE"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("missing", "names"),
    [("config.yaml", "pyannote.audio pipeline folder"), ("embedding/pytorch_model.bin", "names it (embedding)"),
     ("plda/plda.npz", "names it (plda)")],
)
def test_incomplete_folder_fails_naming_the_missing_file(diarize, tmp_path, pipeline_folder, missing, names):
    folder = tmp_path / "copy"
    shutil.copytree(pipeline_folder, folder)
    (folder / missing).unlink()
    params = DiarizeStage.validate_params({"backend": "pyannote", "pyannote_pipeline": str(folder)})
    with pytest.raises(ModelError, match=rf"{re.escape(str(folder / missing))}: not found.*{re.escape(names)}"):
        DiarizeStage().model_checksum(params)
    with pytest.raises(ModelError, match=rf"{re.escape(str(folder / missing))}: not found"):
        diarize(tmp_path / "run", sample_speech_48k()[:48000], backend="pyannote", pyannote_pipeline=str(folder))


def test_cache_key_follows_the_folder_contents(tmp_path, pipeline_folder):
    folder = tmp_path / "copy"
    shutil.copytree(pipeline_folder, folder)
    params = DiarizeStage.validate_params({"backend": "pyannote", "pyannote_pipeline": str(folder)})
    before = DiarizeStage().model_checksum(params)
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert DiarizeStage().model_checksum(params) == before
    with open(folder / "plda" / "plda.npz", "ab") as f:
        f.write(b"\0")
    assert DiarizeStage().model_checksum(params) != before


def test_hub_id_without_token_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ModelError, match="not a local folder.*set HF_TOKEN"):
        pyannote_diarizer.load_pipeline("pyannote/speaker-diarization-community-1", "cpu")


def test_hub_id_offline_fails_clearly(tmp_path):
    """Offline mode is read when huggingface_hub is imported, hence a fresh interpreter."""
    script = (
        "from dubprep.stages.backends import pyannote_diarizer\n"
        "pyannote_diarizer.load_pipeline('pyannote/speaker-diarization-community-1', 'cpu')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_not_a_real_token", "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    expected = "ModelError: diarize.pyannote_pipeline: could not fetch 'pyannote/speaker-diarization-community-1'"
    assert expected in result.stderr


def test_pyannote_needs_a_pipeline_and_a_missing_path_is_named():
    with pytest.raises(ValidationError, match="backend pyannote needs pyannote_pipeline"):
        DiarizeStage.validate_params({"backend": "pyannote"})
    with pytest.raises(ModelError, match="/no/such/pipeline: no such folder"):
        pyannote_diarizer.load_pipeline("/no/such/pipeline", "cpu")
    with pytest.raises(ModelError, match="/no/such/pipeline: no such folder"):
        DiarizeStage().model_checksum(
            DiarizeStage.validate_params({"backend": "pyannote", "pyannote_pipeline": "/no/such/pipeline"})
        )
    hub_id = "pyannote/speaker-diarization-community-1"
    hub = DiarizeStage.validate_params({"backend": "pyannote", "pyannote_pipeline": hub_id})
    assert DiarizeStage().model_checksum(hub) == DiarizeStage().model_checksum(hub)


def test_pipeline_folder_is_relative_to_the_project_file_and_a_hub_id_is_kept(tmp_path, monkeypatch):
    show = tmp_path / "show"
    (show / "models" / "community-1").mkdir(parents=True)
    sf.write(show / "reel.wav", np.zeros(4800, np.float32), 48000)
    project = show / "reel1.yaml"
    monkeypatch.chdir(tmp_path)
    for given, expected in (("models/community-1", str(show / "models" / "community-1")),
                            ("pyannote/speaker-diarization-community-1", "pyannote/speaker-diarization-community-1")):
        settings = {"input": "reel.wav", "output": "out", "diarize": {"backend": "pyannote", "pyannote_pipeline": given}}
        project.write_text(yaml.safe_dump(settings))
        assert load_project(project).diarize.pyannote_pipeline == expected


def test_a_run_leaves_nothing_in_the_temporary_folder(tmp_path, pipeline_folder):
    """lightning and onnxruntime write into TMPDIR when imported; a render node must not collect it per job."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    script = (
        "import sys, soundfile, torch\n"
        "from dubprep.stages.backends import pyannote_diarizer\n"
        "pipeline = pyannote_diarizer.load_pipeline(sys.argv[1], 'cpu')\n"
        "speech, rate = soundfile.read(sys.argv[2], dtype='float32', frames=10 * 16000)\n"
        "pipeline({'waveform': torch.from_numpy(speech)[None], 'sample_rate': rate})\n"
    )
    env = {**os.environ, "TMPDIR": str(scratch)}
    result = subprocess.run([sys.executable, "-c", script, str(pipeline_folder), str(SAMPLE_WAV)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in scratch.iterdir()) == []
