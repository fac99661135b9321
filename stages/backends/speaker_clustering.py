"""Speaker clustering: NME spectral clustering, then Viterbi resegmentation of every frame.

1. :func:`nme_spectral_clustering` (Park et al., "Auto-tuning spectral
   clustering for speaker diarization using normalized maximum eigengap",
   IEEE SPL 2019) on a subsample of the frames' embeddings. The cosine
   affinity is binarised row by row (each window keeps its p most alike
   windows); p is chosen per recording as the one minimising
   ``(p / n) / g_p``, ``g_p`` being the largest gap among the Laplacian's
   smallest eigenvalues divided by its largest; the speaker count is where
   that Laplacian's eigengap is largest. Nothing in it is a tuned threshold.
2. :func:`resegment`: every 0.1-s frame is labelled by a Viterbi pass over
   the frame sequence against the cluster centroids, where a frame's score
   is its cosine similarity to a centroid and changing speaker costs
   ``change_cost``; the centroids are then recomputed from the labels.
   Clusters whose centroids are nearly one voice (cosine ``merge_similarity``
   or more) are merged, and a cluster left with under ``min_speech_s`` of
   speech is dropped, until neither happens (never below the fewest
   speakers asked for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dubprep.lazy import lazy_module

cluster_lib, linalg = lazy_module("sklearn.cluster"), lazy_module("scipy.linalg")

_PRUNING_CANDIDATES = 12  # values of p tried, geometrically spaced
_MAX_NEIGHBOUR_SHARE = 0.25  # p at most this share of the windows (Park et al. search up to it)
_NO_GAP = 1e-8  # a normalised eigengap this small is rounding: the graph is in more pieces than speakers


def centroids_of(embeddings: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Unit-norm mean embedding of each label 0..count-1; shape: (count, dimension)."""
    members = np.zeros((count, len(labels)))
    members[labels, np.arange(len(labels))] = 1.0
    sums = members @ embeddings  # shape: (count, dimension)
    return sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)


def _laplacian(order: np.ndarray, neighbours: int) -> np.ndarray:
    """Laplacian of the graph linking each window to its ``neighbours`` most alike ones (symmetrised)."""
    graph = np.zeros(order.shape)
    np.put_along_axis(graph, order[:, :neighbours], 1.0, axis=1)
    graph = (graph + graph.T) / 2
    return np.diag(graph.sum(axis=1)) - graph


def _normalised_eigengap(eigenvalues: np.ndarray, high: int) -> float:
    """Largest gap among the ``high + 1`` smallest eigenvalues, over the largest eigenvalue."""
    return float(np.diff(eigenvalues[: high + 1]).max() / (eigenvalues[-1] + 1e-10))


def nme_laplacian(affinity: np.ndarray, low: int, high: int) -> tuple[np.ndarray, int]:
    """The binarised Laplacian Park et al.'s NME criterion picks, and the speaker count.

    Every pruning p on a geometric grid gives a count (its largest
    eigengap) and a ratio ``(p / n) / g_p``. The count is the one most of
    the p give (ties: the one with the lowest ratio), and the Laplacian the
    one with the lowest ratio among the p that give it. On a short
    recording the lowest ratio alone swings between the speaker count and
    the number of turns: with few neighbours per window, windows link only
    within their own turn.
    """
    n = len(affinity)
    order = np.argsort(-affinity, axis=1)
    largest = max(2, int(n * _MAX_NEIGHBOUR_SHARE))
    tried = []
    for neighbours in np.unique(np.geomspace(1, largest, _PRUNING_CANDIDATES).astype(int)):
        laplacian = _laplacian(order, neighbours)
        eigenvalues = linalg.eigvalsh(laplacian)
        gap = _normalised_eigengap(eigenvalues, high)
        if gap > _NO_GAP:  # else more than ``high`` pieces: no count in range
            tried.append((neighbours / n / gap, count_from_eigengap(eigenvalues, low, high), laplacian))
    if not tried:
        return _laplacian(order, largest), low
    votes = np.bincount([count for _, count, _ in tried])
    _, count, laplacian = min((t for t in tried if votes[t[1]] == votes.max()), key=lambda t: t[0])
    return laplacian, count


def count_from_eigengap(eigenvalues: np.ndarray, low: int, high: int) -> int:
    """The count k in [low, high] with the largest gap between the k-th and (k+1)-th smallest eigenvalues."""
    gaps = np.diff(eigenvalues[: high + 1])  # gaps[k - 1]: after the k-th eigenvalue
    return low + int(np.argmax(gaps[low - 1 : high]))


def nme_spectral_clustering(embeddings: np.ndarray, apart: np.ndarray, low: int, high: int) -> np.ndarray:
    """Cluster index of each (unit-norm) embedding, ``low``..``high`` clusters.

    ``apart`` (n, n) is False for pairs of windows that share audio: shared
    samples make them alike whatever the speaker, so their affinity is not
    counted.
    """
    high = min(high, len(embeddings) - 1)
    if high < 2:
        return np.zeros(len(embeddings), int)
    affinity = np.where(apart, embeddings @ embeddings.T, -1.0)
    laplacian, count = nme_laplacian(affinity, min(low, high), high)
    if count == 1:
        return np.zeros(len(embeddings), int)
    _, vectors = linalg.eigh(laplacian, subset_by_index=[0, count - 1])
    labels = cluster_lib.KMeans(count, n_init=10, random_state=0).fit_predict(vectors)
    return np.unique(labels, return_inverse=True)[1]


def viterbi(scores: np.ndarray, change_cost: float, free_change: np.ndarray) -> np.ndarray:
    """Label sequence maximising the summed ``scores`` (frames, labels) minus ``change_cost`` per change.

    A change into frame t is free where ``free_change[t]`` (a pause before it).
    """
    frames, count = scores.shape
    back = np.zeros((frames, count), int)
    total = scores[0].astype(np.float64)
    own = np.arange(count)
    for t in range(1, frames):
        best = int(np.argmax(total))
        switch = total[best] - (0.0 if free_change[t] else change_cost)
        back[t] = np.where(switch > total, best, own)
        total = np.maximum(total, switch) + scores[t]
    labels = np.empty(frames, int)
    labels[-1] = int(np.argmax(total))
    for t in range(frames - 1, 0, -1):
        labels[t - 1] = back[t, labels[t]]
    return labels


@dataclass(frozen=True)
class Resegmentation:
    """Settings of :func:`resegment` (see the module docstring)."""

    change_cost: float
    merge_similarity: float
    min_speech_frames: int


def _relabel(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 0..k-1 (absent ones dropped) and their centroids."""
    labels = np.unique(labels, return_inverse=True)[1]
    return labels, centroids_of(embeddings, labels, int(labels.max()) + 1)


def _fewer(centroids: np.ndarray, labels: np.ndarray, settings: Resegmentation) -> np.ndarray | None:
    """The centroids less the most alike one of a pair alike enough, else less the smallest
    cluster if too small; None when neither."""
    alike = centroids @ centroids.T
    np.fill_diagonal(alike, -np.inf)
    a, b = np.unravel_index(np.argmax(alike), alike.shape)
    if alike[a, b] >= settings.merge_similarity:
        merged = centroids[a] + centroids[b]
        return np.delete(np.vstack([centroids, merged / np.linalg.norm(merged)]), [a, b], axis=0)
    sizes = np.bincount(labels, minlength=len(centroids))
    if sizes.min() < settings.min_speech_frames:
        return np.delete(centroids, int(np.argmin(sizes)), axis=0)
    return None


def resegment(
    embeddings: np.ndarray, centroids: np.ndarray, free_change: np.ndarray, low: int, settings: Resegmentation
) -> tuple[np.ndarray, np.ndarray]:
    """Viterbi label of every frame and the centroids, merged and pruned (never below ``low``)."""
    previous = None
    for _ in range(len(centroids) + 8):  # each pass removes a cluster or refines; refining settles in a few
        labels = viterbi(embeddings @ centroids.T, settings.change_cost, free_change)
        labels, centroids = _relabel(embeddings, labels)
        fewer = _fewer(centroids, labels, settings) if len(centroids) > low else None
        if fewer is not None:
            centroids, previous = fewer, None
            continue
        if previous is not None and np.array_equal(previous, labels):
            break
        previous = labels
    return labels, centroids
