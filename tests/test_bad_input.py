"""Bad input a user really gives: one clear line naming the file and the fix, a non-zero exit, nothing written.

The numbered cases are issue 19's; each failed before its fix.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubprep.cli import main
from dubprep.config import OUTPUT_MANAGED, load_project
from media_factory import make_media
from speech import speech_with_background

DUBPREP = Path(sys.executable).parent / "dubprep"
README = Path(__file__).parent.parent / "README.md"


@pytest.fixture
def good(tmp_path: Path) -> Path:
    """A short valid clip."""
    path = tmp_path / "good.wav"
    t = np.arange(48_000) / 48_000
    sf.write(path, 0.1 * np.stack([np.sin(2 * np.pi * 440 * t)] * 2, axis=1), 48_000, subtype="PCM_24")
    return path


def error_of(capsys) -> str:
    """The CLI's closing error line, after checking that its message was said once and no traceback came."""
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    line = err.splitlines()[-1]
    assert (out + err).count(line.removeprefix("error: ")) == 1, err
    return line


def test_output_naming_an_existing_file_is_refused(good, tmp_path, capsys):  # 1
    taken = tmp_path / "notes.txt"
    taken.write_text("mine\n")
    assert main(["run", "-q", "-i", str(good), "-o", str(taken), "--until", "extract"]) == 1
    assert error_of(capsys) == f"error: --output: {taken} is a file, not a folder; choose a folder for the outputs"
    assert taken.read_text() == "mine\n"


@pytest.mark.parametrize("where", ["under a file", "under /proc"])
def test_output_folder_that_cannot_be_created_is_one_line(good, tmp_path, capsys, where):  # 2
    # What a read-only filesystem answers (EROFS) takes the same path as these,
    # which fail for root too: ENOTDIR, and ENOENT in /proc.
    out = tmp_path / "notes.txt" / "out" if where == "under a file" else Path("/proc/dubprep-out")
    (tmp_path / "notes.txt").write_text("mine\n")
    assert main(["run", "-q", "-i", str(good), "-o", str(out), "--until", "extract"]) == 1
    assert re.fullmatch(
        rf"error: {re.escape(str(out))}: cannot create the output folder or write in it \([^)]+\); choose another --output",
        error_of(capsys),
    )


@pytest.mark.parametrize("managed", ["deliverables/PROGRAMME_ME_2ch_48k_24b.wav", "work/extract/mix.flac",
                                     ".dubprep/tmp/extract-1/mix.flac", "dubprep.log"])
def test_input_inside_the_folders_the_run_rewrites_is_refused(good, tmp_path, capsys, managed):  # 3
    out = tmp_path / "out"
    media = out / managed
    media.parent.mkdir(parents=True)
    media.write_bytes(good.read_bytes())
    assert main(["run", "-q", "-i", str(media), "-o", str(out), "--until", "extract"]) == 1
    assert error_of(capsys) == (
        f"error: --input: {media} is among the files a run on {out} rewrites ({managed.split('/')[0]}); "
        f"copy it elsewhere or choose another --output"
    )
    assert media.read_bytes() == good.read_bytes()


def test_input_reached_through_a_link_to_the_output_is_refused(good, tmp_path, capsys):  # 3
    out = tmp_path / "out"
    (out / "work/extract").mkdir(parents=True)
    (out / "work/extract/mix.flac").write_bytes(good.read_bytes())
    (tmp_path / "linked").symlink_to(out / "work")
    assert main(["validate", "-i", str(tmp_path / "linked/extract/mix.flac"), "-o", str(out)]) == 1
    assert f"is among the files a run on {out} rewrites (work)" in error_of(capsys)


def test_a_run_writes_only_what_the_input_check_protects(good, tmp_path):  # 3
    out = tmp_path / "out"
    assert main(["run", "-q", "-i", str(good), "-o", str(out), "--until", "extract"]) == 0
    assert {entry.name for entry in out.iterdir()} <= set(OUTPUT_MANAGED)


def readme_project(folder: Path) -> Path:
    """The README's project file as written, with the files it names made real."""
    text = re.search(r"### Project files\n\n```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S).group(1)
    (folder / "media").mkdir()
    make_media(folder / "media/reel1.mov", audio_streams=[("stereo", "eng")], duration_s=1.0)
    (folder / "refs").mkdir()
    for name, seed in (("alice", 1), ("bob", 2)):
        speech_with_background(folder / f"refs/{name}.wav", duration_s=9.0, seed=seed)  # speech from 6.7 s
    project = folder / "project.yaml"
    project.write_text(text, encoding="utf-8")
    return project


def test_the_readme_project_example_is_valid_as_written(tmp_path, capsys):  # 4
    project = readme_project(tmp_path)
    loaded = load_project(project)
    assert (loaded.extract.language, loaded.extract.audio_stream) == ("eng", None)
    assert (loaded.separate.dialogue_channels, loaded.diarize.num_speakers) == ("all", 3)
    assert set(loaded.diarize.speakers) == {"ALICE", "BOB"}
    assert (loaded.assemble.title, loaded.assemble.crossfade_ms, loaded.output) == ("MYFILM_R1", 20, tmp_path / "out/reel1")
    assert main(["validate", str(project)]) == 0
    assert capsys.readouterr().out.startswith(f"{project}: valid")


@pytest.mark.parametrize(("base", "child", "expected"), [
    ("extract:\n  audio_stream: 1\n", "extract:\n  language: fra\n", ("fra", None)),
    ("extract:\n  language: fra\n", "extract:\n  audio_stream: 1\n", (None, 1)),
])
def test_a_stream_choice_replaces_the_inherited_one(good, tmp_path, base, child, expected):  # 4
    (tmp_path / "base.yaml").write_text(base)
    project = tmp_path / "project.yaml"
    project.write_text(f"extends: base.yaml\ninput: good.wav\noutput: out\n{child}")
    loaded = load_project(project)
    assert (loaded.extract.language, loaded.extract.audio_stream) == expected


def test_both_stream_choices_in_one_file_are_still_an_error(good, tmp_path):  # 4
    project = tmp_path / "project.yaml"
    project.write_text("input: good.wav\noutput: out\nextract:\n  audio_stream: 0\n  language: eng\n")
    assert main(["validate", str(project)]) == 1


def test_a_missing_language_lists_the_streams(tmp_path, capsys):  # 5
    make_media(tmp_path / "reel.mkv", audio_streams=[("stereo", "eng"), ("5.1", "fra")], duration_s=1.0)
    project = tmp_path / "project.yaml"
    project.write_text("extends: film-5.1\ninput: reel.mkv\noutput: out\nextract:\n  language: deu\n")
    assert main(["run", "-q", str(project), "--until", "extract"]) == 1
    assert re.fullmatch(
        rf"error: {re.escape(str(tmp_path / 'reel.mkv'))}: no audio stream in language 'deu'; "
        r"streams: #0 pcm_s24le .* 48000 Hz \[eng\]; #1 pcm_s24le .* 48000 Hz \[fra\]",
        error_of(capsys),
    )


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(good, tmp_path, capsys):  # 6
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + n)}: &{chr(98 + n)} [{', '.join(['*' + chr(97 + n)] * 9)}]" for n in range(8)]
    project = tmp_path / "project.yaml"
    project.write_text("bomb:\n" + "".join(f"  {line}\n" for line in levels) + "input: good.wav\noutput: out\n"
                       "assemble:\n  title: *i\n")
    assert main(["validate", str(project)]) == 1
    assert error_of(capsys) == (
        f"error: {project}: its aliases expand past 10000 values; a project file needs a few dozen, "
        f"write the values out"
    )


def test_an_error_quotes_at_most_a_line_of_the_value(good, tmp_path, capsys):  # 6
    project = tmp_path / "project.yaml"
    project.write_text(f"input: good.wav\noutput: out\nassemble:\n  crossfade_ms: {'x' * 100_000}\n")
    assert main(["validate", str(project)]) == 1
    line = error_of(capsys)
    assert len(line) - len(str(project)) < 200
    assert line.startswith(f"error: {project}: assemble.crossfade_ms: ") and "(100000 characters)" in line


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_empty_output_is_refused(good, tmp_path, monkeypatch, capsys, command):  # 7
    monkeypatch.chdir(tmp_path)
    assert main([command, "-i", str(good), "-o", "", *(["--until", "extract"] if command == "run" else [])]) == 2
    assert "Invalid value for '--output' / '-o': an empty path; name a file or folder" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["good.wav"]


def test_an_empty_output_in_the_project_is_refused(good, tmp_path, capsys):  # 7
    project = tmp_path / "project.yaml"
    project.write_text("input: good.wav\noutput: ''\n")
    assert main(["validate", str(project)]) == 1
    assert error_of(capsys) == f"error: {project}: output: an empty path; give a folder (relative to this file)"


def test_a_folder_given_as_input_is_named_as_a_folder(tmp_path, capsys):
    assert main(["validate", "-i", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    assert error_of(capsys) == f"error: --input: {tmp_path} is a folder; give a media file"


def test_a_symlink_loop_given_as_input_is_named_as_a_loop(tmp_path, capsys):
    (tmp_path / "a.mov").symlink_to(tmp_path / "b.mov")
    (tmp_path / "b.mov").symlink_to(tmp_path / "a.mov")
    assert main(["validate", "-i", str(tmp_path / "a.mov"), "-o", str(tmp_path / "out")]) == 1
    assert error_of(capsys) == f"error: --input: {tmp_path / 'a.mov'}: a symbolic link loop; point it at the media file"


def test_a_missing_input_names_the_option_not_a_preset(tmp_path, capsys):
    assert main(["validate", "-i", str(tmp_path / "absent.mov"), "-o", str(tmp_path / "out")]) == 1
    assert error_of(capsys) == f"error: --input: {tmp_path / 'absent.mov'}: file not found; fix the path"


def test_a_failed_stage_is_said_once_on_the_terminal_and_kept_in_the_log(tmp_path):
    media = tmp_path / "notes.mov"
    media.write_text("a shot list, not a movie\n")
    done = subprocess.run([str(DUBPREP), "run", "-i", str(media), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 1
    said = "notes.mov: not a readable media file"
    assert (done.stdout + done.stderr).count(said) == 1, done.stdout + done.stderr
    assert done.stderr.splitlines()[-1].startswith(f"error: {media}: not a readable media file")
    assert said in (tmp_path / "out/dubprep.log").read_text(encoding="utf-8")


HEAVY = ("torch", "pyannote.audio", "pyannote.core", "scipy.signal", "sklearn", "matplotlib", "distributed")


def test_a_config_error_is_found_before_any_model_code_loads(tmp_path):
    # Not timed (benchmarks/validate_speed.py prints the time): what made a typo take 7-15 s is checked here.
    project = tmp_path / "project.yaml"
    project.write_text("input: reel.wav\noutput: out\nassemble:\n  bitdepth: 24\n")
    (tmp_path / "reel.wav").write_bytes(b"")
    script = ("import sys\nfrom dubprep.cli import main\n"
              f"code = main(['validate', {str(project)!r}])\n"
              f"print(code, [m for m in {HEAVY!r} if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=os.environ | {"TMPDIR": str(tmp_path)})
    assert done.stdout.strip() == "1 []", done.stderr
    assert "assemble.bitdepth: unknown key" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project.yaml", "reel.wav"]  # no torchinductor_* left


def test_stage_parameters_import_without_model_code():
    script = ("import sys\nfrom dubprep.stages import assemble, diarize, extract, separate\n"
              "params = [assemble.AssembleParams(), diarize.DiarizeParams(), extract.ExtractParams(), separate.SeparateParams()]\n"
              f"print([m for m in {HEAVY!r} if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.fixture
def silent_clip(tmp_path: Path) -> Path:
    path = tmp_path / "alice.wav"
    sf.write(path, np.zeros(48_000 * 3, dtype=np.float32), 48_000)
    return path


def test_a_reference_clip_that_is_not_audio_is_a_config_error(good, tmp_path, capsys):
    (tmp_path / "alice.wav").write_text("a casting note\n")
    project = tmp_path / "project.yaml"
    project.write_text("input: good.wav\noutput: out\ndiarize:\n  speakers:\n    ALICE: alice.wav\n")
    assert main(["validate", str(project)]) == 1
    assert error_of(capsys) == (
        f"error: {project}: diarize.speakers.ALICE: reference clip {tmp_path / 'alice.wav'} is not audio soundfile reads; "
        f"give a WAV, FLAC, AIFF or OGG file (got '{tmp_path / 'alice.wav'}')"
    )


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_reference_clip_without_speech_is_refused_before_any_stage_works(good, silent_clip, tmp_path, capsys, command):
    project = tmp_path / "project.yaml"
    project.write_text("input: good.wav\noutput: out\ndiarize:\n  speakers:\n    ALICE: alice.wav\n")
    assert main([command, str(project), *(["-q"] if command == "run" else [])]) == 1
    assert error_of(capsys) == (
        f"error: {silent_clip}: no speech found in the reference clip of ALICE; give a few seconds of ALICE speaking alone"
    )
    assert not (tmp_path / "out/work").exists()
