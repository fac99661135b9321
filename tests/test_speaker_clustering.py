"""Speaker clustering on real embeddings (pyannote's two-speaker sample): NME count, Viterbi, count limits."""

import numpy as np
import pytest

from dubprep.audio_io import ArraySource
from dubprep.progress import NullProgress
from dubprep.stages.backends.builtin_diarizer import label_frames, speech_frames
from dubprep.stages.backends.speaker_clustering import Resegmentation, nme_spectral_clustering, resegment, viterbi
from dubprep.stages.backends.speaker_embedding import WINDOW_SAMPLES, embed_windows
from dubprep.vad import SpeechRegion
from speech import REFERENCE, sample_speech_48k

SPEECH_RATE = 16000


@pytest.fixture(scope="module")
def sample():
    """Frames of the sample where one reference speaker talks alone: (frames, embeddings, speaker per frame)."""
    overlap = REFERENCE.get_overlap()
    spans = sorted(
        (piece.start, piece.end, label)
        for label in REFERENCE.labels()
        for piece in REFERENCE.label_timeline(label).support().extrude(overlap)
    )
    regions = [SpeechRegion(round(start * SPEECH_RATE), round(end * SPEECH_RATE)) for start, end, _ in spans]
    frames = speech_frames(regions)
    speech = sample_speech_48k()[::3]  # 16 kHz: the sample's own rate
    embeddings = embed_windows(ArraySource(speech), frames.centres, "cpu", NullProgress())
    owner = np.searchsorted([r.start for r in regions], frames.centres, side="right") - 1
    return frames, embeddings, np.array([spans[i][2] for i in owner])


def _apart(frames, stride: int) -> np.ndarray:
    centres = frames.centres[::stride]
    return np.abs(centres[:, None] - centres[None, :]) >= WINDOW_SAMPLES  # shape: (clustered, clustered)


def _purity(labels: np.ndarray, speakers: np.ndarray) -> float:
    """Share of frames whose cluster's majority speaker is their own."""
    right = 0
    for label in np.unique(labels):
        _, counts = np.unique(speakers[labels == label], return_counts=True)
        right += counts.max()
    return right / len(labels)


def test_nme_finds_the_two_speakers_of_the_sample(sample):
    frames, embeddings, speakers = sample
    labels = nme_spectral_clustering(embeddings[::2], _apart(frames, 2), 1, 10)
    assert labels.max() + 1 == 2
    assert _purity(labels, speakers[::2]) > 0.85


def test_nme_finds_one_speaker_when_one_talks(sample):
    frames, embeddings, speakers = sample
    alone = speakers == "speaker91"
    centres = frames.centres[alone]
    apart = np.abs(centres[:, None] - centres[None, :]) >= WINDOW_SAMPLES
    assert nme_spectral_clustering(embeddings[alone], apart, 1, 10).max() == 0


@pytest.mark.parametrize(("speakers", "found"), [((3, 3), 3), ((1, 1), 1), ((2, 10), 2), ((4, 10), 4)])
def test_the_speaker_count_stays_within_what_is_asked(sample, speakers, found):
    frames, embeddings, _ = sample
    labels, centroids = label_frames(embeddings, frames, speakers, similarity=0.95)
    assert len(centroids) == found == len(np.unique(labels))


def test_no_more_speakers_than_there_is_speech_for(sample):
    frames, embeddings, _ = sample
    # 5 s of speech holds one speaker of 3 s at most, whatever is asked.
    first = speech_frames([SpeechRegion(int(frames.starts[0]), int(frames.starts[0]) + 5 * SPEECH_RATE)])
    _, centroids = label_frames(embeddings[: len(first.centres)], first, (4, 4), similarity=0.95)
    assert len(centroids) == 1


def test_resegmentation_labels_the_sample_frames_by_speaker(sample):
    frames, embeddings, speakers = sample
    labels, centroids = label_frames(embeddings, frames, (1, 10), similarity=0.95)
    assert len(centroids) == 2
    # One cluster for all scores about 0.5; Resemblyzer hears 18.05-19.65 s as the other speaker.
    assert _purity(labels, speakers) > 0.85


def test_clusters_alike_enough_are_merged_and_small_ones_dropped(sample):
    frames, embeddings, speakers = sample
    own = speakers == "speaker91"
    # speaker91's frames split in two halves in time: one voice, two centroids.
    halves = np.where(np.arange(own.sum()) < own.sum() // 2, 0, 1)
    start = np.stack([embeddings[own][halves == h].mean(axis=0) for h in (0, 1)])
    start /= np.linalg.norm(start, axis=1, keepdims=True)
    free = np.r_[True, np.diff(frames.stretches[own]) != 0]
    alike = float(start[0] @ start[1])
    merged, _ = resegment(embeddings[own], start, free, 1, Resegmentation(0.3, alike - 0.01, 1))
    kept, _ = resegment(embeddings[own], start, free, 1, Resegmentation(0.3, min(0.999, alike + 0.05), 1))
    dropped, _ = resegment(embeddings[own], start, free, 1, Resegmentation(0.3, 0.999, own.sum()))
    assert merged.max() == 0 and kept.max() == 1 and dropped.max() == 0


def test_viterbi_changes_speaker_only_when_it_pays():
    # Frame scores for two speakers: a 2-frame lead for speaker 1 worth 0.4 in all, then a 4-frame one worth 1.6.
    scores = np.zeros((20, 2))
    scores[:, 0] = 0.5
    scores[5:7, 1] = 0.7
    scores[12:16, 1] = 0.9
    no_pause = np.zeros(20, bool)
    labels = viterbi(scores, change_cost=0.3, free_change=no_pause)
    assert labels.tolist() == [0] * 12 + [1] * 4 + [0] * 4
    # A pause before frame 5 makes the first change free, the change back still costs 0.3 > 0.2 left.
    pause = no_pause.copy()
    pause[5] = pause[7] = True
    assert viterbi(scores, change_cost=0.3, free_change=pause)[5:7].tolist() == [1, 1]
