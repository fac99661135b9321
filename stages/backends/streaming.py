"""The one streaming path every model backend runs on: chunks, overlap-add, delay, mixture consistency.

A model separates fixed-length chunks; a programme is hours long. A
:class:`ChunkedStream` takes the programme in blocks of any size, cuts it
into the chunks a :class:`ChunkPlan` describes, runs the model on batches of
them, joins the chunk estimates (overlap-add with the model's window, or
end to end when chunks do not overlap) and returns every sample as soon as
no later chunk will cover it. The outputs, concatenated, are sample-aligned
with the input and exactly as long: zeros put before the first sample (the
lead) and a model's own output lag (its delay) are taken off here, once.
Memory is the chunks still open, whatever the programme's length.

Also here: the chunk windows, the mixture-consistency projections that
make a chunk's stems sum to its mixture, a queue of frames that wait for a
lagging stream, and a runner of streams side by side in threads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """A span of a stream: ``length_samples`` samples from sample ``offset_samples``."""

    offset_samples: int
    length_samples: int

    @property
    def end_samples(self) -> int:
        return self.offset_samples + self.length_samples


Piece = tuple[Chunk, np.ndarray, "np.ndarray | None"]
"""(chunk, estimate of shape (..., chunk.length_samples), weights of shape (chunk.length_samples,) or None)."""


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


def joined(span: Chunk, pieces: Sequence[Piece]) -> np.ndarray:
    """``span`` from pieces laid end to end (chunks that do not overlap); shape (..., span.length_samples)."""
    parts = []
    for chunk, estimate, _ in pieces:
        start, end = max(chunk.offset_samples, span.offset_samples), min(chunk.end_samples, span.end_samples)
        if start < end:
            parts.append(estimate[..., start - chunk.offset_samples : end - chunk.offset_samples])
    return np.concatenate(parts, axis=-1)


# --- windows ------------------------------------------------------------------------------------


def sine_squared_window(length_samples: int) -> np.ndarray:
    """sin^2 window sampled half a sample off its zeros: positive everywhere, (length_samples,) float32."""
    return (np.sin(np.pi * (np.arange(length_samples) + 0.5) / length_samples) ** 2).astype(np.float32)


def crossfade_weights(length_samples: int, fade_samples: int) -> np.ndarray:
    """Weights (length_samples,): raised-cosine ramps over ``fade_samples`` at both ends, one between.

    Every weight is above zero (the ramps start half a sample in), so a
    frame covered by a single chunk, at the very start or end of a stream,
    still has a normaliser above zero.
    """
    weights = np.ones(length_samples)
    ramp = np.sin(np.pi / 2 * (np.arange(min(fade_samples, length_samples)) + 0.5) / fade_samples) ** 2
    weights[: len(ramp)] = np.minimum(weights[: len(ramp)], ramp)
    weights[length_samples - len(ramp) :] = np.minimum(weights[length_samples - len(ramp) :], ramp[::-1])
    return weights


# --- mixture consistency ------------------------------------------------------------------------


def share_by_power(stems: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """``stems`` (stems, channels, frames) corrected to sum to ``mixture`` (channels, frames).

    The residual ``mixture - sum(stems)`` goes to the stems in proportion to
    their power over the span (equally when all are silent), so a stem the
    model left silent gets none of it.
    """
    residual = mixture - stems.sum(axis=0)  # shape: (channels, frames)
    power = np.sum(stems.astype(np.float64) ** 2, axis=-1, keepdims=True)  # shape: (stems, channels, 1)
    total = power.sum(axis=0, keepdims=True)  # shape: (1, channels, 1)
    share = np.divide(power, total, out=np.full_like(power, 1 / len(stems)), where=total > 0)
    return (stems + share.astype(np.float32) * residual[None]).astype(np.float32)


# --- the chunked stream -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkPlan:
    """How a stream is cut for a model.

    Chunks of ``chunk_samples`` start every ``hop_samples``;
    ``lead_samples`` zeros go before the first sample so that it is covered
    by as many chunks as any other; the model's output lags its input by
    ``delay_samples`` (a streaming model's look-ahead). ``batch_chunks``
    chunks go to the model at once (None: every chunk ready). ``tail`` says
    which chunks finish the stream (:func:`padded_tail`, :func:`trimmed_tail`).
    """

    chunk_samples: int
    hop_samples: int
    tail: Callable[[ChunkPlan, int, int], list[Chunk]]
    lead_samples: int = 0
    delay_samples: int = 0
    batch_chunks: int | None = 1

    @property
    def overlaps(self) -> bool:
        return self.hop_samples < self.chunk_samples


def padded_tail(plan: ChunkPlan, offset: int, end: int) -> list[Chunk]:
    """Whole chunks from ``offset`` over zeros past the stream's ``end`` until every sample is covered as often."""
    return [Chunk(start, plan.chunk_samples) for start in range(offset, end, plan.hop_samples)]


def trimmed_tail(plan: ChunkPlan, offset: int, end: int) -> list[Chunk]:
    """Chunks from ``offset`` cut short at ``end``, up to the first that reaches it."""
    chunks = []
    for start in range(offset, end, plan.hop_samples):
        chunks.append(Chunk(start, min(plan.chunk_samples, end - start)))
        if start + plan.chunk_samples >= end:
            break
    return chunks


Separate = Callable[[np.ndarray], np.ndarray]
"""A model on a batch of chunks: mixtures (chunks, channels, chunk_samples) -> stems (chunks, stems, channels, chunk_samples)."""
Consistent = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Stems (stems, channels, frames) made to sum to their mixture (channels, frames)."""


class ChunkedStream:
    """A model streamed over a signal of ``channels`` channels: blocks in, its stems out as they complete.

    :meth:`process` takes float32 blocks (frames, channels) and returns the
    stems (stems, channels, k) no later chunk will change; :meth:`flush`
    returns the rest. ``weights`` gives a chunk's overlap-add weights from its
    length (None when chunks do not overlap); ``consistent``, when given,
    projects each returned span onto its mixture.
    """

    def __init__(
        self,
        plan: ChunkPlan,
        separate: Separate,
        channels: int,
        stems: int,
        weights: Callable[[int], np.ndarray] | None = None,
        consistent: Consistent | None = None,
    ) -> None:
        self.plan = plan
        self._separate = separate
        self._weights = weights
        self._consistent = consistent
        self._stems = stems
        self._buffer = np.zeros((channels, plan.lead_samples), dtype=np.float32)  # shape: (channels, samples)
        self._buffer_start = 0  # stream position of the buffer's first sample
        self._end = plan.lead_samples  # one past the last sample fed
        self._next = 0  # where the next chunk starts
        self._written = plan.lead_samples + plan.delay_samples  # first model output position not yet returned
        self._pieces: list[Piece] = []

    def process(self, block: np.ndarray) -> np.ndarray:
        """Feed ``block`` (frames, channels); return the stems now complete (stems, channels, k)."""
        block = np.asarray(block, dtype=np.float32).T  # shape: (channels, frames)
        self._buffer = np.concatenate([self._buffer, block], axis=1)
        self._end += block.shape[1]
        ready = []
        while self._next + self.plan.chunk_samples <= self._end:
            ready.append(Chunk(self._next, self.plan.chunk_samples))
            self._next += self.plan.hop_samples
        self._run(ready)
        return self._emit(min(self._next, self._end + self.plan.delay_samples))

    def flush(self) -> np.ndarray:
        """Run the chunks that finish the stream; return the remaining stems (stems, channels, k)."""
        target = self._end + self.plan.delay_samples
        if self._written < target:
            tail = self.plan.tail(self.plan, self._next, target)
            self._run(tail)
            self._next = tail[-1].offset_samples + self.plan.hop_samples if tail else self._next
        return self._emit(target)

    def _run(self, chunks: list[Chunk]) -> None:
        """Separate ``chunks`` (zeros past the buffer's end) in batches; keep their estimates."""
        size = self.plan.batch_chunks or max(1, len(chunks))
        for first in range(0, len(chunks), size):
            batch = chunks[first : first + size]
            mixtures = np.zeros((len(batch), self._buffer.shape[0], self.plan.chunk_samples), dtype=np.float32)
            for row, chunk in enumerate(batch):
                start = chunk.offset_samples - self._buffer_start
                part = self._buffer[:, start : start + chunk.length_samples]
                mixtures[row, :, : part.shape[1]] = part
            estimates = self._separate(mixtures)  # shape: (chunks, stems, channels, chunk_samples)
            for row, chunk in enumerate(batch):
                weights = self._weights(chunk.length_samples) if self._weights else None
                self._pieces.append((chunk, estimates[row, ..., : chunk.length_samples], weights))

    def _emit(self, until: int) -> np.ndarray:
        """The stems of model output positions [written, until): no chunk still to come covers them."""
        if until <= self._written:
            return np.zeros((self._stems, self._buffer.shape[0], 0), dtype=np.float32)
        span = Chunk(self._written, until - self._written)
        stems = overlap_add(span, self._pieces) if self._weights else joined(span, self._pieces)
        if self._consistent:
            start = span.offset_samples - self.plan.delay_samples - self._buffer_start
            stems = self._consistent(stems, self._buffer[:, start : start + span.length_samples])
        self._written = until
        self._pieces = [piece for piece in self._pieces if piece[0].end_samples > until]
        keep_from = min(self._next, self._written - self.plan.delay_samples)
        self._buffer = self._buffer[:, max(0, keep_from - self._buffer_start) :]
        self._buffer_start = max(self._buffer_start, keep_from)
        return stems


# --- around the streams -------------------------------------------------------------------------


class FrameQueue:
    """Frames (frames, channels) waiting for a lagging stream's answer."""

    def __init__(self, channels: int) -> None:
        self._frames = np.zeros((0, channels), dtype=np.float32)  # shape: (frames, channels)

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, block: np.ndarray) -> None:
        self._frames = np.concatenate([self._frames, block])

    def pop(self, count: int) -> np.ndarray:
        """The oldest ``count`` frames (count, channels)."""
        out, self._frames = self._frames[:count], self._frames[count:]
        return out


class Stream(Protocol):
    """Anything fed blocks and flushed once, whose native state ``close`` frees."""

    def process(self, block: np.ndarray) -> Any: ...

    def flush(self) -> Any: ...

    def close(self) -> None: ...


class StreamSet:
    """Streams fed side by side: in threads when ``parallel``, one after another otherwise.

    Threads pay off for streams whose work runs outside the GIL (native
    frame calls, numpy FFTs): each keeps a core busy, without a process
    pool's start-up time and copies of every block. A torch model already
    uses every core in each call, so its streams run in turn.
    """

    def __init__(self, streams: Sequence[Stream], parallel: bool) -> None:
        self._streams = list(streams)
        self._executor = ThreadPoolExecutor(len(self._streams), thread_name_prefix="stream") if parallel else None

    def _map(self, call: Callable[..., Any], *args: Sequence[Any]) -> list[Any]:
        if self._executor is None:
            return list(map(call, self._streams, *args))
        return list(self._executor.map(call, self._streams, *args))

    def process(self, blocks: Sequence[np.ndarray]) -> list[Any]:
        """Feed ``blocks[i]`` to stream i; return each answer."""
        return self._map(lambda stream, block: stream.process(block), blocks)

    def flush(self) -> list[Any]:
        return self._map(lambda stream: stream.flush())

    def __enter__(self) -> StreamSet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the threads and free what every stream holds."""
        if self._executor is not None:
            self._executor.shutdown()
        for stream in self._streams:
            stream.close()
