"""dubprep grows by new modules: a separation backend and a stage, each registered once and run by the CLI."""

import json

import numpy as np
import pytest
import soundfile as sf
from pydantic import BaseModel, ConfigDict

from dubprep import stage as stage_registry
from dubprep.cache import read_manifest
from dubprep.cli import main
from dubprep.stage import Stage, StageContext, register
from dubprep.stages.backends.separation import SEPARATORS
from speech import speech_with_background


@pytest.fixture
def identity():
    """The README's example backend, registered under 'identity' for one test."""
    SEPARATORS.register("identity", "identity_backend:Identity")
    yield
    SEPARATORS.unregister("identity")


def test_a_backend_in_one_module_and_a_registry_line_runs_the_whole_pipeline(identity, write_project, tmp_path, capsys):
    media = speech_with_background(tmp_path / "reel.wav", duration_s=8.0)
    project = write_project(tmp_path, media, "separate:\n  backend: identity\nassemble:\n  bit_depth: 32\n")
    assert main(["run", str(project), "--quiet"]) == 0, capsys.readouterr().err
    out = tmp_path / "out"
    mix, _ = sf.read(out / "work/extract/mix.flac", dtype="float32")
    delivered = {asset: sf.read(out / f"deliverables/PROGRAMME_{asset}_2ch_48k_32f.wav", dtype="float32")[0]
                 for asset in ("DX", "ME", "MX", "FX")}
    # Heard as mid and side, turned back into left and right: the mix to float32 rounding.
    np.testing.assert_allclose(delivered["DX"], mix, rtol=0, atol=1e-7)
    assert np.abs(delivered["ME"]).max() < 1e-7 and not delivered["MX"].any()
    np.testing.assert_array_equal(delivered["FX"], delivered["ME"])
    assert read_manifest(out / "work/separate")["params"]["backend"] == "identity"
    assert json.loads((out / "deliverables/turns.json").read_text())["speakers"]  # diarized from that DX


class NotesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    heading: str = "SPEAKERS"


class NotesStage(Stage):
    """An optional stage after diarize: off unless the project has a ``notes`` key."""

    name = "notes"
    position = 35
    optional = True
    inputs = ("turns.json",)
    outputs = ("speakers.txt",)
    Params = NotesParams

    def run(self, ctx: StageContext) -> None:
        speakers = json.loads(ctx.inputs["turns.json"].read_text())["speakers"]
        ctx.output("speakers.txt").write_text("\n".join([ctx.params.heading, *speakers]) + "\n")


@pytest.fixture
def notes(monkeypatch):
    """NotesStage registered for one test (the registry is this test's own copy)."""
    monkeypatch.setattr(stage_registry, "_REGISTERED", dict(stage_registry._REGISTERED))
    register(NotesStage)


def statuses(printed: str) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in printed.splitlines() if len(line.split()) > 1}


def test_a_stage_that_is_off_unless_asked_is_one_registered_module(notes, finished_copy, capsys):
    project, out = finished_copy
    assert main(["run", str(project)]) == 0
    assert "notes" not in statuses(capsys.readouterr().out)  # off: not run, not planned
    assert not (out / "work/notes").exists()
    assert main(["run", str(project), "--from", "notes"]) == 1  # the command line knows it, the project does not
    assert "notes: not a stage of this project" in capsys.readouterr().err
    project.write_text(project.read_text() + "notes:\n  heading: CAST\n")  # the project schema knows the stage
    assert main(["plan", str(project), "--from", "notes"]) == 0
    assert "notes      will run (forced)" in capsys.readouterr().out
    assert main(["run", str(project)]) == 0
    ran = statuses(capsys.readouterr().out)
    assert ran == {"extract": "cached", "separate": "cached", "diarize": "cached", "notes": "ran", "assemble": "cached"}
    speakers = json.loads((out / "deliverables/turns.json").read_text())["speakers"]
    assert (out / "work/notes/speakers.txt").read_text().split() == ["CAST", *speakers]
