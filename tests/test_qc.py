"""Delivery QC on real audio: speech from pyannote's sample, tones and noise for music and effects.

Each case writes a programme the way assemble delivers it (24-bit BWF stems
with open_bwf, float mix/DX/ME beside them, a real picture from ffmpeg) and
runs ``run_qc`` on it. The report is opened in headless Chromium.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
from scipy.signal import firwin, upfirdn

from dubprep.bwf import BextMetadata, open_bwf
from dubprep.media import LAYOUT_CHANNELS, MediaInfo
from dubprep.qc.result import QcInputs, QcLimits
from dubprep.qc.run import run_qc
from dubprep.stems import DX, MIX, MX, WorkStems, WorkWriter
from dubprep.timecode import FrameRate
from devtools import DevTools
from media_factory import make_media
from speech import SAMPLE_RTTM, sample_speech_48k

pytestmark = pytest.mark.ffmpeg  # make test runs these with the system and the bundled ffmpeg

RATE = 48_000
START_TC = "01:00:00:00"
FPS = "24000/1001"


@dataclass(frozen=True)
class Case:
    """How a test programme departs from a clean delivery."""

    layout: str = "stereo"
    seconds: float = 20.0
    speech_in_me: tuple[float, float] | None = None  # separation left this span's speech in the M&E
    hot_me: bool = False  # an inter-sample peak near 0 dBTP in the M&E, sample peaks well below
    dx_short_samples: int = 0
    me_gain_db: float = 0.0  # applied to the delivered M&E only, as a normalising tool would
    split_mono: bool = False


def sample_turns(seconds: float) -> dict:
    """turns.json from pyannote's reference RTTM of the speech sample."""
    turns = []
    for line in SAMPLE_RTTM.read_text().splitlines():
        fields = line.split()
        start_s, duration_s, label = float(fields[3]), float(fields[4]), fields[7]
        if start_s < seconds:
            end_s = min(start_s + duration_s, seconds)
            turns.append({"speaker": label, "start_s": start_s, "end_s": end_s, "overlap": False})
    speakers = list(dict.fromkeys(t["speaker"] for t in turns))
    return {"speakers": speakers, "turns": turns}


def music(frames: int, channels: int) -> np.ndarray:
    """A slow chord on every channel; shape (frames, channels)."""
    t = np.arange(frames) / RATE
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.1 * t)
    chord = sum(np.sin(2 * np.pi * hz * t + k) for k, hz in enumerate((98.0, 146.8, 196.0, 246.9))) * 0.02 * swell
    return np.repeat(chord[:, None], channels, axis=1).astype(np.float32)


def effects(frames: int, channels: int, seed: int = 3) -> np.ndarray:
    """Room noise plus noise bursts (door slams, steps); shape (frames, channels)."""
    rng = np.random.default_rng(seed)
    fx = rng.normal(0, 0.004, size=(frames, channels))
    for start in rng.integers(0, frames - RATE // 4, size=max(1, frames // (3 * RATE))):
        burst = rng.normal(0, 0.08, size=(RATE // 4, channels)) * np.exp(-np.arange(RATE // 4) / 2400)[:, None]
        fx[start : start + RATE // 4] += burst
    return fx.astype(np.float32)


def dialogue(frames: int, layout: str) -> np.ndarray:
    """The speech sample, on the centre (5.1) or both channels (stereo); shape (frames, channels)."""
    speech = sample_speech_48k()[:frames] * 0.5
    dx = np.zeros((frames, len(LAYOUT_CHANNELS[layout])), dtype=np.float32)
    if layout == "5.1":
        dx[:, 2] = speech
    else:
        dx[:] = speech[:, None]
    return dx


def write_work(path: Path, data: np.ndarray) -> Path:
    """A work file as extract and separate store it (24-bit FLAC)."""
    with WorkWriter(path, data.shape[1]) as writer:
        writer.write(data)
    return path


def deliver(folder: Path, asset: str, data: np.ndarray, case: Case) -> tuple[Path, ...]:
    """24-bit BWF stem(s) as assemble writes them."""
    bext = BextMetadata(origination=datetime(2024, 1, 1), time_reference_samples=172_972_800)
    if case.split_mono:
        paths = tuple(folder / f"T_{asset}.{name}.wav" for name in LAYOUT_CHANNELS[case.layout])
        for channel, path in enumerate(paths):
            with open_bwf(path, "mono", "PCM_24", bext) as writer:
                writer.write(data[:, channel : channel + 1])
        return paths
    path = folder / f"T_{asset}.wav"
    with open_bwf(path, case.layout, "PCM_24", bext) as writer:
        writer.write(data)
    return (path,)


def true_peaks_dbtp(data: np.ndarray) -> np.ndarray:
    """Reference true peak per channel: 4x oversampling (BS.1770-4 Annex 2) of the whole signal in memory."""
    interpolator = 4 * firwin(96, 24_000, fs=4 * RATE, window=("kaiser", 5.0))
    oversampled = upfirdn(interpolator, data, up=4, axis=0)
    with np.errstate(divide="ignore"):
        return 20 * np.log10(np.maximum(np.abs(oversampled).max(axis=0), np.abs(data).max(axis=0)))


def make_programme(folder: Path, case: Case, picture: Path) -> QcInputs:
    """Work mix/DX/MX, delivered stems (ME, MX, FX, DX, one per speaker), media.json facts and turns.json."""
    folder.mkdir()
    frames = round(case.seconds * RATE)
    dx = dialogue(frames, case.layout)
    mx = music(frames, dx.shape[1])
    fx = effects(frames, dx.shape[1])
    if case.speech_in_me:
        span = slice(round(case.speech_in_me[0] * RATE), round(case.speech_in_me[1] * RATE))
        fx[span] += dx[span]
        dx[span] = 0.0
    if case.hot_me:
        # 12 kHz (fs/4) at 45 degrees: samples reach only 0.64, the waveform between them 0.9 (-0.9 dBTP + music).
        t = np.arange(RATE) / RATE
        fx[2 * RATE : 3 * RATE, 0] += 0.9 * np.sin(2 * np.pi * 12_000 * t + np.pi / 4)
    me = mx + fx
    mix = dx + me
    turns = sample_turns(case.seconds)
    stems = {
        "ME": deliver(folder, "ME", me * 10 ** (case.me_gain_db / 20), case),
        "MX": deliver(folder, "MX", mx, case),
        "FX": deliver(folder, "FX", fx, case),
        "DX": deliver(folder, "DX", dx[: frames - case.dx_short_samples], case),
    }
    for label in turns["speakers"]:
        gate = np.zeros(frames, dtype=np.float32)
        for turn in (t for t in turns["turns"] if t["speaker"] == label):
            gate[round(turn["start_s"] * RATE) : round(turn["end_s"] * RATE)] = 1.0
        stems[f"DX-{label.upper()}"] = deliver(folder, f"DX-{label.upper()}", dx * gate[:, None], case)
    (folder / "turns.json").write_text(json.dumps(turns))
    media = MediaInfo(source=str(picture), audio_stream=0, codec="pcm_s24le", layout=case.layout,
                      channels=dx.shape[1], sample_rate=RATE, frames=frames, source_sample_rate=RATE,
                      start_offset_s=0.0, start_timecode=START_TC, frame_rate=FPS)
    work = WorkStems({"mix": write_work(folder / MIX, mix), "DX": write_work(folder / DX, dx),
                      "MX": write_work(folder / MX, mx)})
    return QcInputs(
        work_dir=folder, stems=stems, work=work, media=media,
        turns=folder / "turns.json", start_timecode=START_TC, rate=FrameRate.parse(FPS), source=picture,
    )


def qc(folder: Path, case: Case, picture: Path) -> tuple[list[str], dict, QcInputs]:
    inputs = make_programme(folder, case, picture)
    failures = run_qc(inputs, QcLimits(), logging.getLogger("test.qc"))
    return failures, json.loads((folder / "qc.json").read_text()), inputs


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    """A real 20 s film (23.976 fps picture, tone audio) as the programme's source."""
    return make_media(tmp_path_factory.mktemp("source") / "reel.mov", duration_s=20.0)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, picture):
    return qc(tmp_path_factory.mktemp("qc") / "clean", Case(), picture)


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_clean_delivery_passes_every_check(clean):
    failures, report, inputs = clean
    assert failures == [] and report["passed"] and report["failures"] == []
    assert len(report["checks"]) == 5 * len(inputs.stems) + 3  # per stem, two null tests, dialogue in M&E
    unchecked = [c["name"] for c in report["checks"] if c["passed"] is None]
    assert unchecked == [f"{asset} true peak" for asset in inputs.stems if asset != "ME"]  # no limit by default
    assert all(c["passed"] is True for c in report["checks"] if c["name"] not in unchecked)
    assert report["null_tests"]["DX + ME"]["delivered_depth_db"] > 110  # 24-bit quantisation of a -30 dBFS mix
    assert report["null_tests"]["DX + MX + FX"]["delivered_depth_db"] > 110
    assert report["dialogue_in_me"]["speech_s"] < 0.5
    assert report["stems"]["DX"]["frames"] == [20 * RATE]
    assert abs(report["programme"]["picture_duration_s"] - 20.0) < 1 / 23.976


def test_loudness_agrees_with_pyloudnorm(clean):
    _, report, inputs = clean
    meter = pyloudnorm.Meter(RATE)
    for asset in ("ME", "DX", "DX-SPEAKER90"):
        data, _ = sf.read(inputs.stems[asset][0], dtype="float64")
        assert abs(report["stems"][asset]["integrated_lufs"] - meter.integrated_loudness(data)) <= 0.2, asset
    mix, _ = sf.read(inputs.work.stored("mix"), dtype="float64")
    assert abs(report["mix"]["integrated_lufs"] - meter.integrated_loudness(mix)) <= 0.2


def test_split_mono_5_1_is_measured_as_one_stem(tmp_path, picture):
    failures, report, inputs = qc(tmp_path / "surround", Case(layout="5.1", seconds=12.0, split_mono=True), picture)
    # The 12 s programme is shorter than the 20 s picture: the only failures.
    assert all("from the picture" in f for f in failures) and len(failures) == len(inputs.stems)
    assert len(report["stems"]["ME"]["files"]) == 6 and report["stems"]["ME"]["channels"] == 6
    assert check(report, "Null test (mix - DX - ME)")["passed"]
    assert check(report, "Null test (mix - DX - MX - FX)")["passed"]
    # pyloudnorm weights channels by position (L R C Ls Rs, surrounds +1.5 dB) and knows no LFE: leave it out.
    channels = [sf.read(p, dtype="float64")[0] for p in inputs.stems["ME"]]
    without_lfe = np.stack([channels[i] for i in (0, 1, 2, 4, 5)], axis=1)
    expected = pyloudnorm.Meter(RATE).integrated_loudness(without_lfe)
    assert abs(report["stems"]["ME"]["integrated_lufs"] - expected) <= 0.2
    # True peak of every channel, not only the first two (ffmpeg 8.0's ebur128 on one 6-channel stream).
    for asset in ("ME", "DX"):
        data = np.stack([sf.read(p, dtype="float64")[0] for p in inputs.stems[asset]], axis=1)
        measured = np.array([-np.inf if p is None else p for p in report["stems"][asset]["true_peaks_dbtp"]])
        # Within 0.3 dB: ffmpeg prints 0.1 dB steps, and its interpolator is not this one, which matters
        # for the bursts' white noise up to 24 kHz.
        np.testing.assert_allclose(measured, true_peaks_dbtp(data), atol=0.3)
    assert report["stems"]["DX"]["true_peaks_dbtp"][2] is not None  # dialogue in C only


def test_speech_left_in_me_fails_and_names_its_spans(tmp_path, picture):
    failures, report, _ = qc(tmp_path / "leaky", Case(speech_in_me=(8.0, 16.0)), picture)
    assert len(failures) == 1 and failures[0].startswith("Dialogue in M&E")
    assert "01:00:" in failures[0]  # spans named by timecode
    found = report["dialogue_in_me"]
    assert 4.0 < found["speech_s"] <= 8.5
    assert all(7.5 <= s["start_s"] and s["end_s"] <= 16.5 for s in found["spans"]), found["spans"]
    assert check(report, "Null test (mix - DX - ME)")["passed"]  # the sum is intact, only its split is wrong


def test_hot_me_fails_true_peak_between_samples(tmp_path, picture):
    failures, report, inputs = qc(tmp_path / "hot", Case(hot_me=True), picture)
    assert len(failures) == 1 and failures[0].startswith("ME true peak") and failures[0].endswith("> -1.0 dBTP")
    me = report["stems"]["ME"]
    assert -1.0 < me["true_peak_dbtp"] < 0.0
    data, _ = sf.read(inputs.stems["ME"][0], dtype="float64")
    np.testing.assert_allclose(me["true_peaks_dbtp"], true_peaks_dbtp(data), atol=0.3)
    assert max(me["sample_peak_dbfs"]) < -2.5  # no sample comes near: only an oversampled meter sees it
    assert me["clipped_samples"] == [0, 0]


def test_stem_one_sample_short_fails_length(tmp_path, picture):
    failures, report, _ = qc(tmp_path / "short", Case(dx_short_samples=1), picture)
    assert failures == [f"DX length differs from the programme's {20 * RATE} samples: T_DX.wav -1 samples"]
    assert check(report, "DX length vs picture")["passed"]  # a sample is far less than a frame


def test_stems_that_do_not_resum_fail_the_null_test(tmp_path, picture):
    failures, report, _ = qc(tmp_path / "normalised", Case(me_gain_db=0.1), picture)
    assert len(failures) == 1 and failures[0].startswith("Null test: mix - (DX + ME)")
    null = report["null_tests"]["DX + ME"]
    assert 30 < null["delivered_depth_db"] < 50  # 0.1 dB on the M&E: about 40 dB
    assert null["separation_depth_db"] is None  # inf: the work stems re-sum bit-exactly (ME = mix - DX)
    # MX and FX were delivered as they are: the other way to rebuild the mix still nulls.
    assert report["null_tests"]["DX + MX + FX"]["delivered_depth_db"] > 110
    assert check(report, "Null test (mix - DX - MX - FX)")["passed"]


# --- the report in a browser ------------------------------------------------------------------


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed; run `make test`, which installs it (apt-get install chromium)")
    return binary


def open_in_chromium(page: Path, profile: Path) -> tuple[dict, list[dict]]:
    """Load ``page``; return what the page reports about itself, and every event Chromium sent."""
    browser = DevTools(chromium_binary(), profile)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": page.as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        probe = (
            "JSON.stringify({images: Array.from(document.images, i => [i.complete, i.naturalWidth, i.alt]),"
            " tables: Array.from(document.querySelectorAll('table'), t => t.rows.length),"
            " heading: document.querySelector('h1').textContent})"
        )
        answer = browser.send("Runtime.evaluate", {"expression": probe, "returnByValue": True}, session=session)
        return json.loads(answer["result"]["value"]), browser.events
    finally:
        browser.close()


def test_report_renders_offline_in_chromium_with_its_plots(clean, tmp_path):
    _, report, inputs = clean
    page, events = open_in_chromium(inputs.work_dir / "report.html", tmp_path / "profile")
    errors = [
        e for e in events
        if e.get("method") in ("Runtime.exceptionThrown",)
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    assert requests and all(url.startswith(("file:", "data:")) for url in requests), requests
    # A waveform per stem and the speaker timeline, each decoded to a real image.
    assert len(page["images"]) == len(inputs.stems) + 1
    assert all(complete and width > 0 for complete, width, _ in page["images"]), page["images"]
    assert {alt for *_, alt in page["images"]} >= {"Waveform of ME", "Waveform of DX", "Speaker timeline"}
    # Checks, stems, null test, speakers; each with a header row and data.
    assert len(page["tables"]) >= 4 and page["tables"][0] == len(report["checks"]) + 1
    assert "reel.mov" in page["heading"]
