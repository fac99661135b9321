"""Overlap-add: a weighted average of chunk estimates, with the backends' own weights."""

import numpy as np
import pytest

from dubprep.stages.backends.bandit import chunk_window
from dubprep.stages.backends.cinesep import FADE_SAMPLES, chunk_weights
from dubprep.stages.backends.overlap_add import Chunk, overlap_add


def test_a_window_gives_the_weighted_average_where_chunks_overlap() -> None:
    window = chunk_window(8)
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
    pieces = [(first, np.ones((3, 2, length)), chunk_weights(length)),
              (second, np.full((3, 2, length), 3.0), chunk_weights(length))]
    out = overlap_add(Chunk(0, 5 * FADE_SAMPLES), pieces)
    assert out.shape == (3, 2, 5 * FADE_SAMPLES) and out.dtype == np.float32
    fade = out[0, 0, 2 * FADE_SAMPLES : 3 * FADE_SAMPLES]
    assert fade[0] < 1.01 and fade[-1] > 2.99 and np.all(np.diff(fade) >= 0)  # 1 -> 3, never back
    assert fade[FADE_SAMPLES // 2] == pytest.approx(2.0, abs=1e-3)  # equal weights half-way
    np.testing.assert_allclose(out[..., : 2 * FADE_SAMPLES - 1], 1.0, rtol=1e-6)


def test_a_sample_no_chunk_covers_is_refused() -> None:
    pieces = [(Chunk(0, 8), np.ones(8), chunk_window(8))]
    with pytest.raises(AssertionError, match="covered by no chunk"):
        overlap_add(Chunk(0, 14), pieces)
