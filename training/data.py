"""Training examples: random cinematic mixtures made on the fly from the decoded pools.

The Divide-and-Remaster recipe, per example of ``segment_frames`` 48 kHz
stereo frames:

- speech: lines one after another with short pauses, panned centre (or off
  centre, one time in four), sometimes in a room (synthetic reverberation);
- music: a random excerpt of a random track, as mastered (looped if short),
  sometimes under level automation (a slow ride of up to -12 dB);
- effects: a few events at random times, random pans, +-6 dB, sometimes
  reverberant;
- levels: speech -17, music -24, effects -21 LUFS, each +-2 LU; one example
  in four is an "action" balance, music and effects each 3 LU under the
  speech so the M&E is about as loud as the dialogue; a stem is sometimes
  absent; the whole mix moves by -6..+3 dB and is lowered if it would clip.

The targets are the stems as they sit in the mix (reverberation included),
so the three sum to the mix.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import torch
from scipy.signal import fftconvolve

from training.sources import ROLES, SAMPLE_RATE

LEVELS_LUFS = {"speech": -17.0, "music": -24.0, "effects": -21.0}
LEVEL_SPREAD_LU = 2.0
ACTION_PROBABILITY = 0.25
ACTION_UNDER_SPEECH_LU = 3.0  # two stems 3 LU under the speech sum to about its loudness
ABSENT_PROBABILITY = {"speech": 0.1, "music": 0.15, "effects": 0.15}
OFF_CENTRE_PROBABILITY = 0.25
REVERB_PROBABILITY = {"speech": 0.4, "effects": 0.4}
AUTOMATION_PROBABILITY = 0.4
MIX_GAIN_DB = (-6.0, 3.0)
PEAK_CEILING = 0.99


@dataclass(frozen=True)
class Pool:
    """Audio items of one role: ``audio`` (frames, 2), int16 or float32; ``index`` (items, 2) of (start, frames)."""

    audio: np.ndarray
    index: np.ndarray

    @classmethod
    def load(cls, folder: Path, role: str) -> Pool:
        """The pool ``role`` written by training.sources, memory-mapped."""
        return cls(np.load(folder / f"{role}.npy", mmap_mode="r"), np.load(folder / f"{role}_index.npy"))

    @classmethod
    def from_items(cls, items: list[np.ndarray]) -> Pool:
        """A pool in memory from float32 items, each (frames, 2)."""
        starts = np.cumsum([0] + [len(item) for item in items[:-1]])
        return cls(np.concatenate(items), np.stack([starts, [len(item) for item in items]], axis=1))

    def item(self, number: int) -> np.ndarray:
        """Item ``number`` as float32 (frames, 2)."""
        start, frames = self.index[number]
        return _as_float(self.audio[start : start + frames])

    def random_excerpt(self, frames: int, rng: np.random.Generator) -> np.ndarray:
        """``frames`` (frames, 2) float32 from a random place in a random item, looped if the item is short.

        Reads only the excerpt: converting a whole 5-minute song per example
        would cost more than the rest of the example.
        """
        start, length = self.index[int(rng.integers(len(self.index)))]
        at = int(rng.integers(length))
        if at + frames <= length:
            return _as_float(self.audio[start + at : start + at + frames])
        positions = start + (at + np.arange(frames)) % length
        return _as_float(self.audio[positions])

    def random_item(self, rng: np.random.Generator) -> np.ndarray:
        return self.item(int(rng.integers(len(self.index))))

    @property
    def duration_s(self) -> float:
        return float(self.index[:, 1].sum()) / SAMPLE_RATE


def _as_float(audio: np.ndarray) -> np.ndarray:
    """int16 or float samples as float32 in -1..1."""
    audio = np.asarray(audio)
    return audio.astype(np.float32) / 32767 if audio.dtype == np.int16 else audio.astype(np.float32)


@dataclass(frozen=True)
class Pools:
    speech: Pool
    music: Pool
    effects: Pool

    @classmethod
    def load(cls, folder: Path) -> Pools:
        return cls(*(Pool.load(folder, role) for role in ROLES))


@functools.cache
def _meter() -> pyloudnorm.Meter:
    return pyloudnorm.Meter(SAMPLE_RATE)


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan of (frames,) to (frames, 2); position -1 (left) .. 1 (right)."""
    angle = (position + 1) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1)  # shape: (frames, 2)


def _reverb(track: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``track`` (frames, 2) in a synthetic room: decaying noise per channel, RT60 0.2-1.0 s, 10-50 % wet."""
    rt60_s = rng.uniform(0.2, 1.0)
    t = np.arange(int(rt60_s * SAMPLE_RATE)) / SAMPLE_RATE
    tails = rng.standard_normal((2, len(t))) * np.exp(-6.9 * t / rt60_s)  # shape: (2, taps): -60 dB at rt60
    tails /= np.sqrt(np.sum(tails**2, axis=1, keepdims=True))
    wet = np.stack([fftconvolve(track[:, c], tails[c])[: len(track)] for c in range(2)], axis=1)
    mix = rng.uniform(0.1, 0.5)
    return ((1 - mix) * track + mix * wet).astype(np.float32)


def _automation(track: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``track`` (frames, 2) under a slow gain ride through three random levels in -12..0 dB."""
    points_db = rng.uniform(-12.0, 0.0, size=3)
    gain_db = np.interp(np.linspace(0, 2, len(track)), [0, 1, 2], points_db)
    return track * (10 ** (gain_db / 20)).astype(np.float32)[:, None]


def _speech(pool: Pool, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Lines one after another, 0.1-1.0 s apart, the first maybe already under way; shape (frames, 2)."""
    position = rng.uniform(-0.6, 0.6) if rng.random() < OFF_CENTRE_PROBABILITY else 0.0
    out = np.zeros((frames, 2), dtype=np.float32)
    at = -int(rng.uniform(0.0, 1.5) * SAMPLE_RATE)
    while at < frames:
        line = pool.random_item(rng)[:, 0]
        begin = max(0, -at)
        piece = line[begin : frames - at]
        out[at + begin : at + begin + len(piece)] += _pan(piece, position)
        at += len(line) + int(rng.uniform(0.1, 1.0) * SAMPLE_RATE)
    return _reverb(out, rng) if rng.random() < REVERB_PROBABILITY["speech"] else out


def _music(pool: Pool, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A random excerpt of a random track, looped if short; shape (frames, 2)."""
    excerpt = pool.random_excerpt(frames, rng)
    return _automation(excerpt, rng) if rng.random() < AUTOMATION_PROBABILITY else excerpt


def _effects(pool: Pool, frames: int, rng: np.random.Generator) -> np.ndarray:
    """1-5 events at random times (some under way at the start), random pans, +-6 dB; shape (frames, 2)."""
    out = np.zeros((frames, 2), dtype=np.float32)
    for _ in range(1 + rng.poisson(1.5)):
        sound = pool.random_item(rng)
        sound = _pan(sound.mean(axis=1), rng.uniform(-1.0, 1.0)) * np.float32(10 ** (rng.uniform(-6, 6) / 20))
        at = int(rng.integers(-len(sound) // 2, frames))
        begin = max(0, -at)
        piece = sound[begin : frames - at]
        out[at + begin : at + begin + len(piece)] += piece
    return _reverb(out, rng) if rng.random() < REVERB_PROBABILITY["effects"] else out


def _targets_lufs(rng: np.random.Generator) -> dict[str, float]:
    """Loudness per stem: the DnR levels, or one time in four the "action" balance."""
    spread = {role: rng.uniform(-LEVEL_SPREAD_LU, LEVEL_SPREAD_LU) for role in ROLES}
    if rng.random() < ACTION_PROBABILITY:
        speech = LEVELS_LUFS["speech"] + spread["speech"]
        under = speech - ACTION_UNDER_SPEECH_LU
        return {"speech": speech, "music": under + spread["music"], "effects": under + spread["effects"]}
    return {role: LEVELS_LUFS[role] + spread[role] for role in ROLES}


def _to_loudness(stem: np.ndarray, target_lufs: float) -> np.ndarray:
    """``stem`` scaled to ``target_lufs``; left as it is if it is silent."""
    loudness = _meter().integrated_loudness(stem.astype(np.float64))
    if not np.isfinite(loudness):
        return stem
    return stem * np.float32(10 ** ((target_lufs - loudness) / 20))


def make_example(pools: Pools, frames: int, rng: np.random.Generator) -> np.ndarray:
    """One example's stems (3, 2, frames) float32: speech, music, effects as mixed (the mix is their sum)."""
    makers = {"speech": _speech, "music": _music, "effects": _effects}
    absent = {role: rng.random() < ABSENT_PROBABILITY[role] for role in ROLES}
    if all(absent.values()):
        absent["speech"] = False
    targets = _targets_lufs(rng)
    stems = []
    for role in ROLES:
        if absent[role]:
            stems.append(np.zeros((frames, 2), dtype=np.float32))
            continue
        stems.append(_to_loudness(makers[role](getattr(pools, role), frames, rng), targets[role]))
    stacked = np.stack(stems)  # shape: (3, frames, 2)
    gain = 10 ** (rng.uniform(*MIX_GAIN_DB) / 20)
    peak = float(np.abs(stacked.sum(axis=0)).max()) * gain
    gain *= min(1.0, PEAK_CEILING / max(peak, 1e-9))
    return np.ascontiguousarray((stacked * np.float32(gain)).transpose(0, 2, 1))  # shape: (3, 2, frames)


class Examples(torch.utils.data.IterableDataset):
    """Endless examples (stems (3, 2, frames)) from ``pools``; each worker draws from its own seed."""

    def __init__(self, pools: Pools, frames: int, seed: int) -> None:
        super().__init__()
        self.pools = pools
        self.frames = frames
        self.seed = seed

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, 0 if info is None else info.id])
        while True:
            yield torch.from_numpy(make_example(self.pools, self.frames, rng))
