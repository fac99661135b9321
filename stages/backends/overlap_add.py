"""Chunked inference, shared by the model backends: a chunk, and the overlap-add that joins chunk estimates.

A backend cuts a stream into overlapping chunks, runs its model on each and
keeps (chunk, estimate, weights) pieces; :func:`overlap_add` turns the
pieces that cover a span into that span's estimate. Weights are the
backend's own (a window, cross-fade ramps): all that is needed is that every
sample of the span gets a positive total weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """A span of a stream: ``length_samples`` samples from sample ``offset_samples``."""

    offset_samples: int
    length_samples: int

    @property
    def end_samples(self) -> int:
        return self.offset_samples + self.length_samples


Piece = tuple[Chunk, np.ndarray, np.ndarray]
"""(chunk, estimate of shape (..., chunk.length_samples), weights of shape (chunk.length_samples,))."""


def overlap_add(span: Chunk, pieces: Sequence[Piece]) -> np.ndarray:
    """The weighted average of ``pieces`` over ``span``: shape (..., span.length_samples), float32.

    At sample ``t`` it is ``sum_k w_k[t - o_k] p_k[t - o_k] / sum_k w_k[t - o_k]``
    over the pieces k (offset o_k) that cover ``t``. Pieces that miss the span
    are ignored; every sample of the span must be covered with positive weight.
    """
    leading = next(estimate.shape[:-1] for _, estimate, _ in pieces)
    total = np.zeros((*leading, span.length_samples), dtype=np.float64)
    normaliser = np.zeros(span.length_samples, dtype=np.float64)
    for chunk, estimate, weights in pieces:
        start, end = max(chunk.offset_samples, span.offset_samples), min(chunk.end_samples, span.end_samples)
        if start >= end:
            continue
        inside = slice(start - chunk.offset_samples, end - chunk.offset_samples)
        at = slice(start - span.offset_samples, end - span.offset_samples)
        total[..., at] += estimate[..., inside] * weights[inside]
        normaliser[at] += weights[inside]
    assert np.all(normaliser > 0), f"a sample of {span} is covered by no chunk"
    return (total / normaliser).astype(np.float32)
