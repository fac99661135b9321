"""The cache key follows the code a stage really runs: every dubprep module it imports, comments and docstrings aside."""

import json

import pytest

from dubprep import cache
from dubprep.cache import code_hash, module_source
from dubprep.cli import main
from dubprep.stage import stages


def edit(monkeypatch, module: str, replacements: dict[str, str]) -> None:
    """Make ``module``'s source read as if each key had been replaced by its value in its file."""
    edited = module_source(module)
    for old, new in replacements.items():
        assert edited.count(old) == 1, f"{old!r} is not in {module} once"
        edited = edited.replace(old, new)
    real = cache.module_source
    monkeypatch.setattr(cache, "module_source", lambda name: edited if name == module else real(name))


def code_hashes() -> dict[str, str]:
    """Each stage's code hash, with its default parameters."""
    return {stage.name: code_hash(stage.code_modules(stage.validate_params({}))) for stage in stages()}


def planned(capsys, project) -> dict[str, str]:
    assert main(["plan", str(project)]) == 0
    lines = [line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines()]
    return {name: rest for name, rest in lines}


def test_a_comment_or_docstring_edit_in_a_stage_reruns_nothing(finished_copy, monkeypatch, capsys):
    project, _ = finished_copy
    before = code_hashes()
    edit(monkeypatch, "dubprep.stages.separate", {
        '    """How dialogue is searched for;': '    """How dialogue is sought;',  # a docstring
        "\n\nSTORED = ": "\n\n# The stems, as files.\nSTORED = ",  # a comment
        "    ctx.progress.finish()": "    ctx.progress.finish()  # done",  # a comment at the end of a line
    })
    assert code_hashes() == before
    assert all(rest.startswith("cached") for rest in planned(capsys, project).values())


def test_a_function_changed_in_audio_io_reruns_every_stage_that_imports_it(finished_copy, monkeypatch, capsys):
    project, _ = finished_copy
    before = code_hashes()
    edit(monkeypatch, "dubprep.audio_io", {'if name != "LFE")': 'if name not in ("LFE",))'})
    after = code_hashes()
    assert all(after[name] != before[name] for name in ("extract", "separate", "diarize", "assemble"))
    assert planned(capsys, project)["extract"] == "will run (code changed)"


def test_a_module_only_some_stages_import_reruns_only_those(monkeypatch):
    before = code_hashes()
    edit(monkeypatch, "dubprep.vad", {"LANE_WINDOWS = 320": "LANE_WINDOWS = 321"})
    changed = {name for name, value in code_hashes().items() if value != before[name]}
    assert changed == {"diarize", "transcribe", "assemble"}  # the diarizer's, the M&E search's and QC's VAD


def test_a_backends_own_module_keys_only_the_stage_that_uses_it(monkeypatch):
    before = code_hashes()
    edit(monkeypatch, "dubprep.stages.backends.mefx", {"RISE = 8.0": "RISE = 9.0"})
    changed = {name for name, value in code_hashes().items() if value != before[name]}
    assert changed == {"separate"}


def test_a_manifest_from_an_older_dubprep_reruns_its_stage(finished_copy, capsys):
    project, out = finished_copy
    manifest_path = out / "work/separate/manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["code"]  # as an older version wrote it
    manifest_path.write_text(json.dumps(manifest))
    assert planned(capsys, project)["separate"] == "will run (no previous result)"
    assert main(["run", str(project), "--quiet"]) == 0


@pytest.mark.parametrize("module", ["dubprep.stages.backends.dfn3", "dubprep.qc.run"])
def test_every_stage_module_and_its_imports_are_in_its_closure(module):
    closures = {stage.name: cache.code_closure(stage.code_modules(stage.validate_params({}))) for stage in stages()}
    assert any(module in closure for closure in closures.values())
    assert "dubprep.audio_io" in closures["extract"] and "dubprep.stages.backends.streaming" in closures["separate"]
