"""The bandit backend with small, randomly initialised Bandit v2 / BandIt models built by pymss-core.

The models are written as a real model directory (an MSST-style config in
the released format, with tiny dimensions, and a checkpoint), so loading,
chunking, resampling, mixture consistency and the stage's stem routing all
run for real. Their separations are meaningless; the tests check the wiring:
lengths, channels, null sums and errors.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from pymss_core import get_model_from_config

from dubprep.cache import read_manifest
from dubprep.checksums import sha256_folder
from dubprep.cli import main
from dubprep.errors import ModelError
from dubprep.media import LAYOUT_CHANNELS
from dubprep.models import entry
from dubprep.stages.backends import bandit
from dubprep.stages.backends.bandit import BanditStream
from dubprep.stages.backends.separation import DIALOGUE, MUSIC
from dubprep.stages.backends.streaming import share_by_power
from dubprep.stems import DX, MIX, MX, WorkStems
from speech import sample_speech_48k, speech_with_background

SR = 48_000
_SPECTRAL = {
    "n_fft": 256, "win_length": 256, "hop_length": 64, "window_fn": "hann_window", "wkwargs": None,
    "power": None, "center": True, "normalized": True, "onesided": True,
}
_SIZE = {
    "n_bands": 8, "normalize_channel_independently": False, "treat_channel_as_feature": True, "n_sqm_modules": 1,
    "emb_dim": 8, "rnn_dim": 8, "bidirectional": True, "rnn_type": "GRU", "mlp_dim": 16,
    "hidden_activation": "Tanh", "hidden_activation_kwargs": None, "complex_mask": True,
}


def bandit_v2_config(chunk_size: int = 24_000) -> dict:
    """A Bandit v2 config laid out like config_dnr_bandit_v2_mus64.yaml, with tiny dimensions."""
    return {
        "cls": "Bandit",
        "audio": {"chunk_size": chunk_size, "num_channels": 2, "sample_rate": 48_000, "min_mean_abs": 0.0},
        "kwargs": {"in_channels": 1, "stems": ["speech", "music", "sfx"], "band_type": "musical",
                   "use_freq_weights": True, "pad_mode": "reflect", **_SIZE, **_SPECTRAL},
        "training": {"batch_size": 4, "instruments": ["speech", "music", "sfx"]},
        "inference": {"batch_size": 8, "dim_t": 256, "num_overlap": 4},
    }


def bandit_plus_config() -> dict:
    """A BandIt Plus config laid out like config_dnr_bandit_bsrnn_multi_mus64.yaml (44.1 kHz), tiny."""
    return {
        "name": "MultiMaskMultiSourceBandSplitRNN",
        "audio": {"chunk_size": 22_050, "num_channels": 2, "sample_rate": 44_100, "min_mean_abs": 0.001},
        "model": {"in_channel": 1, "stems": ["speech", "music", "effects"], "band_specs": "musical", "fs": 44_100,
                  "require_no_overlap": False, "require_no_gap": True, "pad_mode": "constant", **_SIZE, **_SPECTRAL},
        "training": {"batch_size": 4, "instruments": ["speech", "music", "effects"]},
        "inference": {"batch_size": 1, "dim_t": 256, "num_overlap": 4},
    }


def write_model(folder: Path, config: dict, config_name: str = "config.yaml", checkpoint_name: str = "model.ckpt") -> Path:
    """A model directory: ``config`` and the state dict of a randomly initialised network built from it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / config_name).write_text(yaml.safe_dump(config))
    architecture = "bandit_v2" if "kwargs" in config else "bandit"
    torch.manual_seed(0)
    network, _ = get_model_from_config(architecture, str(folder / config_name))
    torch.save(network.state_dict(), folder / checkpoint_name)
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The test machine's cores are shared: more torch threads than free cores only slow each other down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def v2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny-v2", bandit_v2_config())


@pytest.fixture(scope="module")
def plus_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "tiny-plus", bandit_plus_config())


def assert_null_sums(stems: dict[str, np.ndarray], mix: np.ndarray) -> None:
    for stem in stems.values():
        assert stem.shape == mix.shape
    atol = 4 * np.finfo(np.float32).eps * max(float(np.abs(mix).max()), 1.0)
    np.testing.assert_allclose(stems["DX"] + stems["MX"] + stems["FX"], mix, rtol=0, atol=atol)
    np.testing.assert_allclose(stems["DX"] + stems["ME"], mix, rtol=0, atol=atol)
    np.testing.assert_allclose(stems["MX"] + stems["FX"], stems["ME"], rtol=0, atol=atol)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Real conversation at 48 kHz; shape (frames,)."""
    return sample_speech_48k()


def scene(speech: np.ndarray, frames: int, seed: int) -> np.ndarray:
    """Speech over a chord and noise; shape (frames,)."""
    t_s = np.arange(frames) / SR
    chord = 0.05 * sum(np.sin(2 * np.pi * hz * t_s) for hz in (196.0, 246.9, 293.7))
    noise = np.random.default_rng(seed).normal(0.0, 0.01, frames)
    return (speech[:frames] + chord + noise).astype(np.float32)


@pytest.mark.parametrize("search", ["mid_side", "left_right"])
def test_stereo_stems_keep_length_and_sum_to_the_mix(separate, search: str, v2_model: Path, speech, tmp_path: Path) -> None:
    frames = 2 * SR + 331  # not a whole number of hops or chunks
    mix = np.stack([scene(speech, frames, 1), scene(speech[SR:], frames, 2)], axis=1)  # shape: (frames, 2)
    stems = separate(tmp_path, mix, "stereo", backend="bandit", model=str(v2_model), stereo_search=search)
    assert_null_sums(stems, mix)
    for name in ("DX", "MX", "FX"):
        assert np.abs(stems[name][-SR // 10 :]).max() > 0  # the tail was separated, not zero-padded


def test_model_at_44k_is_resampled_both_ways(separate, plus_model: Path, speech, tmp_path: Path) -> None:
    frames = SR + 97
    mix = scene(speech, frames, 3)[:, None]  # shape: (frames, 1)
    stems = separate(tmp_path, mix, "mono", backend="bandit", model=str(plus_model))
    assert_null_sums(stems, mix)
    assert np.abs(stems["DX"]).max() > 0 and np.abs(stems["MX"]).max() > 0


def test_5_1_keeps_six_channels_and_lfe_untouched(separate, v2_model: Path, speech, tmp_path: Path) -> None:
    frames = SR + SR // 2
    names = LAYOUT_CHANNELS["5.1"]
    rng = np.random.default_rng(4)
    channels = {name: scene(speech, frames, seed) for seed, name in enumerate(("L", "R", "C"))}
    channels["LFE"] = (0.2 * np.sin(2 * np.pi * 40 * np.arange(frames) / SR)).astype(np.float32)
    channels["Ls"], channels["Rs"] = (0.02 * rng.standard_normal((2, frames))).astype(np.float32)
    mix = np.stack([channels[name] for name in names], axis=1)  # shape: (frames, 6)
    stems = separate(tmp_path, mix, "5.1", backend="bandit", model=str(v2_model), dialogue_channels="front")
    assert_null_sums(stems, mix)
    for name in ("LFE", "Ls", "Rs"):
        c = names.index(name)
        assert not stems["DX"][:, c].any() and not stems["MX"][:, c].any()
        assert np.array_equal(stems["ME"][:, c], stems["mix"][:, c])  # the mix as stored (24-bit)
        assert np.array_equal(stems["FX"][:, c], stems["mix"][:, c])
    for name in ("L", "R", "C"):
        assert np.abs(stems["DX"][:, names.index(name)]).max() > 0


@pytest.mark.parametrize("frames", [SR // 2, 5_000, 1])
def test_short_files_keep_every_frame(separate, frames: int, v2_model: Path, speech, tmp_path: Path) -> None:
    # 0.5 s is 4 hops of the 0.5-s chunk; 5,000 frames is less than one hop; 1 frame is the least there is.
    mix = scene(speech, frames, 5)[:, None]  # shape: (frames, 1)
    stems = separate(tmp_path, mix, "mono", backend="bandit", model=str(v2_model))
    assert_null_sums(stems, mix)


def test_silent_mix_gives_silent_stems(separate, v2_model: Path, tmp_path: Path) -> None:
    mix = np.zeros((SR + 5, 2), dtype=np.float32)
    stems = separate(tmp_path, mix, "stereo", backend="bandit", model=str(v2_model))
    for stem in stems.values():
        assert stem.shape == mix.shape and not stem.any()


def test_pure_music_still_sums_to_the_mix(separate, v2_model: Path, tmp_path: Path) -> None:
    t_s = np.arange(SR * 2) / SR
    chord = 0.1 * sum(np.sin(2 * np.pi * hz * t_s) / k for k, hz in enumerate((220.0, 277.2, 329.6, 440.0), 1))
    mix = np.stack([chord, 0.8 * chord], axis=1).astype(np.float32)  # shape: (frames, 2)
    assert_null_sums(separate(tmp_path, mix, "stereo", backend="bandit", model=str(v2_model)), mix)


def _streamed(model: bandit.BanditModel, signal: np.ndarray, block_frames: int) -> np.ndarray:
    """Speech and music (2, frames) of ``signal`` (frames,) fed in blocks of ``block_frames``."""
    stream = BanditStream(model, 1)
    parts = [stream.process(signal[i : i + block_frames, None]) for i in range(0, len(signal), block_frames)]
    parts.append(stream.flush())
    return np.stack([np.concatenate([part[stem][:, 0] for part in parts]) for stem in (DIALOGUE, MUSIC)])


def test_separation_does_not_depend_on_block_sizes(v2_model: Path, speech) -> None:
    model = bandit.load_model(v2_model, "cpu")
    signal = scene(speech, SR * 2 + 13, 8)
    expected = _streamed(model, signal, len(signal))
    assert np.array_equal(_streamed(model, signal, 7_001), expected)
    assert expected.shape == (2, len(signal))


def test_consistency_gives_the_residual_to_the_stems_by_power() -> None:
    stems = np.zeros((3, 1, 4), dtype=np.float32)
    stems[0, 0] = [1.0, -1.0, 1.0, -1.0]  # only speech is active
    mixture = np.array([[2.0, -2.0, 2.5, -1.5]], dtype=np.float32)
    fixed = share_by_power(stems, mixture)
    np.testing.assert_allclose(fixed.sum(axis=0), mixture)
    assert not fixed[1:].any()  # silent stems stay silent
    silent = share_by_power(np.zeros((3, 1, 2), dtype=np.float32), np.array([[0.3, 0.6]], dtype=np.float32))
    np.testing.assert_allclose(silent[:, 0], [[0.1, 0.2]] * 3, rtol=1e-6)


def test_registered_model_runs_through_the_engine_and_keys_the_cache(tmp_path: Path) -> None:
    registered = entry("bandit-v2-dnr3-multi")
    folder = write_model(
        tmp_path / "models" / registered.name, bandit_v2_config(),
        config_name=registered.config.file, checkpoint_name=registered.checkpoint.file,
    )
    media = speech_with_background(tmp_path / "reel.wav", duration_s=1.5)
    project = tmp_path / "project.yaml"
    project.write_text(
        f"extends: default\ninput: '{media.name}'\noutput: out\nmodels:\n  dir: models\n"
        f"separate:\n  backend: bandit\n  model: {registered.name}\n"
    )
    assert main(["run", str(project), "--until", "separate", "--quiet"]) == 0
    manifest = read_manifest(tmp_path / "out" / "work" / "separate")
    checkpoint = folder / registered.checkpoint.file
    assert manifest["model"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    # The folder's path is where the project happens to live; its content is what the result depends on.
    assert manifest["params"]["model"] == f"sha256 of folder:{sha256_folder(folder)}"
    work = WorkStems({"mix": tmp_path / "out/work/extract" / MIX, "DX": tmp_path / "out/work/separate" / DX,
                      "MX": tmp_path / "out/work/separate" / MX})
    (stems,) = work.blocks(("mix", "DX", "ME", "MX", "FX"))  # 1.5 s: one block
    assert_null_sums(stems, stems["mix"])


def test_missing_registered_model_names_the_file_and_where_to_get_it(tmp_path: Path) -> None:
    folder = tmp_path / "bandit-v2-dnr3-multi"
    with pytest.raises(ModelError) as err:
        bandit.load_model(folder, "cpu")
    message = str(err.value)
    assert f"not found: {folder / 'config_dnr_bandit_v2_mus64.yaml'}, {folder / 'checkpoint-multi.ckpt'}; get them" in message
    assert "https://zenodo.org/records/12701995" in message and "\n" not in message


def test_missing_model_directory_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"model directory {tmp_path / 'nowhere'} not found"):
        bandit.load_model(tmp_path / "nowhere", "cpu")


def test_truncated_checkpoint_is_a_one_line_model_error(v2_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cut"
    folder.mkdir()
    (folder / "config.yaml").write_bytes((v2_model / "config.yaml").read_bytes())
    data = (v2_model / "model.ckpt").read_bytes()
    (folder / "model.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"model\.ckpt: cannot be read as a PyTorch checkpoint .*truncated") as err:
        bandit.load_model(folder, "cpu")
    assert "\n" not in str(err.value)


def test_checkpoint_of_another_architecture_is_a_model_error(v2_model: Path, plus_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "config.yaml").write_bytes((v2_model / "config.yaml").read_bytes())
    (folder / "model.ckpt").write_bytes((plus_model / "model.ckpt").read_bytes())
    with pytest.raises(ModelError, match=r"does not fit the bandit_v2 model of config\.yaml .*weights missing"):
        bandit.load_model(folder, "cpu")


def test_config_of_another_architecture_in_a_registered_folder(tmp_path: Path) -> None:
    registered = entry("bandit-v2-dnr3-multi")
    folder = write_model(
        tmp_path / registered.name, bandit_plus_config(),
        config_name=registered.config.file, checkpoint_name=registered.checkpoint.file,
    )
    with pytest.raises(ModelError, match="describes a bandit model, not bandit_v2"):
        bandit.load_model(folder, "cpu")


def test_lightning_checkpoint_weights_are_found_under_model(v2_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "lightning"
    folder.mkdir()
    (folder / "config.yaml").write_bytes((v2_model / "config.yaml").read_bytes())
    weights = torch.load(v2_model / "model.ckpt", weights_only=True)
    state = {f"model.{key}": value for key, value in weights.items()} | {"loss_handler.scale": torch.ones(1)}
    torch.save({"epoch": 3, "state_dict": state}, folder / "model.ckpt")
    loaded = bandit.load_model(folder, "cpu").network.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in weights.items())
