"""The separation benchmark's clip builder: one split per set, and a media file that is the sum of its stems."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from corpus.splits import SplitError
from speech import sample_speech_48k

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import filmclips  # noqa: E402

SECONDS = 8


def test_every_set_draws_only_from_its_own_split() -> None:
    for split, rules in filmclips.SETS.items():
        filmclips.require_rules(rules, split)


def test_a_package_of_another_split_is_refused_before_anything_is_fetched(monkeypatch, tmp_path: Path) -> None:
    tune_voices = filmclips.Rule("fillets-ng-data", "speech", r".*/en/[^/]+\.ogg")
    monkeypatch.setitem(filmclips.SETS, "test", (*filmclips.SETS["test"], tune_voices))
    monkeypatch.setattr(filmclips, "fetch", lambda *args: pytest.fail("fetched a package before the split check"))
    with pytest.raises(SplitError, match=r"fillets-ng-data \(tune\)"):
        filmclips.find_pool("test", tmp_path)


def _clip(layout: str, container: str) -> filmclips.Clip:
    """Real speech as DX, and the same speech delayed and turned around as stand-ins for MX and FX."""
    speech = sample_speech_48k()[: SECONDS * filmclips.SR]
    spec = filmclips.ClipSpec("test", 0, 0, layout, "dnr", container, None)
    names = filmclips.CHANNELS[layout]
    dialogue = speech[:, None] * filmclips._pan_gains(layout, 0.0)  # shape: (frames, channels)
    music = np.roll(speech, 12_345)[:, None] * filmclips._pan_gains(layout, -110.0 if layout == "5.1" else -30.0)
    effects = filmclips._with_lfe(speech[::-1, None] * filmclips._pan_gains(layout, 20.0), layout)
    stems = {"DX": dialogue, "MX": music.astype(np.float32), "FX": effects.astype(np.float32)}
    stems = {name: (stem * 0.3).astype(np.float32) for name, stem in stems.items()}
    stems["ME"] = stems["MX"] + stems["FX"]
    assert len(names) == stems["DX"].shape[1]
    return filmclips.Clip(spec, stems, {"voice_package": "-", "music": ["-"], "bed": None, "loudness_lufs": {}})


@pytest.mark.parametrize(("layout", "container", "min_match_db"), [("5.1", "mov", 90.0), ("stereo", "mp4", 15.0)])
def test_the_media_file_is_the_sum_of_the_ground_truth_stems(tmp_path: Path, layout, container, min_match_db) -> None:
    clip = _clip(layout, container)
    folder = tmp_path / "clip"
    filmclips.write_clip(clip, folder)
    media = filmclips.clip_media(folder)
    command = ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(media)]
    probe = subprocess.run(command, capture_output=True, text=True, check=True)
    assert json.loads(probe.stdout)["streams"][0]["channel_layout"] == layout
    decoded = filmclips.decode(media, len(filmclips.CHANNELS[layout]))
    truth = {name: sf.read(str(folder / f"{name}.wav"), dtype="float32")[0] for name in ("DX", "MX", "FX", "ME")}
    np.testing.assert_allclose(truth["ME"], truth["MX"] + truth["FX"], atol=1e-7)
    mix = truth["DX"] + truth["ME"]
    assert decoded.shape == mix.shape
    match_db = 10 * np.log10(np.sum(mix**2) / np.sum((decoded - mix) ** 2))
    assert match_db > min_match_db  # 24-bit PCM: ~95 dB; AAC at 320 kb/s: ~19 dB, and only when aligned
    if layout == "5.1":  # the effects' LFE is their low end, and only theirs
        lfe = filmclips.CHANNELS[layout].index("LFE")
        assert np.abs(truth["FX"][:, lfe]).max() > 1e-4
        assert not truth["DX"][:, lfe].any() and not truth["MX"][:, lfe].any()
