"""Conversations with known speaker turns, built from the recorded voices of ONE split of corpus/splits.py.

    python benchmarks/diarconv.py --set tune [--cases DIR] [--seed N] [--check-voices]

Each case is a conversation of 1-6 speakers, 60-150 s (the last turn may run
over), written as a media
file the product reads (``conversation.mov``: 24-bit PCM, audio only,
stereo or 5.1) beside its reference turns (``reference.rttm``) and what it
was built from (``case.json``). Case ``i`` of a set is drawn from
``numpy.random.default_rng([seed, i])``:

- speakers: ``SPEAKER_COUNTS[i]`` voices of the set (drawn by their number of
  lines, so a minor character is rarely the main speaker), each at its own level
  (-6..+3 dB around the others), each line +-1.5 dB more; some speakers
  talk more than others (Dirichlet weights);
- turns: 1-3 lines of one speaker, 0.15-0.5 s apart; the next turn starts
  -0.4 s (overlap) to 1.0 s after; with two or more speakers, a turn of
  3 s or more gets a short line (<= 1.3 s) of another speaker inside it
  (a backchannel over the speech) three times in ten;
- reference: each line's runs of 10-ms frames within 40 dB of its loudest
  and 10 dB over its noise floor (but never more than 25 dB under the
  loudest), pauses under 0.3 s inside a line counted as speech; nobody
  overlaps themselves (a speaker's next line starts 0.15 s or more after
  their last);
- background: clean on ``CLEAN_CASES``, otherwise music and spot effects
  of the same split under the dialogue at the Divide-and-Remaster levels
  (speech -17, music -24, effects -21 LUFS, each +-2 LU, pyloudnorm);
- layout: even cases stereo (dialogue centre), odd cases 5.1 (L R C LFE Ls
  Rs; dialogue in C only, music over L/R and -3 dB in Ls/Rs, effects panned
  between a random pair, LFE the low-passed music and effects).

Voices: each Fish Fillets character is one speaker (the files of character
``c`` are ``sound/<level>/<language>/<level prefix>-<c>-<word>.ogg``; the
two fish, ``m`` the small one and ``v`` the big one, speak in every level,
by the same actor per language). ``--check-voices`` prints how alike the
voices' lines are (Resemblyzer, cosine of utterance embeddings) to check
that a character is one voice and two characters are two.

Every package is checked with ``corpus.splits.require`` before it is
fetched (benchmarks/sepdata.py ``fetch``, cache ``$DUBPREP_BENCH_CACHE``).
Cases are cached under ``DIR/<set>/`` keyed by every parameter.

The TEST cases (``DIR/test``) are for reporting only: never tune a
constant, threshold, rule or model on them, nor listen to them to choose one.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
from scipy.signal import butter, sosfilt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from corpus.splits import require  # noqa: E402  (the repository root is not a package)
from sepdata import cache_dir, fetch  # noqa: E402

from dubprep.tools import find_tool  # noqa: E402

BUILDER_VERSION = 3
SR = 48_000
SPEAKER_COUNTS = (1, 2, 2, 3, 3, 4, 5, 6)
CLEAN_CASES = (1, 4)
DEFAULT_SEEDS = {"tune": 7100, "test": 7200}
DURATION_RANGE_S = (60.0, 150.0)
GAP_RANGE_S = (-0.4, 1.0)
LINE_PAUSE_RANGE_S = (0.15, 0.5)
BACKCHANNEL_MAX_S = 1.3
BACKCHANNEL_MIN_TURN_S = 3.0
LONGEST_LINE_S = 12.0
BACKCHANNEL_CHANCE = 0.3
SPEAKER_LEVEL_RANGE_DB = (-6.0, 3.0)
LINE_LEVEL_SPREAD_DB = 1.5
LINE_RMS_DBFS = -26.0
TRIM_BELOW_PEAK_DB = -40.0
MIN_PAUSE_S = 0.3
NOISE_MARGIN_DB = 10.0
SPEECH_ABOVE_DB = -25.0  # never ask more of a frame than this (dB under the peak) to count as speech
LEVELS_LUFS = {"DX": -17.0, "MX": -24.0, "FX": -21.0}
LEVEL_SPREAD_LU = 2.0
EFFECT_MEAN_GAP_S = 2.5
PEAK_CEILING = 0.99
LFE_CUTOFF_HZ = 120.0
CHANNELS = {"stereo": ("L", "R"), "5.1": ("L", "R", "C", "LFE", "Ls", "Rs")}
_SHARE = "usr/share"
_TONES = r"(beep|beeperr|ascending-2tone|descending-2tone|confbridge-(join|leave))"


@dataclass(frozen=True)
class Voice:
    """One speaker: the files of ``package`` (under the unpacked root) whose path matches ``pattern``."""

    name: str
    package: str
    pattern: str
    synthetic: bool = False  # flite: lines are synthesised from _FLITE_LINES, ``pattern`` is the voice


def _fillets(language: str, character: str, package: str, level: str = "") -> Voice:
    """A Fish Fillets character; ``level`` for one who speaks in that level only."""
    pattern = rf"{_SHARE}/games/fillets-ng/sound/{level or '[^/]+'}/{language}/[^-/]+-{character}-[^/]+\.ogg"
    return Voice(f"fillets-{language}-{level + '-' if level else ''}{character}", package, pattern)


VOICES: dict[str, tuple[Voice, ...]] = {
    "test": (
        _fillets("cs", "m", "fillets-ng-data-cs"),
        _fillets("cs", "v", "fillets-ng-data-cs"),
        _fillets("nl", "m", "fillets-ng-data-nl"),
        _fillets("nl", "v", "fillets-ng-data-nl"),
        # The clock of the last level (numbers): unlike every other voice here (--check-voices); the city's
        # announcer, the parrot and the Dutch electromagnet sound like one of the fish (0.76-0.94), so are left out.
        _fillets("cs", "c", "fillets-ng-data-cs", "ending"),
        Voice("menardi-it", "asterisk-prompt-it-menardi-wav",
              rf"{_SHARE}/asterisk/sounds/it_IT_f_Menardi/(?!{_TONES}\.)[^/]+\.wav"),
    ),
    "tune": (
        Voice("allison-en", "asterisk-core-sounds-en-g722",
              rf"{_SHARE}/asterisk/sounds/en_US_f_Allison/(?!{_TONES}\.)[^/]+\.g722"),
        Voice("armelle-fr", "asterisk-prompt-fr-armelle", rf"{_SHARE}/asterisk/sounds/fr/[^/]+\.gsm"),
        Voice("co-es", "asterisk-prompt-es-co", rf"{_SHARE}/asterisk/sounds/es/[^/]+\.gsm"),
        # Fish Fillets' English data has few voiced lines: the elk level's Russian one; its German one
        # sounds like the same actor (--check-voices 0.77); the viking level's (dr-7-brble*, dr-7-sm*) are not lines.
        _fillets("en", "l", "fillets-ng-data", "elk"),
        # Synthetic, so only in the five- and six-speaker cases (_cast takes recorded voices first).
        Voice("flite-awb", "flite", "awb", synthetic=True),
        Voice("flite-slt", "flite", "slt", synthetic=True),
    ),
}
# Music: tracks of one file each; effects: short sounds placed at random times.
BACKGROUNDS: dict[str, dict[str, tuple[tuple[str, str, str], ...]]] = {
    "test": {
        "music": (
            ("warzone2100-music", rf"{_SHARE}/games/warzone2100/music/albums/.*\.opus", r"$^"),
            ("supertux-data", rf"{_SHARE}/games/supertux2/music/.*\.ogg", r"$^"),
            ("megaglest-data", rf"{_SHARE}/games/megaglest/.*/music/[^/]+\.ogg", r"$^"),
        ),
        "effects": (
            ("lugaru-data", rf"{_SHARE}/games/lugaru/Sounds/[^/]+\.ogg", r".*/Music[^/]*"),
            # Tileset ambiences (birds, water, wind); the units' spoken acknowledgements are not effects.
            ("megaglest-data", rf"{_SHARE}/games/megaglest/tilesets/[^/]+/sounds/[^/]+\.(wav|ogg)", r".*_(ack|select)\d*\.wav"),
        ),
    },
    "tune": {
        "music": (
            ("fb-music-high", rf"{_SHARE}/games/frozen-bubble/snd/[^/]+\.xm", r"$^"),
            ("wesnoth-1.16-music", rf"{_SHARE}/games/wesnoth/.*/music/[^/]+\.ogg", r"$^"),
            ("fillets-ng-data", rf"{_SHARE}/games/fillets-ng/music/rybky\d+\.ogg", r"$^"),
        ),
        "effects": (
            ("sound-theme-freedesktop", rf"{_SHARE}/sounds/freedesktop/stereo/[^/]+\.oga",
             r".*/(audio-channel-|audio-test-signal)[^/]*"),
            ("extremetuxracer-data", rf"{_SHARE}/games/etr/sounds/[^/]+\.wav", r"$^"),
            ("fillets-ng-data", rf"{_SHARE}/games/fillets-ng/sound/share/[^/]+\.ogg", r"$^"),
        ),
    },
}
_FLITE_PACKAGES = ("flite", "libflite1")
_FLITE_LINES = (
    "Where were you last night when the lights went out?",
    "I was at the station, waiting for the late train.",
    "Nobody saw you there. Not the guard, not the ticket clerk.",
    "Then ask the driver. He waved at me when the doors closed.",
    "We did ask him. He says the train never stopped.",
    "That is impossible, I stood on the platform for an hour.",
    "Fine. I left the office at seven and walked along the river.",
    "Only the old man who sells newspapers by the bridge.",
    "It is freezing outside, and the car will not start.",
    "Yes.", "No.", "Right.", "Really?", "Okay.",
)


def packages_of(split: str) -> tuple[str, ...]:
    """Every Debian package the ``split``'s conversations are built from."""
    names = {voice.package for voice in VOICES[split]}
    names |= {package for rules in BACKGROUNDS[split].values() for package, _, _ in rules}
    if any(voice.synthetic for voice in VOICES[split]):
        names |= set(_FLITE_PACKAGES)
    return tuple(sorted(names))


@dataclass(frozen=True)
class Pool:
    """A split's sources: each voice's line files, music tracks, effects, and the .deb files (part of the cache key)."""

    root: Path
    lines: dict[str, tuple[Path, ...]]
    music: tuple[Path, ...]
    effects: tuple[Path, ...]
    debs: tuple[str, ...]


@functools.cache
def _unpacked_files(root: Path) -> tuple[str, ...]:
    """Every file under the unpacked root, as paths relative to it."""
    return tuple(sorted(str(Path(d, f).relative_to(root)) for d, _, files in os.walk(root / _SHARE) for f in files))


def _matching(root: Path, pattern: str, exclude: str, what: str) -> tuple[Path, ...]:
    found = tuple(root / p for p in _unpacked_files(root) if re.fullmatch(pattern, p) and not re.fullmatch(exclude, p))
    if not found:
        raise FileNotFoundError(f"no {what} file matches {pattern} under {root}; fix its rule in {__file__}")
    return found


def find_pool(split: str, cache: Path) -> Pool:
    """The ``split``'s sources; SplitError before anything is fetched if a package is of another split."""
    packages = packages_of(split)
    require(packages, split)
    root = fetch(packages, cache)
    debs = tuple(sorted(deb.name for name in packages for deb in (cache / "debs").glob(f"{name}_*.deb")))
    lines = {v.name: _matching(root, v.pattern, r"$^", v.name) for v in VOICES[split] if not v.synthetic}
    music = sum((_matching(root, p, x, "music") for _, p, x in BACKGROUNDS[split]["music"]), ())
    effects = sum((_matching(root, p, x, "effects") for _, p, x in BACKGROUNDS[split]["effects"]), ())
    return Pool(root, lines, music, effects, debs)


def _decode(path: Path, channels: int) -> np.ndarray:
    """``path`` as 48 kHz float32; shape (frames, channels)."""
    fmt = ["-f", "g722"] if path.suffix == ".g722" else []
    command = [str(find_tool("ffmpeg")), "-v", "error", *fmt, "-i", str(path)]
    command += ["-ar", str(SR), "-ac", str(channels), "-f", "f32le", "-"]
    samples = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(samples, dtype=np.float32).reshape(-1, channels)  # shape: (frames, channels)


def _trimmed(speech: np.ndarray) -> np.ndarray:
    """``speech`` (frames,) from its first to its last 10-ms frame above TRIM_BELOW_PEAK_DB of its loudest."""
    hop_samples = SR // 100
    count = len(speech) // hop_samples
    if count == 0:  # a file shorter than 10 ms (some game data ships empty ones)
        return speech[:0]
    rms = np.sqrt(np.mean(speech[: count * hop_samples].reshape(count, hop_samples) ** 2, axis=1))  # shape: (count,)
    loud = np.flatnonzero(rms > rms.max() * 10 ** (TRIM_BELOW_PEAK_DB / 20))
    return speech[loud[0] * hop_samples : (loud[-1] + 1) * hop_samples] if len(loud) else speech[:0]


@functools.cache
def _line_audio(path: Path) -> np.ndarray:
    """One recorded line, trimmed, at LINE_RMS_DBFS; shape (frames,)."""
    line = _trimmed(_decode(path, 1)[:, 0])
    if not len(line):
        return line
    return (line * 10 ** (LINE_RMS_DBFS / 20) / (np.sqrt(np.mean(line**2)) + 1e-9)).astype(np.float32)


@functools.cache
def _flite_audio(root: Path, voice: str, text: str) -> np.ndarray:
    """``text`` spoken by flite's ``voice``, trimmed, at LINE_RMS_DBFS; shape (frames,)."""
    wav = root / f".flite-{os.getpid()}.wav"
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/x86_64-linux-gnu"))
    subprocess.run([str(root / "usr/bin/flite"), "-voice", voice, "-t", text, "-o", str(wav)], env=env, check=True)
    try:
        line = _trimmed(_decode(wav, 1)[:, 0])
    finally:
        wav.unlink()
    return (line * 10 ** (LINE_RMS_DBFS / 20) / (np.sqrt(np.mean(line**2)) + 1e-9)).astype(np.float32)


def _line(pool: Pool, voice: Voice, rng: np.random.Generator, max_s: float) -> np.ndarray | None:
    """A random line of ``voice`` no longer than ``max_s`` (None if 40 draws find none)."""
    for _ in range(40):
        if voice.synthetic:
            line = _flite_audio(pool.root, voice.pattern, str(rng.choice(_FLITE_LINES)))
        else:
            files = pool.lines[voice.name]
            line = _line_audio(files[rng.integers(len(files))])
        if 0 < len(line) <= max_s * SR:
            return line
    return None


@dataclass(frozen=True)
class Dialogue:
    """The dialogue stem (frames,) at SR and its reference: (start_s, end_s, speaker) per line."""

    speech: np.ndarray
    turns: tuple[tuple[float, float, str], ...]


def _spoken_spans(line: np.ndarray) -> list[tuple[float, float]]:
    """(start_s, end_s) of the runs of ``line``'s speech frames (10 ms, above its noise floor), joined across
    pauses shorter than MIN_PAUSE_S: a line's reference segments."""
    hop_samples = SR // 100
    count = len(line) // hop_samples
    rms = np.sqrt(np.mean(line[: count * hop_samples].reshape(count, hop_samples) ** 2, axis=1))  # shape: (count,)
    # Some recordings' hiss (Armelle's GSM prompts: 35-38 dB under the peak) is above TRIM_BELOW_PEAK_DB,
    # so speech must also stand NOISE_MARGIN_DB over the line's floor (its quietest tenth of frames).
    floor_db = 20 * np.log10(np.percentile(rms, 10) / rms.max() + 1e-9)
    threshold_db = max(TRIM_BELOW_PEAK_DB, min(floor_db + NOISE_MARGIN_DB, SPEECH_ABOVE_DB))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    breaks = np.flatnonzero(np.diff(loud) * hop_samples > MIN_PAUSE_S * SR)
    starts, ends = np.r_[loud[0], loud[breaks + 1]], np.r_[loud[breaks], loud[-1]] + 1
    return [(a * hop_samples / SR, b * hop_samples / SR) for a, b in zip(starts, ends)]


def _turn(pool: Pool, voice: Voice, gain_db: float, start_s: float, rng: np.random.Generator) -> list:
    """1-3 lines of ``voice`` from ``start_s``, LINE_PAUSE_RANGE_S apart: [(start_s, line, name)]."""
    placed, at_s = [], start_s
    for _ in range(rng.integers(1, 4)):
        line = _line(pool, voice, rng, LONGEST_LINE_S)
        gain = np.float32(10 ** ((gain_db + rng.uniform(-LINE_LEVEL_SPREAD_DB, LINE_LEVEL_SPREAD_DB)) / 20))
        placed.append((at_s, line * gain, voice.name))
        at_s += len(line) / SR + rng.uniform(*LINE_PAUSE_RANGE_S)
    return placed


def _backchannel(pool: Pool, voice: Voice, gain_db: float, turn: list, rng: np.random.Generator) -> list:
    """A short line of ``voice`` inside ``turn`` (the other speaker's), or nothing when it has none."""
    line = _line(pool, voice, rng, BACKCHANNEL_MAX_S)
    if line is None:
        return []
    start_s, end_s = turn[0][0], turn[-1][0] + len(turn[-1][1]) / SR
    at_s = start_s + rng.uniform(0.3, 0.8) * (end_s - start_s - len(line) / SR)
    return [(at_s, line * np.float32(10 ** (gain_db / 20)), voice.name)]


def build_dialogue(pool: Pool, voices: tuple[Voice, ...], duration_s: float, rng: np.random.Generator) -> Dialogue:
    """Turns of ``voices`` until ``duration_s``, with overlaps, gaps and backchannels.

    Some talk more than others: the largest share goes to the first voice (_cast puts most lines first).
    Nobody overlaps themselves: a speaker's next line starts LINE_PAUSE_RANGE_S[0] or more after their last.
    """
    weights = np.sort(rng.dirichlet(np.full(len(voices), 2.0)))[::-1]
    gains_db = rng.uniform(*SPEAKER_LEVEL_RANGE_DB, size=len(voices))
    placed, at_s, previous, free_s = [], rng.uniform(0.5, 2.0), -1, [0.0] * len(voices)
    while at_s < duration_s:
        choices = [i for i in range(len(voices)) if i != previous] or [0]
        speaker = int(rng.choice(choices, p=weights[choices] / weights[choices].sum()))
        turn = _turn(pool, voices[speaker], gains_db[speaker], max(at_s, free_s[speaker]), rng)
        end_s = free_s[speaker] = turn[-1][0] + len(turn[-1][1]) / SR
        others = [i for i in range(len(voices)) if i != speaker]
        if others and end_s - turn[0][0] >= BACKCHANNEL_MIN_TURN_S and rng.random() < BACKCHANNEL_CHANCE:
            other = int(rng.choice(others))
            backchannel = _backchannel(pool, voices[other], gains_db[other], turn, rng)
            if backchannel and backchannel[0][0] >= free_s[other]:
                turn += backchannel
                free_s[other] = backchannel[0][0] + len(backchannel[0][1]) / SR + LINE_PAUSE_RANGE_S[0]
        free_s[speaker] += LINE_PAUSE_RANGE_S[0]
        placed += turn
        at_s, previous = end_s + rng.uniform(*GAP_RANGE_S), speaker
    frames = round((max(s + len(line) / SR for s, line, _ in placed) + rng.uniform(0.5, 1.5)) * SR)
    speech = np.zeros(frames, dtype=np.float32)
    turns = []
    for start_s, line, name in placed:
        start = round(start_s * SR)
        speech[start : start + len(line)] += line
        turns += [(start / SR + a_s, start / SR + b_s, name) for a_s, b_s in _spoken_spans(line)]
    return Dialogue(speech, tuple(sorted(turns)))


def _place(mono: np.ndarray, layout: str, position: float, surround: bool = False) -> np.ndarray:
    """Constant-power pan of ``mono`` (frames,) between two front (or, in 5.1, surround) speakers; position -1..1."""
    angle = (position + 1) * np.pi / 4
    out = np.zeros((len(mono), len(CHANNELS[layout])), dtype=np.float32)
    left, right = (4, 5) if surround else (0, 1)
    out[:, left], out[:, right] = mono * np.cos(angle), mono * np.sin(angle)
    return out


def _dialogue_bed(speech: np.ndarray, layout: str) -> np.ndarray:
    """Stereo: centre (constant power); 5.1: C only."""
    if layout == "stereo":
        return _place(speech, layout, 0.0)
    out = np.zeros((len(speech), 6), dtype=np.float32)
    out[:, 2] = speech
    return out


def _music_bed(pool: Pool, frames: int, layout: str, rng: np.random.Generator) -> np.ndarray:
    """A random track from a random point, looped if short; 5.1: its L/R also -3 dB in Ls/Rs."""
    track = _decode(pool.music[rng.integers(len(pool.music))], 2)
    track = np.tile(track, (frames // len(track) + 2, 1))  # shape: (frames, 2)
    start = int(rng.integers(0, len(track) - frames))
    stereo = track[start : start + frames]
    if layout == "stereo":
        return stereo.copy()
    out = np.zeros((frames, 6), dtype=np.float32)
    out[:, 0:2], out[:, 4:6] = stereo, stereo * np.float32(10 ** (-3 / 20))
    return out


def _effects_bed(pool: Pool, frames: int, layout: str, rng: np.random.Generator) -> np.ndarray:
    """Effects at random times (mean gap EFFECT_MEAN_GAP_S), +-6 dB, random pan (5.1: front or surround)."""
    out = np.zeros((frames, len(CHANNELS[layout])), dtype=np.float32)
    at = int(rng.exponential(EFFECT_MEAN_GAP_S) * SR)
    while at < frames:
        sound = _decode(pool.effects[rng.integers(len(pool.effects))], 1)[: frames - at, 0]
        surround = layout == "5.1" and rng.random() < 0.4
        out[at : at + len(sound)] += _place(sound, layout, rng.uniform(-1, 1), surround) * np.float32(
            10 ** (rng.uniform(-6, 6) / 20)
        )
        at += len(sound) // 2 + int(rng.exponential(EFFECT_MEAN_GAP_S) * SR)
    return out


def _loudness_lufs(stem: np.ndarray, layout: str) -> float:
    """BS.1770 loudness over every channel but the LFE (pyloudnorm weights L R C Ls Rs in that order)."""
    channels = stem if layout == "stereo" else stem[:, [0, 1, 2, 4, 5]]
    return float(pyloudnorm.Meter(SR).integrated_loudness(channels.astype(np.float64)))


def _with_lfe(stem: np.ndarray) -> np.ndarray:
    """A 5.1 stem with its LFE: the mean of its other channels low-passed at LFE_CUTOFF_HZ, -6 dB."""
    lowpass = butter(4, LFE_CUTOFF_HZ, fs=SR, output="sos")
    stem[:, 3] = sosfilt(lowpass, stem[:, [0, 1, 2, 4, 5]].mean(axis=1)) * 10 ** (-6 / 20)
    return stem


def mix(pool: Pool, speech: np.ndarray, layout: str, clean: bool, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The programme (frames, channels) and each stem's loudness as mixed (LUFS) and the peak gain (dB)."""
    frames = len(speech)
    stems = {"DX": _dialogue_bed(speech, layout)}
    if not clean:
        stems["MX"] = _music_bed(pool, frames, layout, rng)
        stems["FX"] = _effects_bed(pool, frames, layout, rng)
    targets = {name: LEVELS_LUFS[name] + rng.uniform(-LEVEL_SPREAD_LU, LEVEL_SPREAD_LU) for name in stems}
    for name, stem in stems.items():
        stem *= np.float32(10 ** ((targets[name] - _loudness_lufs(stem, layout)) / 20))
        if layout == "5.1" and name != "DX":
            _with_lfe(stem)
    programme = sum(stems.values())
    gain = min(1.0, PEAK_CEILING / float(np.abs(programme).max()))
    gain_db = 20 * np.log10(gain)
    levels = {name: round(target + gain_db, 2) for name, target in targets.items()}
    return (programme * np.float32(gain)).astype(np.float32), {"loudness_lufs": levels, "peak_gain_db": round(gain_db, 2)}


@dataclass(frozen=True)
class Case:
    """Case ``index`` of a set: where it is and what it holds."""

    folder: Path
    speakers: int
    layout: str
    clean: bool

    @property
    def media(self) -> Path:
        return self.folder / "conversation.mov"

    @property
    def rttm(self) -> Path:
        return self.folder / "reference.rttm"


def case_of(cases_dir: Path, split: str, index: int) -> Case:
    speakers, layout, clean = SPEAKER_COUNTS[index], "stereo" if index % 2 == 0 else "5.1", index in CLEAN_CASES
    name = f"{split}{index:02d}-{speakers}spk-{layout}{'-clean' if clean else ''}"
    return Case(cases_dir / split / name, speakers, layout, clean)


def _line_count(pool: Pool, voice: Voice) -> int:
    return len(_FLITE_LINES) if voice.synthetic else len(pool.lines[voice.name])


def _cast(pool: Pool, voices: tuple[Voice, ...], count: int, rng: np.random.Generator) -> tuple[Voice, ...]:
    """``count`` voices, most lines first: recorded ones drawn by their number of lines, synthetic ones last.

    A voice with few lines (a minor character) is then rarely the only or the main speaker, whose lines
    would repeat over a whole conversation.
    """
    recorded = [v for v in voices if not v.synthetic]
    synthetic = [voices[i] for i in rng.permutation(len(voices)) if voices[i].synthetic]
    if count > len(voices):
        raise ValueError(f"{count} speakers asked for, the set has {len(voices)} voices; add voices to VOICES")
    lines = np.array([_line_count(pool, v) for v in recorded], dtype=float)
    drawn = rng.choice(len(recorded), size=min(count, len(recorded)), replace=False, p=lines / lines.sum())
    chosen = [recorded[i] for i in drawn] + synthetic[: count - len(drawn)]
    return tuple(sorted(chosen, key=lambda v: -_line_count(pool, v)))


def case_key(pool: Pool, split: str, seed: int, index: int) -> str:
    """A hash of everything a case depends on: BUILDER_VERSION (bump it when the drawing changes), this
    module's constants (levels, ranges, voices, backgrounds), the .deb files, the set, seed and index."""
    constants = {name: value for name, value in globals().items() if name.isupper()}
    text = json.dumps({"constants": constants, "debs": pool.debs, "split": split, "seed": seed, "index": index},
                      sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _write_mov(programme: np.ndarray, layout: str, path: Path) -> None:
    """``programme`` (frames, channels) as 24-bit PCM in an audio-only QuickTime file."""
    command = [str(find_tool("ffmpeg")), "-v", "error", "-f", "f32le", "-ar", str(SR), "-ac", str(programme.shape[1]),
               "-channel_layout", layout, "-i", "-", "-c:a", "pcm_s24le", "-y", str(path)]
    subprocess.run(command, input=programme.astype("<f4").tobytes(), check=True)


def write_rttm(turns: tuple[tuple[float, float, str], ...], path: Path) -> None:
    path.write_text("".join(f"SPEAKER programme 1 {start_s:.3f} {end_s - start_s:.3f} <NA> <NA> {name} <NA> <NA>\n"
                            for start_s, end_s, name in turns))


def build_case(pool: Pool, cases_dir: Path, split: str, seed: int, index: int) -> Case:
    """Case ``index`` of ``split``, built unless already built with the same key; written atomically."""
    case, key = case_of(cases_dir, split, index), case_key(pool, split, seed, index)
    info = case.folder / "case.json"
    if info.exists() and json.loads(info.read_text())["key"] == key:
        return case
    rng = np.random.default_rng([seed, index])
    voices = _cast(pool, VOICES[split], case.speakers, rng)
    dialogue = build_dialogue(pool, voices, rng.uniform(*DURATION_RANGE_S), rng)
    programme, levels = mix(pool, dialogue.speech, case.layout, case.clean, rng)
    tmp = case.folder.with_name(f".{case.folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _write_mov(programme, case.layout, tmp / case.media.name)
    write_rttm(dialogue.turns, tmp / case.rttm.name)
    details = {"key": key, "split": split, "seed": seed, "index": index, "voices": [v.name for v in voices],
               "duration_s": round(len(programme) / SR, 2), "layout": case.layout, "clean": case.clean,
               "lines": len(dialogue.turns), **levels}
    (tmp / info.name).write_text(json.dumps(details, indent=1) + "\n")
    shutil.rmtree(case.folder, ignore_errors=True)
    tmp.rename(case.folder)
    return case


def build_set(split: str, cases_dir: Path, seed: int) -> list[Case]:
    """Every case of ``split`` (built or found in the cache)."""
    pool = find_pool(split, cache_dir())
    if split == "test":
        (cases_dir / split).mkdir(parents=True, exist_ok=True)
        (cases_dir / split / "NOT-FOR-TUNING.txt").write_text(
            "Test conversations: report on them only; never tune a constant, threshold, rule or model on them.\n")
    return [build_case(pool, cases_dir, split, seed, index) for index in range(len(SPEAKER_COUNTS))]


def check_voices(split: str, lines_per_voice: int = 10) -> None:
    """Print, per voice, how alike its own lines are and how alike it is to the others (Resemblyzer cosine)."""
    from resemblyzer import VoiceEncoder
    from scipy.signal import resample_poly

    pool, encoder, rng = find_pool(split, cache_dir()), VoiceEncoder(device="cpu", verbose=False), np.random.default_rng(0)
    embeddings = {}
    for voice in VOICES[split]:
        lines = [_line(pool, voice, rng, LONGEST_LINE_S) for _ in range(lines_per_voice)]
        embeddings[voice.name] = np.stack([encoder.embed_utterance(resample_poly(line, 1, 3)) for line in lines])
    centroids = {name: e.mean(axis=0) / np.linalg.norm(e.mean(axis=0)) for name, e in embeddings.items()}
    print(f"{'voice':24s} {'own lines':>9s}  most alike other voice")
    for name, lines in embeddings.items():
        own = float(np.mean(lines @ centroids[name]))
        others = sorted(((float(centroids[name] @ c), other) for other, c in centroids.items() if other != name), reverse=True)
        print(f"{name:24s} {own:9.2f}  " + "  ".join(f"{other} {sim:.2f}" for sim, other in others[:3]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("tune", "test"), required=True, dest="split")
    parser.add_argument("--cases", type=Path, default=Path.home() / ".cache" / "dubprep-diarbench",
                        help="where the cases are written, under <set>/")
    parser.add_argument("--seed", type=int, help="default: %s" % DEFAULT_SEEDS)
    parser.add_argument("--check-voices", action="store_true", help="print how alike the set's voices are, build nothing")
    args = parser.parse_args()
    if args.check_voices:
        check_voices(args.split)
        return
    for case in build_set(args.split, args.cases, DEFAULT_SEEDS[args.split] if args.seed is None else args.seed):
        details = json.loads((case.folder / "case.json").read_text())
        print(f"{case.folder}  {details['duration_s']:.0f} s  {', '.join(details['voices'])}  {details['loudness_lufs']}")


if __name__ == "__main__":
    main()
