"""Project files: presets, overrides and one-line validation errors."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubprep.cli import main
from dubprep.config import load_project, preset_names
from dubprep.errors import ConfigError
from dubprep.models import ENV_VAR


@pytest.fixture
def media(tmp_path: Path) -> Path:
    path = tmp_path / "reel 1 é.wav"
    sf.write(path, np.zeros((4800, 2), dtype=np.float32), 48000)
    return path


def write_project(folder: Path, text: str) -> Path:
    path = folder / "project.yaml"
    path.write_text(text)
    return path


def test_shipped_presets_are_valid(media):
    assert {"default", "stereo-fast", "film-5.1"} <= set(preset_names())
    for name in preset_names():
        project = write_project(media.parent, f"extends: {name}\ninput: '{media.name}'\noutput: out\n")
        assert load_project(project).input == media


def test_project_keys_override_preset(media):
    project = write_project(media.parent, f"extends: film-5.1\ninput: '{media.name}'\noutput: out\nassemble:\n  bit_depth: 16\n")
    loaded = load_project(project)
    assert loaded.assemble.bit_depth == 16
    assert loaded.assemble.crossfade_ms == 20  # from film-5.1
    assert loaded.output == media.parent / "out"


def test_wrong_value_names_file_key_and_allowed_values(media):
    project = write_project(media.parent, f"input: '{media.name}'\noutput: out\nseparate:\n  backend: demux\n")
    with pytest.raises(ConfigError) as err:
        load_project(project)
    assert str(err.value) == f"{project}: separate.backend: 'demux' is not one of: dfn3-spatial, dfn3, bandit, cinesep"


def test_unknown_key_lists_allowed_keys(media):
    project = write_project(media.parent, f"input: '{media.name}'\noutput: out\nassemble:\n  bitdepth: 24\n")
    with pytest.raises(ConfigError, match=r"assemble\.bitdepth: unknown key; allowed keys here: title, bit_depth, crossfade_ms, name_template, split_mono, frame_rate, start_timecode"):
        load_project(project)


def test_wrong_type_names_key(media):
    project = write_project(media.parent, f"input: '{media.name}'\noutput: out\nassemble:\n  crossfade_ms: long\n")
    with pytest.raises(ConfigError, match=r"project\.yaml: assemble\.crossfade_ms: .*got 'long'"):
        load_project(project)


def test_missing_input_file_fails_before_work(media):
    project = write_project(media.parent, "input: nowhere.mov\noutput: out\n")
    with pytest.raises(ConfigError, match=r"input: .*nowhere\.mov: file not found; fix the path"):
        load_project(project)
    assert not (media.parent / "out").exists()


def test_unknown_preset_lists_presets(media):
    project = write_project(media.parent, f"extends: cinema\ninput: '{media.name}'\noutput: out\n")
    with pytest.raises(ConfigError, match=r"extends: 'cinema' is not one of: default, film-5.1, stereo-fast"):
        load_project(project)


def test_yaml_syntax_error_gives_line(media):
    project = write_project(media.parent, "input: [unclosed\noutput: out\n")
    with pytest.raises(ConfigError, match=r"project\.yaml: line \d+: not valid YAML"):
        load_project(project)


def test_command_line_overrides_input_and_output(media, tmp_path, monkeypatch):
    other = tmp_path / "other.wav"
    sf.write(other, np.zeros((4800, 1), dtype=np.float32), 48000)
    project = write_project(media.parent, f"input: '{media.name}'\noutput: out\n")
    monkeypatch.chdir(tmp_path)
    loaded = load_project(project, Path("other.wav"), Path("reel2"))
    assert (loaded.input, loaded.output) == (other, tmp_path / "reel2")


def test_no_project_runs_default_preset_and_needs_input(media):
    with pytest.raises(ConfigError, match=r"preset 'default': input: required; .* --input"):
        load_project(None)
    assert load_project(None, media, media.parent / "out").separate.backend == "dfn3-spatial"


def test_cli_validate_exit_codes(media, capsys):
    good = write_project(media.parent, f"input: '{media.name}'\noutput: out\n")
    assert main(["validate", str(good)]) == 0
    bad = media.parent / "bad.yaml"
    bad.write_text(f"input: '{media.name}'\noutput: out\ndiarize:\n  max_speakers: many\n")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}: diarize.max_speakers:") and "\n" not in err


def test_project_models_dir_is_relative_to_the_project(media, monkeypatch):
    monkeypatch.setenv(ENV_VAR, "/elsewhere")
    text = f"input: '{media.name}'\noutput: out\nmodels:\n  dir: weights\nseparate:\n  backend: bandit\n  model: bandit-plus-dnr\n"
    loaded = load_project(write_project(media.parent, text))
    assert loaded.models.dir == media.parent / "weights"
    assert loaded.separate.model == str(media.parent / "weights" / "bandit-plus-dnr")


def test_bandit_without_model_uses_bandit_v2_in_the_environment_dir(media, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(media.parent / "env models"))
    loaded = load_project(write_project(media.parent, f"input: '{media.name}'\noutput: out\nseparate:\n  backend: bandit\n"))
    assert loaded.separate.model == str(media.parent / "env models" / "bandit-v2-dnr3-multi")


def test_model_directory_path_is_relative_to_the_project(media):
    text = f"input: '{media.name}'\noutput: out\nseparate:\n  backend: bandit\n  model: my-models/film\n"
    assert load_project(write_project(media.parent, text)).separate.model == str(media.parent / "my-models" / "film")


@pytest.mark.parametrize(
    ("separate", "message"),
    [
        ("model: bandit-plus-dnr", r"separate\.model: only the bandit backend takes it; remove it or set separate\.backend"),
        ("backend: bandit\n  model: dfn3", r"separate\.model: dfn3 is a deepfilternet3 model; the bandit backend runs: bandit-v2"),
        ("backend: bandit\n  atten_lim_db: 12", r"separate\.atten_lim_db: only the dfn3-spatial and dfn3 backends take it"),
        ("backend: cinesep\n  atten_lim_db: 12", r"separate\.atten_lim_db: only the dfn3-spatial and dfn3 backends take it"),
        ("backend: cinesep\n  model: bandit-plus-dnr", r"separate\.model: only the bandit backend takes it"),
    ],
)
def test_backend_options_that_do_not_go_together(media, separate, message):
    project = write_project(media.parent, f"input: '{media.name}'\noutput: out\nseparate:\n  {separate}\n")
    with pytest.raises(ConfigError, match=message):
        load_project(project)
