"""The one streaming path: overlap-add with the backends' windows, and chunked streams of a real model-like function."""

import numpy as np
import pytest

from dubprep.stages.backends.cinesep import FADE_SAMPLES
from dubprep.stages.backends.streaming import (
    Chunk, ChunkedStream, ChunkPlan, FrameQueue, crossfade_weights, overlap_add, padded_tail, sine_squared_window,
    trimmed_tail,
)


def test_a_window_gives_the_weighted_average_where_chunks_overlap() -> None:
    window = sine_squared_window(8)
    assert window.min() > 0
    pieces = [(Chunk(0, 8), np.full(8, 2.0), window), (Chunk(4, 8), np.full(8, 4.0), window)]
    out = overlap_add(Chunk(2, 8), pieces)
    np.testing.assert_allclose(out[:2], 2.0)  # only the first chunk covers samples 2 and 3
    expected = (2.0 * window[4:] + 4.0 * window[:4]) / (window[4:] + window[:4])  # samples 4-7: both chunks
    np.testing.assert_allclose(out[2:6], expected, rtol=1e-6)
    np.testing.assert_allclose(out[6:], 4.0, rtol=1e-6)


def test_leading_axes_are_kept_and_ramps_cross_fade() -> None:
    length = 3 * FADE_SAMPLES
    first, second = Chunk(0, length), Chunk(2 * FADE_SAMPLES, length)
    weights = crossfade_weights(length, FADE_SAMPLES)
    pieces = [(first, np.ones((3, 2, length)), weights), (second, np.full((3, 2, length), 3.0), weights)]
    out = overlap_add(Chunk(0, 5 * FADE_SAMPLES), pieces)
    assert out.shape == (3, 2, 5 * FADE_SAMPLES) and out.dtype == np.float32
    fade = out[0, 0, 2 * FADE_SAMPLES : 3 * FADE_SAMPLES]
    assert fade[0] < 1.01 and fade[-1] > 2.99 and np.all(np.diff(fade) >= 0)  # 1 -> 3, never back
    assert fade[FADE_SAMPLES // 2] == pytest.approx(2.0, abs=1e-3)  # equal weights half-way
    np.testing.assert_allclose(out[..., : 2 * FADE_SAMPLES - 1], 1.0, rtol=1e-6)


def test_a_sample_no_chunk_covers_is_refused() -> None:
    pieces = [(Chunk(0, 8), np.ones(8), sine_squared_window(8))]
    with pytest.raises(AssertionError, match="covered by no chunk"):
        overlap_add(Chunk(0, 14), pieces)


def _delayed_gain(delay_samples: int):
    """A streaming 'model' with state: half the input, ``delay_samples`` late (what a look-ahead does)."""
    history = np.zeros((1, delay_samples), dtype=np.float32)

    def separate(hops: np.ndarray) -> np.ndarray:
        nonlocal history
        flat = np.concatenate([history, hops.transpose(1, 0, 2).reshape(1, -1)], axis=1)  # shape: (1, samples)
        history = flat[:, flat.shape[1] - delay_samples :]
        out = 0.5 * flat[:, : hops.shape[0] * hops.shape[2]]
        return out.reshape(1, hops.shape[0], hops.shape[2]).transpose(1, 0, 2)[:, None]  # shape: (n, 1, 1, hop)

    return separate


def _stream(stream: ChunkedStream, signal: np.ndarray, block_frames: int) -> np.ndarray:
    """``signal`` (frames, channels) fed in blocks; the stream's stems joined (stems, channels, frames)."""
    parts = [stream.process(signal[i : i + block_frames]) for i in range(0, len(signal), block_frames)]
    return np.concatenate([*parts, stream.flush()], axis=-1)


@pytest.mark.parametrize("frames", [1, 479, 4801, 48_013])
def test_a_models_delay_is_removed_and_every_frame_kept(frames: int) -> None:
    signal = np.random.default_rng(frames).standard_normal((frames, 1)).astype(np.float32)
    plan = ChunkPlan(480, 480, padded_tail, delay_samples=1440, batch_chunks=None)
    out = _stream(ChunkedStream(plan, _delayed_gain(1440), channels=1, stems=1), signal, 1000)
    assert out.shape == (1, 1, frames)
    np.testing.assert_array_equal(out[0, 0], 0.5 * signal[:, 0])


def _halves(mixtures: np.ndarray) -> np.ndarray:
    """Two stems, 0.3 and 0.7 of each chunk's mixture; shape (n, 2, channels, samples)."""
    return np.stack([0.3 * mixtures, 0.7 * mixtures], axis=1)


@pytest.mark.parametrize("tail", [padded_tail, trimmed_tail])
def test_overlapping_chunks_give_the_same_stems_in_any_block_size(tail) -> None:
    signal = np.random.default_rng(7).standard_normal((10_007, 2)).astype(np.float32)
    plan = ChunkPlan(1000, 750, tail, lead_samples=250 if tail is padded_tail else 0, batch_chunks=3)

    def run(block_frames: int) -> np.ndarray:
        stream = ChunkedStream(plan, _halves, 2, 2, sine_squared_window)
        return _stream(stream, signal, block_frames)

    whole = run(len(signal))
    assert whole.shape == (2, 2, len(signal))
    np.testing.assert_allclose(whole[0], 0.3 * signal.T, rtol=1e-5, atol=1e-6)  # an average of equal estimates
    for block_frames in (1, 333, 4096):
        np.testing.assert_array_equal(run(block_frames), whole)


def test_each_span_is_projected_onto_its_mixture() -> None:
    signal = np.random.default_rng(3).standard_normal((3_001, 1)).astype(np.float32)
    plan = ChunkPlan(1000, 750, trimmed_tail)

    def even_split(stems: np.ndarray, mixture: np.ndarray) -> np.ndarray:
        return stems + (mixture - stems.sum(axis=0)) / len(stems)

    stream = ChunkedStream(plan, lambda m: np.zeros((len(m), 2, *m.shape[1:]), np.float32), 1, 2,
                           sine_squared_window, even_split)
    np.testing.assert_allclose(_stream(stream, signal, 512), np.stack([0.5 * signal.T] * 2), rtol=1e-6)


def test_queued_frames_come_out_in_order() -> None:
    queue = FrameQueue(2)
    queue.push(np.arange(10, dtype=np.float32).reshape(5, 2))
    queue.push(np.arange(10, 14, dtype=np.float32).reshape(2, 2))
    assert len(queue) == 7
    np.testing.assert_array_equal(queue.pop(6)[:, 0], [0, 2, 4, 6, 8, 10])
    assert len(queue) == 1
