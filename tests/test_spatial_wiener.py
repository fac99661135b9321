"""The dfn3-spatial backend on real speech: lengths, alignment, re-sums, 5.1, where things land.

Speech is pyannote.audio's bundled recording at 48 kHz; effects are
coloured-noise bursts placed at one side of the image, so where each part
should end up is known.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate, lfilter

from dubprep.media import LAYOUT_CHANNELS
from dubprep.stages.backends.dfn3 import Dfn3Params
from dubprep.stages.backends.dfn3_spatial import CHUNK_SAMPLES, centre_first
from dubprep.stages.backends.separation import DIALOGUE, SEPARATORS
from dubprep.stages.separate import searched_channels
from speech import sample_speech_48k

SR = 48_000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """12 s of real conversation at 48 kHz; shape (frames,)."""
    return sample_speech_48k()[3 * SR : 15 * SR].astype(np.float32)


def _bursts(frames: int, seed: int) -> np.ndarray:
    """Coloured noise bursts (80-ms decay) every 0.7-1.5 s; shape (frames,)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(frames)
    burst_frames = int(0.4 * SR)
    at = int(rng.uniform(0.1, 0.5) * SR)
    while at < frames:
        decay = np.exp(-np.arange(burst_frames) / SR / 0.08)
        burst = lfilter([1.0], [1.0, -rng.uniform(0.0, 0.9)], rng.standard_normal(burst_frames) * decay)[: frames - at]
        out[at : at + len(burst)] += burst
        at += int(rng.uniform(0.7, 1.5) * SR)
    return out.astype(np.float32)


def _scaled(stem: np.ndarray, rms: float) -> np.ndarray:
    return (stem / np.sqrt(np.mean(stem**2)) * rms).astype(np.float32)


def _stereo_scene(speech: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Speech centred and bursts panned hard left at -3 dB below it: (speech image, mix), each (frames, 2)."""
    voice = np.stack([speech, speech], axis=1) * np.float32(np.sqrt(0.5))  # shape: (frames, 2)
    effects = _scaled(_bursts(len(speech), seed=1), float(voice[:, 0].std()) * 10 ** (-3 / 20))
    return voice, voice + np.stack([effects, np.zeros_like(effects)], axis=1)


def _stream_dialogue(mix: np.ndarray, block_frames: int) -> np.ndarray:
    """dfn3-spatial's dialogue of ``mix`` (frames, channels) fed in blocks of ``block_frames``."""
    (stream,) = SEPARATORS.get("dfn3-spatial").open(Dfn3Params(), [mix.shape[1]], "cpu")
    try:
        parts = [stream.process(mix[at : at + block_frames])[DIALOGUE] for at in range(0, len(mix), block_frames)]
        parts.append(stream.flush()[DIALOGUE])
    finally:
        stream.close()
    for part in parts:
        assert part.dtype == np.float32 and part.shape[1] == mix.shape[1]
    return np.concatenate(parts)


def _sdr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(reference**2) / np.sum((reference - estimate) ** 2)))


@pytest.fixture(scope="module")
def stereo_dialogue(speech: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(speech image, mix, dialogue fed in blocks of 4801 frames) of the stereo scene."""
    voice, mix = _stereo_scene(speech)
    return voice, mix, _stream_dialogue(mix, 4801)


def test_output_is_exactly_as_long_and_independent_of_block_sizes(stereo_dialogue) -> None:
    _, mix, dialogue = stereo_dialogue
    assert dialogue.shape == mix.shape
    # Odd sizes: one shorter than DeepFilterNet3's hop, one longer than a whole chunk.
    for block_frames in (331, CHUNK_SAMPLES + 7):
        np.testing.assert_array_equal(_stream_dialogue(mix, block_frames), dialogue)


def test_dialogue_is_sample_aligned_and_panned_effects_stay_out(stereo_dialogue) -> None:
    voice, mix, dialogue = stereo_dialogue
    xcorr = correlate(dialogue[:, 0], voice[:, 0], mode="full", method="fft")
    assert int(np.argmax(xcorr)) - (len(voice) - 1) == 0
    # The bursts are only in L: what of them is left in L's dialogue is the error there.
    assert _sdr_db(voice[:, 0], dialogue[:, 0]) > _sdr_db(voice[:, 0], mix[:, 0]) + 8.0
    assert _sdr_db(voice[:, 1], dialogue[:, 1]) > 10.0


def test_refines_deepfilternet3_where_the_image_tells_them_apart(stereo_dialogue) -> None:
    voice, mix, dialogue = stereo_dialogue
    mid, side = (mix[:, :1] + mix[:, 1:]) / 2, (mix[:, :1] - mix[:, 1:]) / 2
    raw = []
    for signal in (mid, side):
        (stream,) = SEPARATORS.get("dfn3").open(Dfn3Params(), [1], "cpu")
        raw.append(np.concatenate([stream.process(signal)[DIALOGUE], stream.flush()[DIALOGUE]])[:, 0])
        stream.close()
    plain = np.stack([raw[0] + raw[1], raw[0] - raw[1]], axis=1)  # shape: (frames, 2)
    assert _sdr_db(voice, dialogue) > _sdr_db(voice, plain) + 1.0


def test_same_input_gives_the_same_output(stereo_dialogue) -> None:
    _, mix, dialogue = stereo_dialogue
    np.testing.assert_array_equal(_stream_dialogue(mix, 4801), dialogue)


def test_five_one_keeps_centre_dialogue_and_leaves_a_surround_effect_out(separate, speech, tmp_path) -> None:
    names = LAYOUT_CHANNELS["5.1"]
    frames = len(speech)
    rms = float(speech.std())
    effect = _scaled(_bursts(frames, seed=2), rms)
    ambience = [_scaled(np.random.default_rng(seed).standard_normal(frames).astype(np.float32), 0.05 * rms)
                for seed in range(6)]
    channels = {name: ambience[i] for i, name in enumerate(names)}
    channels["C"] = channels["C"] + speech
    channels["L"] = channels["L"] + 0.2 * speech  # the centre's dialogue bleeds into L and R
    channels["R"] = channels["R"] + 0.2 * speech
    channels["Ls"] = channels["Ls"] + effect
    mix = np.stack([channels[name] for name in names], axis=1)  # shape: (frames, 6)
    stems = separate(tmp_path, mix, "5.1", backend="dfn3-spatial", dialogue_channels="all")
    atol = 4 * np.finfo(np.float32).eps * np.abs(mix).max()
    np.testing.assert_allclose(stems["DX"] + stems["ME"], mix, rtol=0, atol=atol)
    dx = {name: stems["DX"][:, i] for i, name in enumerate(names)}
    assert not dx["LFE"].any()
    assert _sdr_db(speech, dx["C"]) > 15.0
    assert _sdr_db(0.2 * speech, dx["L"]) > 5.0
    # Ls holds a burst as loud as the dialogue and no dialogue: its DX must stay 20 dB down.
    assert np.sum(dx["Ls"] ** 2) < 0.01 * np.sum(effect**2)


@pytest.mark.parametrize(
    ("layout", "mode", "expected"),
    [("stereo", "front", ("L", "R")), ("5.1", "front", ("C", "L", "R")), ("5.1", "all", ("C", "L", "R", "Ls", "Rs")),
     ("5.1", "center", ("C",)), ("mono", "front", ("M",))],
)
def test_one_group_with_the_centre_first(layout: str, mode: str, expected: tuple[str, ...]) -> None:
    layout_names = LAYOUT_CHANNELS[layout]
    names = tuple(layout_names[c] for c in searched_channels(layout, mode, layout_names))
    (group,) = centre_first(tuple(range(len(names))), names)
    assert tuple(names[i] for i in group) == expected


@pytest.mark.parametrize("channels", [2, 5])
def test_silence_and_a_lone_click_give_finite_dialogue(channels: int) -> None:
    # All-zero chunks and a chunk whose only sound is one sample: covariances of
    # nothing must not turn into NaN through the regularised inversion.
    mix = np.zeros((3 * SR + 11, channels), dtype=np.float32)
    mix[2 * SR, -1] = 0.5
    dialogue = _stream_dialogue(mix, 10_007)
    assert dialogue.shape == mix.shape
    assert np.isfinite(dialogue).all()
    assert np.abs(dialogue[: SR]).max() == 0
