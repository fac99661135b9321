"""Fixtures shared by the tests: a stage run as the engine runs it, and a whole project run once.

``media_json`` writes what extract would have learnt about a programme;
``run_stage`` runs one stage on given input files with parameters
validated as a project's are; ``separate`` and ``diarize`` feed those two
stages audio from memory and read back what they wrote; ``finished`` is one
complete ``dubprep run`` on 20 s of real two-speaker speech, for the tests
of the engine and its cache to copy and change.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from dubprep.cli import main
from dubprep.media import LAYOUT_CHANNELS, MediaInfo
from dubprep.progress import NullProgress, ProgressHook
from dubprep.stage import Stage, StageContext
from dubprep.stages.diarize import DiarizeStage
from dubprep.stages.separate import SeparateStage
from dubprep.stems import MIX, WorkStems, WorkWriter
from speech import speech_with_background

SR = 48_000


@pytest.fixture(scope="session")
def media_json() -> Callable[..., Path]:
    """``write(path, layout, frames, **facts)``: media.json for a 48 kHz programme; ``facts`` override MediaInfo's."""

    def write(path: Path, layout: str, frames: int, **facts: object) -> Path:
        info = {
            "source": str(path.parent / "programme.mov"), "audio_stream": 0, "codec": "pcm_f32le", "layout": layout,
            "channels": len(LAYOUT_CHANNELS[layout]), "sample_rate": SR, "frames": frames, "source_sample_rate": SR,
            "start_offset_s": 0.0, "start_timecode": None, "frame_rate": None,
        }
        MediaInfo(**{**info, **facts}).save(path)
        return path

    return write


@pytest.fixture(scope="session")
def run_stage() -> Callable[..., Path]:
    """``run(stage, params, inputs, work_dir, media=..., progress=...)``: the stage run as the engine runs it; its work folder."""

    def run(
        stage: type[Stage], params: dict, inputs: dict[str, Path], work_dir: Path,
        media: Path = Path("programme.mov"), progress: ProgressHook | None = None,
    ) -> Path:
        work_dir.mkdir(parents=True)
        ctx = StageContext(
            stage.validate_params(params), inputs, work_dir, media, logging.getLogger(f"test.{stage.name}"),
            progress=progress or NullProgress(),
        )
        stage().run(ctx)
        return work_dir

    return run


@pytest.fixture(scope="session")
def separate(media_json, run_stage) -> Callable[..., dict[str, np.ndarray]]:
    """``run(folder, mix, layout, progress=None, **params)``: the separate stage on ``mix`` (frames, channels),
    stored first as extract stores it (24-bit FLAC); that mix and the DX, ME, MX and FX read back from the
    work files, each (frames, channels) float32."""

    def run(folder: Path, mix: np.ndarray, layout: str, progress: ProgressHook | None = None, **params) -> dict:
        folder.mkdir(parents=True, exist_ok=True)
        with WorkWriter(folder / MIX, mix.shape[1]) as writer:
            writer.write(mix)
        inputs = {MIX: folder / MIX, "media.json": media_json(folder / "media.json", layout, len(mix))}
        work_dir = run_stage(SeparateStage, params, inputs, folder / "work", folder / "programme.mov", progress)
        work = WorkStems.of({**inputs, **{p.name: p for p in work_dir.iterdir()}})
        for asset in ("DX", "MX"):
            assert sf.info(str(work.stored(asset))).subtype == "PCM_24"
        return work.read_all(("mix", "DX", "ME", "MX", "FX"))

    return run


@pytest.fixture(scope="session")
def diarize(media_json, run_stage) -> Callable[..., Path]:
    """``run(folder, dx, layout="mono", **params)``: the diarize stage on ``dx`` (frames,) or (frames, channels)
    written as a DX stem; its work folder."""

    def run(folder: Path, dx: np.ndarray, layout: str = "mono", **params) -> Path:
        (folder / "in").mkdir(parents=True)
        with WorkWriter(folder / "in/DX.flac", 1 if dx.ndim == 1 else dx.shape[1]) as writer:
            writer.write(dx.reshape(len(dx), -1))  # shape: (frames, channels)
        media_json(folder / "in/media.json", layout, len(dx), source="reel.wav")
        inputs = {name: folder / "in" / name for name in DiarizeStage.inputs}
        return run_stage(DiarizeStage, params, inputs, folder / "work", Path("reel.wav"))

    return run


def _write_project(folder: Path, media: Path, extra: str = "") -> Path:
    project = folder / "project.yaml"
    project.write_text(f"extends: default\ninput: '{media}'\noutput: out\n{extra}")
    return project


@pytest.fixture(scope="session")
def write_project() -> Callable[..., Path]:
    """``write(folder, media, extra="")``: folder/project.yaml on the default preset, output ``out``, ``extra`` YAML appended."""
    return _write_project


# The finished run's 12 s of speech is too little for the builtin backend to count two speakers whose
# Resemblyzer centroids are 0.90 alike (it finds one): the count is given, as a project may give it.
FINISHED_SETTINGS = "diarize:\n  num_speakers: 2\n"


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A project run once to completion on 20 s of real two-speaker speech: (project file, output folder)."""
    folder = tmp_path_factory.mktemp("engine")
    media = speech_with_background(folder / "reel 1.wav", duration_s=20.0)
    project = _write_project(folder, media, FINISHED_SETTINGS)
    assert main(["run", str(project), "--quiet"]) == 0
    return project, folder / "out"


@pytest.fixture
def finished_copy(finished, tmp_path) -> tuple[Path, Path]:
    """A private copy of the finished run, so a test can change it: (its project file, its output folder)."""
    project, out = finished
    shutil.copytree(out, tmp_path / "out")
    media = next(p for p in project.parent.iterdir() if p.suffix == ".wav")
    return _write_project(tmp_path, media, FINISHED_SETTINGS), tmp_path / "out"
