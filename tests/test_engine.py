"""The engine end to end through the CLI: caching, invalidation, resume, locking."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from dubprep.cache import read_manifest
from dubprep.cli import main
from dubprep.lock import OutputLock
from speech import speech_with_background

DELIVERABLES = ("PROGRAMME_ME_2ch_48k_24b.wav", "PROGRAMME_DX_2ch_48k_24b.wav", "turns.rttm", "turns.json", "cues.csv", "cues.srt")


def stage_status(capsys) -> dict[str, str]:
    lines = capsys.readouterr().err.splitlines()
    return {line.split()[0]: line.split()[1] for line in lines if line.split() and line.split()[0] in
            ("extract", "separate", "diarize", "assemble")}


def test_deliverables_are_complete_and_resum(finished):
    _, out = finished
    folder = out / "deliverables"
    mix, _ = sf.read(out / "work/extract/mix.flac", dtype="float32")
    me, _ = sf.read(folder / "PROGRAMME_ME_2ch_48k_24b.wav", dtype="float32")
    dx, _ = sf.read(folder / "PROGRAMME_DX_2ch_48k_24b.wav", dtype="float32")
    assert me.shape == dx.shape == mix.shape
    np.testing.assert_array_equal(me + dx, mix)  # 24-bit work files, ME = mix - DX: bit-exact
    speakers = sorted(folder.glob("PROGRAMME_DX-SPK*_1ch_48k_24b.wav"))  # mono by default
    assert len(speakers) >= 2
    for stem in speakers:
        assert sf.info(stem).frames == len(mix)
    for name in DELIVERABLES:
        assert (folder / name).is_file()
    assert (out / "dubprep.log").read_text().count("assemble: done") == 1


def test_second_run_is_all_cached(finished_copy, tmp_path, capsys):
    project, out = finished_copy
    assert main(["run", str(project), "--quiet"]) == 0
    assert stage_status(capsys) == dict.fromkeys(("extract", "separate", "diarize", "assemble"), "cached")


def test_changed_parameter_reruns_that_stage_only(finished_copy, tmp_path, capsys):
    project, out = finished_copy
    project.write_text(project.read_text() + "assemble:\n  crossfade_ms: 40\n")
    assert main(["plan", str(project)]) == 0
    assert "assemble   will run (assemble.crossfade_ms: 10.0 -> 40.0)" in capsys.readouterr().out
    assert main(["run", str(project), "--quiet"]) == 0
    assert stage_status(capsys) == {"extract": "cached", "separate": "cached", "diarize": "cached", "assemble": "ran"}


def test_forced_stage_reruns_and_unchanged_outputs_keep_later_stages(finished_copy, tmp_path, capsys):
    project, out = finished_copy
    assert main(["run", str(project), "--quiet", "--force", "separate"]) == 0
    # The model is deterministic: the same DX means diarize and assemble stay valid.
    assert stage_status(capsys) == {"extract": "cached", "separate": "ran", "diarize": "cached", "assemble": "cached"}


def test_modified_output_is_detected_and_rebuilt(finished_copy, tmp_path, capsys):
    project, out = finished_copy
    stem = out / "deliverables/PROGRAMME_DX_2ch_48k_24b.wav"
    with open(stem, "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x01\x02\x03\x04")
    os.utime(stem, ns=(0, 0))
    assert main(["plan", str(project)]) == 0
    assert f"assemble   will run ({stem.name} modified)" in capsys.readouterr().out
    assert main(["run", str(project), "--quiet"]) == 0
    assert stage_status(capsys)["assemble"] == "ran"


def test_from_and_until_select_stages(write_project, finished_copy, tmp_path, capsys):
    project, out = finished_copy
    assert main(["run", str(project), "--quiet", "--from", "diarize", "--until", "diarize"]) == 0
    assert stage_status(capsys) == {"diarize": "ran"}
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    fresh_project = write_project(fresh, Path(project.read_text().split("'")[1]))
    assert main(["run", str(fresh_project), "--quiet", "--from", "separate"]) == 1
    assert "needs mix.flac from extract, which has no result" in capsys.readouterr().err
    assert main(["run", str(fresh_project), "--quiet", "--until", "extract"]) == 0
    assert (fresh / "out/work/extract/mix.flac").is_file()
    assert not (fresh / "out/work/separate").exists()


def test_second_run_on_locked_output_is_refused(finished_copy, tmp_path, capsys):
    project, out = finished_copy
    with OutputLock(out / ".dubprep", out):
        assert main(["run", str(project), "--quiet"]) == 1
    assert "another dubprep run (pid" in capsys.readouterr().err
    assert read_manifest(out / "deliverables") is not None


def test_failed_stage_leaves_no_result_and_exits_nonzero(write_project, tmp_path, capsys):
    media = tmp_path / "broken.mov"
    media.write_text("not media\n")
    project = write_project(tmp_path, media)
    assert main(["run", str(project), "--quiet"]) == 1
    assert "broken.mov: not a readable media file" in capsys.readouterr().err
    assert not (tmp_path / "out/work/extract").exists()
    assert list((tmp_path / "out/.dubprep/tmp").iterdir()) == []
    assert media.read_text() == "not media\n"


def test_run_killed_mid_stage_resumes_at_that_stage(write_project, tmp_path):
    media = speech_with_background(tmp_path / "long.wav", duration_s=90.0)
    project = write_project(tmp_path, media)
    command = [str(Path(sys.executable).parent / "dubprep"), "run", str(project), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp_dir = tmp_path / "out/.dubprep/tmp"
    deadline = time.monotonic() + 300
    while not list(tmp_dir.glob("separate-*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list(tmp_dir.glob("separate-*")), "the run never reached the separate stage"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert read_manifest(tmp_path / "out/work/extract") is not None
    assert read_manifest(tmp_path / "out/work/separate") is None
    done = subprocess.run(command[:-1], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "out/dubprep.log").read_text()
    resumed = log[log.rindex("run: "):]
    assert "extract: cached" in resumed
    assert "separate: running (no previous result)" in resumed
    assert "left by an interrupted run" in resumed
    assert sf.info(tmp_path / "out/deliverables/PROGRAMME_ME_2ch_48k_24b.wav").frames == 90 * 48000


def test_qc_failure_writes_everything_and_exits_nonzero(finished_copy, tmp_path, capsys):
    project, out = finished_copy
    project.write_text(project.read_text() + "assemble:\n  qc:\n    me_true_peak_max_dbtp: -80.0\n")
    assert main(["run", str(project), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert "QC check(s) failed: ME true peak" in err
    assert err.count("ME true peak") == 1  # said once: the closing line, not also a log line and the table
    assert read_manifest(out / "deliverables")["failed_checks"]
    assert (out / "deliverables/report.html").is_file()
    # A cached result keeps its failed checks: the exit code stays non-zero.
    assert main(["run", str(project), "--quiet"]) == 3
    assert "QC check(s) failed" in capsys.readouterr().err


def test_delivered_stems_of_a_24_bit_source_re_sum_to_it_bit_exactly(tmp_path, write_project):
    # The source as a studio delivers it: 24-bit PCM. Work files on the 24-bit grid, ME and FX computed from
    # them: DX + ME and DX + MX + FX, delivered at 24 bits, give back every sample of the source.
    samples, _ = sf.read(speech_with_background(tmp_path / "float.wav", duration_s=8.0), dtype="float32")
    media = tmp_path / "reel.wav"
    sf.write(media, samples, 48000, subtype="PCM_24")
    source, _ = sf.read(media, dtype="float64")
    assert main(["run", str(write_project(tmp_path, media)), "--quiet"]) == 0
    folder = tmp_path / "out/deliverables"
    stems = {a: sf.read(folder / f"PROGRAMME_{a}_2ch_48k_24b.wav", dtype="float64")[0] for a in ("DX", "ME", "MX", "FX")}
    assert np.abs(stems["DX"]).max() > 0.01 and np.abs(stems["ME"]).max() > 0.001  # each its own signal
    np.testing.assert_array_equal(stems["DX"] + stems["ME"], source)
    np.testing.assert_array_equal(stems["DX"] + stems["MX"] + stems["FX"], source)
    checks = {c["name"]: c["measured"] for c in json.loads((folder / "qc.json").read_text())["checks"]}
    assert checks["Null test (mix - DX - ME)"] == checks["Null test (mix - DX - MX - FX)"] == "bit-exact"
