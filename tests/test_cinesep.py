"""cinesep: the network's stems re-sum to the mix and stay aligned, weights are checked, training resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from dubprep.checksums import sha256_file
from dubprep.errors import ModelError
from dubprep.stages.backends import cinesep
from dubprep.stages.backends.cinesep import CineSepStream, load_net
from dubprep.stages.backends.separation import DIALOGUE, EFFECTS, MUSIC
from dubprep.stages.backends.cinesep_net import CineSepNet, NetConfig
from speech import sample_speech_48k, speech_with_background

from training.data import Pool, Pools, make_example
from training.export import export_weights
from training.train import TrainOptions, latest_checkpoint, train

SR = 48_000
SMALL = NetConfig(hidden=32, expansion=2, dilations=(1, 2))


def _net(seed: int = 0, config: NetConfig = NetConfig()) -> CineSepNet:
    torch.manual_seed(seed)
    return CineSepNet(config).eval()


def _separate(net: CineSepNet, mix: np.ndarray, block_frames: int) -> np.ndarray:
    stream = CineSepStream(net, channels=mix.shape[1])
    parts = [stream.process(mix[i : i + block_frames]) for i in range(0, len(mix), block_frames)]
    parts.append(stream.flush())
    stems = np.stack([np.concatenate([part[stem] for part in parts]) for stem in (DIALOGUE, MUSIC, EFFECTS)])
    return stems  # shape: (3, frames, channels)


def test_stems_resum_to_a_real_mix_and_start_where_it_starts(tmp_path: Path) -> None:
    mix = sf.read(speech_with_background(tmp_path / "mix.wav", 9.3), dtype="float32")[0]
    mix = np.concatenate([np.zeros((SR, 2), dtype=np.float32), mix])  # 1 s of silence first
    stems = _separate(_net(), mix, block_frames=123_457)
    assert stems.shape == (3, len(mix), 2)
    assert np.abs(stems.sum(axis=0) - mix).max() < 1e-5
    # Aligned: nothing before the mix starts, beyond one STFT window of spread.
    assert np.abs(stems[:, : SR - 2048]).max() < 1e-6
    assert all(np.abs(stem[SR : SR + SR // 2]).max() > 1e-4 for stem in stems)


def test_block_size_does_not_change_the_stems() -> None:
    speech = sample_speech_48k()[: 11 * SR]
    mix = np.stack([speech, 0.5 * speech], axis=1)  # shape: (frames, 2)
    net = _net()
    whole = _separate(net, mix, block_frames=len(mix))
    assert np.abs(_separate(net, mix, block_frames=48_013) - whole).max() < 1e-6


def test_mono_gives_mono_stems_that_resum() -> None:
    mono = sample_speech_48k()[: 5 * SR + 7, None]
    stems = _separate(_net(), mono, block_frames=SR)
    assert stems.shape == (3, len(mono), 1)
    assert np.abs(stems.sum(axis=0) - mono).max() < 1e-5


def test_more_than_two_channels_are_refused() -> None:
    with pytest.raises(ValueError, match="6 channels"):
        CineSepStream(_net(config=SMALL), channels=6)


def _weights_file(tmp_path: Path, net: CineSepNet) -> Path:
    path = tmp_path / "cinesep.pt"
    torch.save({"config": net.config.as_dict(), "state_dict": net.state_dict(), "step": 0}, path)
    return path


def test_weights_are_loaded_only_with_the_expected_sha256(tmp_path: Path) -> None:
    net = _net(config=SMALL)
    path = _weights_file(tmp_path, net)
    sha = sha256_file(path)
    loaded = load_net(path, sha)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    wrong = "0" * 64
    with pytest.raises(ModelError, match=f"expected {wrong}"):
        load_net(path, wrong)
    with pytest.raises(ModelError, match=f"not found .*expected sha256 {sha}"):
        load_net(tmp_path / "missing.pt", sha)


def test_corrupted_weights_name_the_expected_sha256(tmp_path: Path) -> None:
    path = _weights_file(tmp_path, _net(config=SMALL))
    sha = sha256_file(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"expected {sha}"):
        load_net(path, sha)


def test_shipped_weights_match_the_registry_and_are_small() -> None:
    path, sha = cinesep.shipped_weights()
    assert path.stat().st_size <= 20 * 2**20
    assert isinstance(cinesep.load_shipped(), CineSepNet)
    assert cinesep.weights_checksum() == sha


def _pools() -> Pools:
    """Real speech (pyannote's sample) and music/effects cut from a real mix with background."""
    speech = sample_speech_48k()
    lines = [np.repeat(speech[i : i + 2 * SR, None], 2, axis=1) for i in range(0, 20 * SR, 2 * SR)]
    t = np.arange(6 * SR) / SR
    chord = sum(np.sin(2 * np.pi * hz * t) for hz in (110.0, 164.8, 220.0)).astype(np.float32) * 0.1
    hits = [np.repeat((np.random.default_rng(i).normal(size=SR // 4) * np.exp(-t[: SR // 4] * 20))[:, None], 2, 1)
            for i in range(4)]
    return Pools(Pool.from_items(lines), Pool.from_items([np.stack([chord, chord], 1)]),
                 Pool.from_items([h.astype(np.float32) for h in hits]))


def test_examples_are_stems_of_a_mix_that_does_not_clip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(5):
        stems = make_example(_pools(), SR, rng)
        assert stems.shape == (3, 2, SR) and stems.dtype == np.float32
        assert np.abs(stems.sum(axis=0)).max() <= 0.99 + 1e-6


def _batches(seed: int):
    rng = np.random.default_rng(seed)
    pools = _pools()
    while True:
        yield torch.from_numpy(np.stack([make_example(pools, SR, rng) for _ in range(2)]))


def test_training_resumes_where_it_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    options = TrainOptions(checkpoints=folder, steps=2, every=1, keep=5, log_every=1)
    assert train(options, _batches(0), torch.device("cpu"), SMALL) == 2
    first = torch.load(latest_checkpoint(folder), weights_only=True)
    assert first["step"] == 2
    assert train(TrainOptions(checkpoints=folder, steps=4, every=1, keep=5, log_every=1), _batches(1),
                 torch.device("cpu"), SMALL) == 4
    second = torch.load(latest_checkpoint(folder), weights_only=True)
    assert second["step"] == 4
    adam_steps = {float(state["step"]) for state in second["optimizer"]["state"].values()}
    assert adam_steps == {4.0}  # the optimizer continued, not restarted
    assert any(not torch.equal(first["net"][k], second["net"][k]) for k in first["net"])
    exported = export_weights(latest_checkpoint(folder), tmp_path / "cinesep.pt")
    assert load_net(tmp_path / "cinesep.pt", exported).config == SMALL
