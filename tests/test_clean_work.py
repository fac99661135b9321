"""--clean-work: the work folder goes only after a delivery whose QC passed; a rerun says what it rebuilds."""

import hashlib

from dubprep.cache import read_manifest
from dubprep.cli import main


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_work_folder_dropped_after_a_passing_delivery_and_a_rerun_says_why_it_rebuilds(finished_copy, capsys):
    project, out = finished_copy
    delivered = digests(out / "deliverables")
    assert main(["run", str(project), "--quiet", "--clean-work"]) == 0
    assert not (out / "work").exists()
    assert digests(out / "deliverables") == delivered  # the delivery itself is untouched
    assert "work folder removed (--clean-work)" in (out / "dubprep.log").read_text()
    capsys.readouterr()
    assert main(["plan", str(project)]) == 0
    planned = capsys.readouterr().out
    assert "extract    will run (no previous result: the work folder was removed by --clean-work" in planned
    assert main(["run", str(project), "--quiet"]) == 0
    log = (out / "dubprep.log").read_text()
    rerun = log[log.rindex(" run: "):]
    assert "extract: running (no previous result: the work folder was removed by --clean-work" in rerun
    assert read_manifest(out / "work/separate") is not None and read_manifest(out / "deliverables") is not None
    # The same work files again: the delivery stays as it was (assemble cached, or rebuilt identically).
    assert digests(out / "deliverables") == delivered | {"qc.json": digests(out / "deliverables")["qc.json"],
                                                         "report.html": digests(out / "deliverables")["report.html"]}


def test_work_folder_kept_when_qc_flags_the_delivery(finished_copy, capsys):
    project, out = finished_copy
    # An M&E limit no programme with sound meets: QC fails, everything is written, the work stays for a rerun.
    project.write_text(project.read_text() + "assemble:\n  qc:\n    me_true_peak_max_dbtp: -100\n")
    assert main(["run", str(project), "--quiet", "--clean-work"]) == 3
    assert read_manifest(out / "work/extract") is not None and read_manifest(out / "work/separate") is not None
    assert "work folder kept (--clean-work): QC flagged the delivery" in (out / "dubprep.log").read_text()


def test_work_folder_kept_when_the_run_stops_before_delivery(finished_copy):
    project, out = finished_copy
    assert main(["run", str(project), "--quiet", "--until", "diarize", "--clean-work"]) == 0
    assert read_manifest(out / "work/diarize") is not None
    assert "work folder kept (--clean-work): the run did not reach assemble" in (out / "dubprep.log").read_text()


def test_project_key_clean_work_does_the_same(finished_copy):
    project, out = finished_copy
    project.write_text(project.read_text() + "clean_work: true\n")
    assert main(["run", str(project), "--quiet"]) == 0
    assert not (out / "work").exists() and (out / "deliverables/manifest.json").is_file()
