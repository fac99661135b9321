"""dubprep batch on real dask clusters: real jobs on real speech, retries, resume, worker loss, GPU resources."""

import contextlib
import io
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from distributed import Client, Nanny, Scheduler, SpecCluster

from dubprep.batch import BatchParams, jobs_from_template, run_batch
from dubprep.cli import main
from dubprep.errors import ConfigError
from speech import speech_with_background

STAGES = ("extract", "separate", "diarize", "assemble")
GOOD = ("reel 1", "réel 2 — é")


def batch_cli(argv: list[str]) -> tuple[int, dict[str, dict[str, str]], str]:
    """Run ``dubprep batch``; return the exit code, the table's rows by job name, and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setenv("COLUMNS", "400")  # one table row per line
        code = main(["batch", *argv])
    header = ("job", "status", *STAGES, "time", "output")
    lines = [line for line in out.getvalue().splitlines() if line.startswith("│")]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines]
    return code, {row[0]: dict(zip(header, row)) for row in rows}, err.getvalue()


def log_lines(output: Path) -> list[str]:
    return (output / "dubprep.log").read_text(encoding="utf-8").splitlines()


def runs_in(output: Path) -> int:
    """How many engine runs the job's log records."""
    return sum(" run: " in line for line in log_lines(output))


def wait_for_log_line(output: Path, text: str, runner: threading.Thread, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ((output / "dubprep.log").is_file() and any(text in line for line in log_lines(output))):
        assert time.monotonic() < deadline and runner.is_alive(), f"the job's log never said {text!r}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reels(tmp_path_factory) -> Path:
    """Two short real-speech reels (one with spaces and non-ASCII in its name), a text file posing as a movie."""
    folder = tmp_path_factory.mktemp("batch")
    media = folder / "mes réels"
    media.mkdir()
    speech_with_background(media / "reel 1.wav", duration_s=5.0)
    speech_with_background(media / "réel 2 — é.wav", duration_s=4.0, seed=1)
    (media / "broken.mov").write_text("not a movie, a text file\n")
    (folder / "template.yaml").write_text("extends: default\n")
    return folder


def template_args(reels: Path) -> list[str]:
    media = str(reels / "mes réels" / "*")
    return [str(reels / "template.yaml"), "--media", media, "--output-root", str(reels / "out")]


@pytest.fixture(scope="module")
def first_batch(reels):
    """The batch run once on the default LocalCluster."""
    return batch_cli(template_args(reels))


@pytest.fixture(scope="module")
def cluster():
    """An existing cluster to pass as --scheduler: one worker offering a GPU resource, one not."""
    workers = {
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
        "cpu": {"cls": Nanny, "options": {"nthreads": 1}},
    }
    with SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard": False}}, workers=workers) as spec_cluster:
        yield spec_cluster


def test_failed_job_is_reported_and_others_finish(first_batch, reels):
    code, rows, err = first_batch
    assert code == 1
    assert set(rows) == {*GOOD, "broken"}
    for name in GOOD:
        assert rows[name]["status"] == "done"
        assert [rows[name][stage] for stage in STAGES] == ["ran"] * 4
        assert Path(rows[name]["output"]).absolute() == reels / "out" / name
    assert rows["broken"]["status"] == "failed"
    assert [rows["broken"][stage] for stage in STAGES] == ["failed", "-", "-", "-"]
    failure = next(line for line in err.splitlines() if line.startswith("broken failed: "))
    assert str(reels / "mes réels" / "broken.mov") in failure
    assert failure.endswith(f"(log: {reels / 'out' / 'broken' / 'dubprep.log'})")


def test_jobs_write_deliverables_and_their_own_logs(first_batch, reels):
    for name in GOOD:
        output = reels / "out" / name
        mix = sf.info(output / "work" / "extract" / "mix.flac")
        for stem in ("ME", "DX"):
            assert sf.info(output / "deliverables" / f"PROGRAMME_{stem}_2ch_48k_24b.wav").frames == mix.frames
        log = "\n".join(log_lines(output))
        assert f"run: {reels / 'mes réels' / name}.wav -> {output}" in log
        assert log.count("assemble: done") == 1
        assert all(other not in log for other in ({*GOOD, "broken"} - {name}))


def test_failed_job_was_retried(first_batch, reels):
    assert runs_in(reels / "out" / "broken") == 2  # --retries 1: the first attempt and one retry


def test_second_batch_reuses_finished_stages(first_batch, reels, cluster):
    finished = {name: (reels / "out" / name / "deliverables").stat().st_mtime_ns for name in GOOD}
    code, rows, _ = batch_cli([*template_args(reels), "--scheduler", cluster.scheduler_address, "--retries", "0"])
    assert code == 1
    for name in GOOD:
        assert rows[name]["status"] == "done"
        assert [rows[name][stage] for stage in STAGES] == ["cached"] * 4
        assert (reels / "out" / name / "deliverables").stat().st_mtime_ns == finished[name]
    assert rows["broken"]["status"] == "failed"
    assert runs_in(reels / "out" / "broken") == 3  # --retries 0: one more attempt only


@pytest.mark.parametrize("layout", ["projects", "media"])
def test_two_jobs_writing_one_output_are_refused(tmp_path, capsys, layout):
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    (tmp_path / "a.flac").write_bytes(b"fLaC")
    if layout == "projects":
        for name in ("first", "second"):
            (tmp_path / f"{name}.yaml").write_text("input: a.wav\noutput: shared\n")
        argv = [str(tmp_path / "first.yaml"), str(tmp_path / "second.yaml")]
        folder = tmp_path / "shared"
    else:
        argv = ["--media", str(tmp_path / "a.*"), "--output-root", str(tmp_path / "out")]
        folder = tmp_path / "out" / "a"
    assert main(["batch", *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"error: {folder}: jobs ") and "both write this output folder" in err
    assert not folder.exists()


def test_worker_killed_mid_job_is_rerun_and_resumes(tmp_path, cluster):
    speech_with_background(tmp_path / "long reel.wav", duration_s=8.0)
    jobs = jobs_from_template(None, str(tmp_path / "*.wav"), tmp_path / "out")
    output = jobs[0].output
    params = BatchParams(scheduler=cluster.scheduler_address)
    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(run_batch(jobs, params)))
    runner.start()
    wait_for_log_line(output, "separate: running", runner)
    worker_pid = int((output / ".dubprep" / "lock").read_text())  # the engine writes its process id there
    work_folder = output / ".dubprep" / "tmp" / f"separate-{worker_pid}"
    while not work_folder.is_dir():  # the stage logs "running" before it makes its work folder
        assert runner.is_alive(), "the job ended before separate made its work folder"
        time.sleep(0.02)
    os.kill(worker_pid, signal.SIGKILL)
    runner.join(timeout=180)
    [result] = outcome[0].results
    assert result.status == "done"
    assert result.stages == {"extract": "cached", "separate": "ran", "diarize": "ran", "assemble": "ran"}
    assert runs_in(output) == 2
    log = "\n".join(log_lines(output))
    assert f"separate-{worker_pid} left by an interrupted run" in log  # the rerun cleared the killed attempt's work
    assert (output / "deliverables" / "PROGRAMME_ME_2ch_48k_24b.wav").is_file()


def test_gpu_jobs_run_only_on_workers_offering_a_gpu(tmp_path, cluster):
    for seed in (1, 2):
        speech_with_background(tmp_path / f"reel {seed}.wav", duration_s=2.0, seed=seed)
    jobs = jobs_from_template(None, str(tmp_path / "*.wav"), tmp_path / "out")
    with Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)  # a worker killed by an earlier test may still be restarting
        workers = client.scheduler_info()["workers"]
    gpu_worker = next(address for address, info in workers.items() if info["resources"])
    report = run_batch(jobs, BatchParams(scheduler=cluster.scheduler_address, gpu_per_job=1))
    assert report.exit_code == 0
    assert [result.worker for result in report.results] == [gpu_worker, gpu_worker]
    with pytest.raises(ConfigError, match=r"--gpu-per-job 2: no worker of .* offers GPU=2"):
        run_batch(jobs, BatchParams(scheduler=cluster.scheduler_address, gpu_per_job=2))


def test_a_qc_flag_is_review_not_rerun(tmp_path, cluster):
    speech_with_background(tmp_path / "flagged.wav", duration_s=3.0)
    strict = tmp_path / "strict.yaml"
    strict.write_text("extends: default\nassemble:\n  qc:\n    me_true_peak_max_dbtp: -80.0\n")
    code, rows, err = batch_cli([str(strict), "--media", str(tmp_path / "*.wav"), "--output-root", str(tmp_path / "out"),
                                 "--scheduler", cluster.scheduler_address, "--retries", "1"])
    assert code == 3
    assert rows["flagged"]["status"] == "qc_failed"
    assert [rows["flagged"][stage] for stage in STAGES] == ["ran", "ran", "ran", "qc_failed"]
    assert runs_in(tmp_path / "out" / "flagged") == 1  # not retried: a rerun would flag it again
    assert "flagged qc_failed: 1 QC check(s) failed: ME true peak" in err


def test_a_local_batch_leaves_nothing_in_the_temporary_folder(tmp_path, monkeypatch):
    (tmp_path / "broken.mov").write_text("not a movie\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code, rows, _ = batch_cli(["--media", str(tmp_path / "*.mov"), "--output-root", str(tmp_path / "out"),
                               "--workers", "1", "--retries", "0"])
    assert (code, rows["broken"]["status"]) == (1, "failed")
    assert list(scratch.iterdir()) == []
