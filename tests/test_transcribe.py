"""The transcribe stage with a tiny random Whisper model built here (tests/tiny_whisper.py; no download).

What the model says is meaningless; what is tested is the wiring: loading,
language detection, turn-by-turn windows, word assignment, outputs, the
cue lists and QC built from them, caching, and every bad input the issue
names.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubprep.cache import read_manifest
from dubprep.cli import main
from dubprep.config import load_project
from dubprep.errors import ConfigError, ModelError
from dubprep.media import MediaInfo
from dubprep.stages.backends import fasterwhisper
from dubprep.stages.transcribe import TranscribeStage
from dubprep.stems import DX, MIX, WorkWriter
from dubprep.transcript import read_transcript
from speech import SAMPLE_RTTM, sample_speech_48k, speech_with_background
from tiny_whisper import build_tiny_whisper

RATE = 48_000
SHORT_TURN = {"speaker": "spk_b", "start_s": 19.0, "end_s": 19.15, "overlap": False}  # under 0.2 s


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("models") / "tiny-whisper")


def exclusive_turns(seconds: float) -> list[dict]:
    """pyannote's reference turns of the speech sample, made one speaker at a time, and a turn of 0.15 s."""
    rows = sorted((float(f[3]), float(f[3]) + float(f[4]), f[7]) for f in map(str.split, SAMPLE_RTTM.read_text().splitlines()))
    turns, end_s = [], 0.0
    for start_s, stop_s, label in rows:
        start_s = max(start_s, end_s)
        if stop_s - start_s > 0.05 and start_s < seconds:
            turns.append({"speaker": label, "start_s": start_s, "end_s": min(stop_s, seconds), "overlap": False})
            end_s = stop_s
    return [t for t in turns if t["end_s"] <= SHORT_TURN["start_s"] or t["start_s"] >= SHORT_TURN["end_s"]]


def programme(folder: Path, seconds: float = 20.0, speech: bool = True, me_speech: tuple[float, float] | None = (3.0, 5.0)) -> dict[str, Path]:
    """DX (the sample's speech, stereo), ME (noise, with speech left in at ``me_speech``), media.json, turns.json."""
    folder.mkdir()
    frames = round(seconds * RATE)
    voice = sample_speech_48k()[:frames] * 0.5 if speech else np.zeros(frames, np.float32)
    rng = np.random.default_rng(0)
    me = rng.normal(0.0, 0.003, size=(frames, 2)).astype(np.float32)
    if me_speech:
        span = slice(round(me_speech[0] * RATE), round(me_speech[1] * RATE))
        me[span] += sample_speech_48k()[round(10.6 * RATE) :][: span.stop - span.start, None]
    dx = np.stack([voice, voice], axis=1)  # shape: (frames, 2)
    for name, data in ((DX, dx), (MIX, dx + me)):  # as extract and separate store them; ME = mix - DX
        with WorkWriter(folder / name, 2) as writer:
            writer.write(data)
    MediaInfo("reel.wav", 0, "pcm_f32le", "stereo", 2, RATE, frames, RATE, 0.0, None, None).save(folder / "media.json")
    short = [SHORT_TURN] if SHORT_TURN["end_s"] <= seconds else []
    turns = sorted(exclusive_turns(seconds) + short, key=lambda t: t["start_s"]) if speech else []
    speakers = sorted({t["speaker"] for t in turns})
    (folder / "turns.json").write_text(json.dumps({"speakers": speakers, "turns": turns, "exclusive_turns": turns}))
    return {name: folder / name for name in TranscribeStage.inputs}


@pytest.fixture
def transcribe(run_stage):
    """``run(tmp_path, inputs, **params)``: the stage on ``inputs``; its work folder."""

    def run(tmp_path: Path, inputs: dict[str, Path], caplog=None, **params) -> Path:
        return run_stage(TranscribeStage, params, inputs, tmp_path / "work", Path("reel.wav"))

    return run


def test_stage_writes_every_word_once_in_the_turn_that_holds_it(transcribe, tmp_path, tiny_model, caplog):
    inputs = programme(tmp_path / "in")
    caplog.set_level(logging.INFO, logger="test.transcribe")
    work = transcribe(tmp_path, inputs, model=str(tiny_model))
    about, turns = read_transcript(work / "transcript.json")
    diarized = json.loads(inputs["turns.json"].read_text())["exclusive_turns"]
    assert [(t.speaker, t.diarized_start_s, t.diarized_end_s) for t in turns] == [
        (d["speaker"], d["start_s"], d["end_s"]) for d in diarized
    ]
    assert about["language_source"] == "detected" and about["language"] in fasterwhisper.language_codes()
    assert f"language {about['language']} detected" in caplog.text
    words = [w for t in turns for w in t.words]
    assert len(words) > 20  # the tiny model says something in every turn
    keys = [{(w.text, w.start_s, w.end_s) for w in t.words} for t in turns]
    assert all(not (a & b) for i, a in enumerate(keys) for b in keys[i + 1 :])  # no word kept by two turns
    for turn in turns:
        assert turn.text == "".join(w.text for w in turn.words).strip()
        for word in turn.words:  # inside the turn's window; in another turn's span only if it holds less of it
            assert turn.diarized_start_s - 0.2 - 1e-6 <= word.start_s <= word.end_s <= turn.diarized_end_s + 0.2 + 1e-6
            assert 0.0 <= word.probability <= 1.0
        if turn.words:  # fitted to the first and last word
            assert (turn.start_s, turn.end_s) == (round(turn.words[0].start_s, 3), round(max(w.end_s for w in turn.words), 3))
    short = next(t for t in turns if t.diarized_start_s == SHORT_TURN["start_s"])
    assert short.diarized_end_s - short.diarized_start_s < 0.2  # transcribed like the others, no error
    me = json.loads((work / "words_in_me.json").read_text())
    assert me["language"] == about["language"]
    (span,) = me["spans"]  # the speech left in the M&E at 3-5 s
    assert 2.9 <= span["start_s"] < 3.3 and 4.7 < span["end_s"] <= 5.3
    assert span["words"] and span["text"]


def test_a_given_language_is_used_and_turns_can_keep_diarize_times(transcribe, tmp_path, tiny_model):
    inputs = programme(tmp_path / "in", seconds=12.0, me_speech=None)
    work = transcribe(tmp_path, inputs, model=str(tiny_model), language="fr", fit_turns=False)
    about, turns = read_transcript(work / "transcript.json")
    assert (about["language"], about["language_source"]) == ("fr", "given")
    assert all((t.start_s, t.end_s) == (t.diarized_start_s, t.diarized_end_s) for t in turns)
    assert json.loads((work / "words_in_me.json").read_text())["spans"] == []


def test_a_programme_without_speech_gives_empty_outputs_without_loading_the_model(transcribe, tmp_path):
    inputs = programme(tmp_path / "in", seconds=8.0, speech=False, me_speech=None)
    work = transcribe(tmp_path, inputs, model=str(tmp_path / "no such model"))
    about, turns = read_transcript(work / "transcript.json")
    assert turns == [] and about["language"] is None
    assert json.loads((work / "words_in_me.json").read_text())["spans"] == []


def test_a_corrupted_model_is_one_line_naming_the_folder(transcribe, tmp_path, tiny_model):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.bin").write_bytes((broken / "model.bin").read_bytes()[:5000])
    inputs = programme(tmp_path / "in", seconds=8.0)
    with pytest.raises(ModelError) as error:
        transcribe(tmp_path, inputs, model=str(broken))
    message = str(error.value)
    assert message.startswith(f"{broken}: faster-whisper could not load this model") and "\n" not in message
    (broken / "tokenizer.json").write_text("{not json")
    (broken / "model.bin").write_bytes((tiny_model / "model.bin").read_bytes())
    with pytest.raises(ModelError, match="could not load this model"):
        fasterwhisper.load(str(broken), None, "cpu", 1, logging.getLogger("test"))


def write_project(folder: Path, media: Path, transcribe: str = "") -> Path:
    project = folder / "project.yaml"
    project.write_text(f"extends: default\ninput: '{media}'\noutput: out\n{transcribe}")
    return project


def test_bad_model_references_and_languages_fail_at_validation(tmp_path, tiny_model, monkeypatch):
    media = speech_with_background(tmp_path / "reel.wav", duration_s=2.0)
    missing = tmp_path / "models" / "whisper-small"
    cases = {
        "transcribe: {model: missing/folder/here}": ("missing/folder/here: no such folder; give a registered name",),
        f"transcribe: {{model: '{tiny_model}', language: xx}}": (
            "transcribe.language: 'xx' is not a Whisper language code; use one of: af, am, ar",),
        "transcribe: {model: whisper-small.en, language: fr}": ("model whisper-small.en knows only en, not 'fr'",),
        "transcribe: {model: whisper-small}": (
            f"model whisper-small: not found: {missing / 'config.json'}, {missing / 'model.bin'}, "
            f"{missing / 'tokenizer.json'}, {missing / 'vocabulary.txt'}; get them: "
            "https://huggingface.co/Systran/faster-whisper-small",),
        "transcribe: {modle: whisper-small}": ("transcribe.modle: unknown key; allowed keys here: backend, model, language",),
    }
    monkeypatch.setenv("DUBPREP_MODELS_DIR", str(tmp_path / "models"))
    for key, expected in cases.items():
        with pytest.raises((ConfigError, ModelError)) as error:
            load_project(write_project(tmp_path, media, key + "\n"))
        assert all(part in str(error.value) for part in expected), (key, str(error.value))
        assert "\n" not in str(error.value)
    no_tokenizer = tmp_path / "local model"
    shutil.copytree(tiny_model, no_tokenizer)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"not a faster-whisper model folder: tokenizer.json missing"):
        load_project(write_project(tmp_path, media, "transcribe: {model: local model}\n"))


def test_a_registered_model_is_found_in_the_models_dir_and_its_files_hashed(tmp_path, tiny_model, monkeypatch, capsys):
    media = speech_with_background(tmp_path / "reel.wav", duration_s=2.0)
    models_dir = tmp_path / "models"
    monkeypatch.setenv("DUBPREP_MODELS_DIR", str(models_dir))
    assert main(["models", "path", "whisper-large-v3"]) == 0
    assert capsys.readouterr().out.strip() == str(models_dir / "whisper-large-v3")
    installed = models_dir / "whisper-large-v3"
    shutil.copytree(tiny_model, installed)
    (installed / "preprocessor_config.json").write_text(json.dumps({"feature_size": 80}))
    project = load_project(write_project(tmp_path, media, "transcribe: {model: whisper-large-v3}\n"))
    assert project.transcribe.model == str(installed)
    before = TranscribeStage().model_checksum(project.transcribe)
    (installed / "preprocessor_config.json").write_text(json.dumps({"feature_size": 80, "n_samples": 480000}))
    assert TranscribeStage().model_checksum(project.transcribe) != before
    assert main(["models", "verify", "whisper-large-v3"]) == 0
    assert "whisper-large-v3: unverified" in capsys.readouterr().out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model) -> dict:
    """One programme run through the CLI without transcribe, then with it."""
    folder = tmp_path_factory.mktemp("transcribe_run")
    media = speech_with_background(folder / "reel.wav", duration_s=12.0)
    project = write_project(folder, media)
    assert main(["run", str(project), "--quiet"]) == 0
    out = folder / "out"
    plain = {stage: read_manifest(out / "work" / stage)["key"] for stage in ("extract", "separate", "diarize")}
    plain["assemble"] = read_manifest(out / "deliverables")["key"]
    plain_files = sorted(p.name for p in (out / "deliverables").iterdir())
    write_project(folder, media, f"transcribe: {{model: '{tiny_model}'}}\n")
    code = main(["run", str(project), "--quiet"])
    return {"project": project, "out": out, "plain_keys": plain, "plain_files": plain_files, "code": code}


def test_without_transcribe_nothing_is_added(runs):
    assert "transcript.json" not in runs["plain_files"] and "cues.vtt" not in runs["plain_files"]
    assert {"cues.csv", "cues.srt", "qc.json"} <= set(runs["plain_files"])
    assert runs["code"] in (0, 3)  # 3: QC flagged the delivery; everything was written


def test_run_with_transcribe_writes_every_output(runs):
    out = runs["out"] / "deliverables"
    _, turns = read_transcript(out / "transcript.json")
    with open(out / "cues.csv", newline="", encoding="utf-8") as f:
        cues = list(csv.DictReader(f))
    assert any(cue["dialogue"] for cue in cues)
    assert " ".join(c["dialogue"] for c in cues if c["dialogue"]) == " ".join(t.text for t in turns if t.text)
    srt = (out / "cues.srt").read_text(encoding="utf-8")
    vtt = (out / "cues.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT\n\n1\n") and vtt.count(" --> ") == len(cues) == srt.count(" --> ")
    first = next(c for c in cues if c["dialogue"])
    assert f"<v {first['speaker']}>" in vtt and f"[{first['speaker']}]\n" in srt
    with open(out / "dialogue_list.csv", newline="", encoding="utf-8") as f:
        lines = list(csv.DictReader(f))
    assert sorted(int(line["cue"]) for line in lines) == list(range(1, len(cues) + 1))
    assert [line["character"] for line in lines] == sorted(line["character"] for line in lines)
    by_number = {int(c["cue"]): c for c in cues}
    assert all(by_number[int(l["cue"])]["dialogue"] == l["line"] and by_number[int(l["cue"])]["tc_in"] == l["tc_in"]
               for l in lines)
    qc = json.loads((out / "qc.json").read_text())
    assert "words" in qc["dialogue_in_me"]
    for span in qc["dialogue_in_me"]["words"]:
        assert span["timecode"] and all(w["timecode"] for w in span["words"])
    assert "Words found in the M&amp;E" in (out / "report.html").read_text(encoding="utf-8")


def test_transcribe_is_cached_and_leaves_the_other_stages_keys_alone(runs, capsys):
    out, project = runs["out"], runs["project"]
    for stage in ("extract", "separate", "diarize"):
        assert read_manifest(out / "work" / stage)["key"] == runs["plain_keys"][stage]
    log = (out / "dubprep.log").read_text()
    second_run = log[log.rindex("run: "):]
    assert "extract: cached" in second_run and "diarize: cached" in second_run
    assert "transcribe: running (no previous result)" in second_run
    assert main(["plan", str(project)]) == 0
    assert all("cached" in line for line in capsys.readouterr().out.splitlines())
    manifest = read_manifest(out / "work" / "transcribe")
    model = load_project(project).transcribe.model
    assert manifest["model"] == fasterwhisper.checksum(model, None)
    assert manifest["params"]["model"].startswith("sha256 of folder:")  # keyed by content, not where it lives
    project.write_text(project.read_text().replace("transcribe: {model:", "transcribe: {beam_size: 1, model:"))
    assert main(["plan", str(project)]) == 0
    assert "transcribe.beam_size: 5 -> 1" in capsys.readouterr().out
    project.write_text("\n".join(line for line in project.read_text().splitlines() if not line.startswith("transcribe:")) + "\n")
    assert main(["run", str(project), "--quiet"]) in (0, 3)
    assert read_manifest(out / "deliverables")["key"] == runs["plain_keys"]["assemble"]
    assert "transcript.json" not in {p.name for p in (out / "deliverables").iterdir()}
    assert main(["run", str(project), "--quiet", "--from", "transcribe"]) == 1
    assert "transcribe: not a stage of this project" in capsys.readouterr().err
