"""Faults a render farm meets: a disk that fills mid-run, non-ASCII paths, a GPU that is not there.

Covered elsewhere: a batch worker killed mid-job, non-ASCII media names in a
batch and two batch jobs writing one output folder (tests/test_batch.py).
"""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import soundfile as sf
import torch

from dubprep.cache import read_manifest
from dubprep.cli import main
from dubprep.tools import find_tool
from speech import speech_with_background

DUBPREP = Path(sys.executable).parent / "dubprep"
ME = "deliverables/PROGRAMME_ME_2ch_48k_24b.wav"


def dubprep(*args: object, env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None):
    """The dubprep command in its own process, its output captured."""
    return subprocess.run([str(DUBPREP), *map(str, args)], capture_output=True, text=True, env=env,
                          preexec_fn=preexec_fn)


def file_size_limit(limit_bytes: int) -> Callable[[], None]:
    """A preexec_fn capping every file the process writes at ``limit_bytes``.

    Python ignores SIGXFSZ, so a write past the cap fails with EFBIG, as a
    write fails on a full disk (ENOSPC) or past FAT32's 4 GiB file limit.
    """
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


def error_line(stderr: str) -> str:
    """The CLI's closing error line, after checking nothing like a traceback came with it."""
    assert "Traceback" not in stderr
    return stderr.splitlines()[-1]


def write_project(folder: Path, text: str) -> Path:
    project = folder / "project.yaml"
    project.write_text(text, encoding="utf-8")
    return project


def test_disk_filling_mid_run_fails_cleanly_and_a_rerun_completes(tmp_path):
    media = speech_with_background(tmp_path / "reel.wav", duration_s=4.0)
    out = tmp_path / "out"
    assert main(["run", "-q", "-i", str(media), "-o", str(out), "--until", "extract"]) == 0
    # The separated DX holds most of the mix's signal: separate fails a tenth of the way into DX.flac.
    limit = (out / "work/extract/mix.flac").stat().st_size // 10
    full = dubprep("run", "-q", "-i", media, "-o", out, preexec_fn=file_size_limit(limit))
    assert full.returncode == 1
    assert re.fullmatch(
        rf"error: separate: {re.escape(str(out))}/\.dubprep/tmp/separate-\d+/DX\.flac: File too large; "
        rf"free disk space or choose another --output",
        error_line(full.stderr),
    )
    assert not (out / "work/separate").exists()
    assert list((out / ".dubprep/tmp").iterdir()) == []
    assert read_manifest(out / "work/extract") is not None
    assert main(["run", "-q", "-i", str(media), "-o", str(out)]) == 0
    log = (out / "dubprep.log").read_text(encoding="utf-8")
    resumed = log[log.rindex(" run: "):]
    assert "extract: cached" in resumed and "separate: running (no previous result)" in resumed
    assert sf.info(out / ME).frames == 4 * 48000


def test_non_ascii_paths_with_spaces_run_through_in_a_c_locale(tmp_path):
    folder = tmp_path / "Série 1 — ñ"
    folder.mkdir()
    movie = folder / "Épisode 01 — ñ.mov"
    wav = speech_with_background(tmp_path / "speech.wav", duration_s=6.0)
    subprocess.run([str(find_tool("ffmpeg")), "-nostdin", "-v", "error", "-i", str(wav), "-c:a", "pcm_s24le",
                    str(movie)], check=True)
    project = write_project(folder, f"extends: default\ninput: '{movie.name}'\noutput: 'sortie à 1'\n")
    # A farm node's bare environment: the C locale, not UTF-8; a TMPDIR of its own, to see nothing is left there.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LC_")}
    env |= {"LANG": "C", "LC_ALL": "C", "TMPDIR": str(scratch)}
    done = dubprep("run", "-q", project, env=env)
    assert done.returncode == 0, done.stderr
    assert list(scratch.iterdir()) == []  # no torchinductor_* or other cache left behind
    out = folder / "sortie à 1"
    assert sf.info(out / ME).frames == 6 * 48000
    assert f"run: {movie} -> {out}" in (out / "dubprep.log").read_text(encoding="utf-8")
    for stage in ("work/extract", "work/separate", "work/diarize", "deliverables"):
        assert read_manifest(out / stage) is not None


@pytest.fixture
def short_media(tmp_path: Path) -> Path:
    return speech_with_background(tmp_path / "reel.wav", duration_s=3.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_on_a_machine_without_gpu_is_one_clear_error(short_media, capsys):
    project = write_project(short_media.parent, "extends: default\ninput: reel.wav\noutput: out\ndevice: cuda\n")
    assert main(["run", str(project), "--quiet"]) == 1
    assert error_line(capsys.readouterr().err) == (
        "error: device 'cuda' asked for, but torch sees 0 CUDA GPU(s) here; "
        "set device: auto or cpu in the project, or pass --device cpu"
    )
    assert read_manifest(short_media.parent / "out/work/extract") is None


def test_unknown_device_is_a_config_error_naming_the_key(short_media, capsys):
    project = write_project(short_media.parent, "extends: default\ninput: reel.wav\noutput: out\ndevice: gpu\n")
    assert main(["run", str(project), "--quiet"]) == 1
    assert error_line(capsys.readouterr().err) == (
        f"error: {project}: device: expected auto, cpu, cuda or cuda:N (got 'gpu')"
    )
    assert not (short_media.parent / "out").exists()


def test_device_option_overrides_the_project(short_media):
    project = write_project(short_media.parent, "extends: default\ninput: reel.wav\noutput: out\ndevice: cuda:7\n")
    assert main(["run", str(project), "--quiet", "--device", "cpu"]) == 0
    log = (short_media.parent / "out/dubprep.log").read_text(encoding="utf-8")
    assert "device: cpu (asked for cpu)" in log
    assert "diarize: done" in log


def test_disk_too_full_for_the_delivery_is_one_error_before_assembly_and_a_rerun_resumes(
    finished_copy, monkeypatch, capsys
):
    project, out = finished_copy
    shutil.rmtree(out / "deliverables")
    real_usage = shutil.disk_usage
    free_bytes = 3 * 2**20  # far less than 20 s of stems at 24 bits
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_usage(path)._replace(free=free_bytes))
    assert main(["run", str(project), "--quiet"]) == 1
    message = capsys.readouterr().err.strip().splitlines()[-1]
    # 20 s stereo: ME, MX, FX, DX at 2 channels and a mono stem per speaker, 3 bytes a sample, the lists' margin.
    speakers = len(json.loads((out / "work/diarize/turns.json").read_text())["speakers"])
    needed_gib = (20 * 48_000 * (4 * 2 + speakers) * 3 + 64 * 2**20) / 2**30
    assert re.fullmatch(
        rf"error: {re.escape(str(out))}/\.dubprep/tmp/assemble-\d+: the delivery needs {needed_gib:.2f} GiB "
        rf"\({4 + speakers} stems\) but the disk has 0\.00 GiB free; free disk space and rerun \(assembly starts again, the "
        rf"earlier stages stay done\) or choose another --output",
        message,
    ), message
    assert not (out / "deliverables").exists() and list((out / ".dubprep/tmp").iterdir()) == []
    monkeypatch.setattr(shutil, "disk_usage", real_usage)  # space freed
    assert main(["run", str(project), "--quiet"]) == 0
    log = (out / "dubprep.log").read_text(encoding="utf-8")
    resumed = log[log.rindex(" run: "):]
    assert all(f"{stage}: cached" in resumed for stage in ("extract", "separate", "diarize"))
    assert "assemble: running (no previous result)" in resumed
    assert read_manifest(out / "deliverables") is not None
