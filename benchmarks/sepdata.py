"""Cinematic test mixtures with known stems, in the Divide-and-Remaster style.

Each clip is 60 s of 48 kHz stereo: recorded speech (one line after another,
with pauses) panned centre, a music excerpt and a track of sound effects
placed at random times with random pans. Each stem is set to a loudness drawn
around the Divide-and-Remaster levels (speech -17, music -24, effects -21
LUFS, each +-2 LU, measured with pyloudnorm); if the sum would clip, all three
are lowered by the same gain. Everything is drawn from one seed per clip.

The audio comes from Debian packages, fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` (nothing is installed) into ``$DUBPREP_BENCH_CACHE``
(default ``~/.cache/dubprep-bench``).
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf

from dubprep.media import MediaInfo
from dubprep.stems import MIX, WorkWriter
from dubprep.tools import find_tool

SR = 48_000
CLIP_S = 60.0
LEVELS_LUFS = {"speech": -17.0, "music": -24.0, "effects": -21.0}
LEVEL_SPREAD_LU = 2.0
PEAK_CEILING = 0.99
PACKAGES = {
    "asterisk-core-sounds-en-g722": "speech: Allison Smith's English prompts, CC-BY-SA-3.0",
    "fretsonfire-songs-muldjord": "music: 4 songs by Muldjord (backing + guitar tracks), CC-BY-SA-3.0",
    "fb-music-high": "music: Frozen Bubble theme (XM module) by Matthias Le Bidan, GPL-2+",
    "fillets-ng-data": "music (8 tracks) and effects (bubbles, impacts), GPL-2+",
    "sound-theme-freedesktop": "effects: event sounds, CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+ per file",
}
_SHARE = Path("usr/share")
# Prompts that are tones, not speech.
_NOT_SPEECH = {"beep", "beeperr", "ascending-2tone", "descending-2tone", "confbridge-join", "confbridge-leave"}
# The fillets-ng tracks longer than a clip (mono, 22.05 kHz: they play centred).
_FILLETS_SONGS = ("rybky01", "rybky02", "rybky03", "rybky04", "rybky05", "rybky06", "rybky07", "rybky09")
# Freedesktop sounds that are spoken words or a test signal, not effects.
_NOT_EFFECTS = ("audio-channel-", "audio-test-signal")


def cache_dir() -> Path:
    return Path(os.environ.get("DUBPREP_BENCH_CACHE", Path.home() / ".cache" / "dubprep-bench"))


def unpacked_root() -> Path:
    """Fetch and unpack the benchmark's packages once; return the folder they are unpacked into."""
    return fetch(tuple(PACKAGES), cache_dir())


def fetch(packages: tuple[str, ...], cache: Path) -> Path:
    """``apt-get download`` + ``dpkg -x`` each package into ``cache`` (once); return the unpacked root."""
    debs, root = cache / "debs", cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [name for name in packages if not list(debs.glob(f"{name}_*.deb"))]
    if missing:
        download = ["apt-get", "download", *missing]
        if subprocess.run(download, cwd=debs).returncode != 0:
            subprocess.run(["apt-get", "update"], check=True)
            subprocess.run(download, cwd=debs, check=True)
    for name in packages:
        for deb in debs.glob(f"{name}_*.deb"):
            marker = root / ".unpacked" / deb.name
            if not marker.exists():
                subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
    return root


@dataclass(frozen=True)
class Sources:
    """Source files per stem; a music entry is a tuple of tracks played together."""

    speech: tuple[Path, ...]
    music: tuple[tuple[Path, ...], ...]
    effects: tuple[Path, ...]


def find_sources(root: Path) -> Sources:
    share = root / _SHARE
    speech = sorted(
        p for p in (share / "asterisk/sounds/en_US_f_Allison").glob("*.g722") if p.stem not in _NOT_SPEECH
    )
    songs = sorted(p for p in (share / "games/fretsonfire/data/songs/muldjord").iterdir() if p.is_dir())
    music = [tuple(sorted(song.glob("*.ogg"))) for song in songs]
    music.append((share / "games/frozen-bubble/snd/frozen-mainzik-2p.xm",))
    music += [(share / "games/fillets-ng/music" / f"{name}.ogg",) for name in _FILLETS_SONGS]
    effects = sorted((share / "games/fillets-ng/sound/share").glob("*.ogg"))
    effects += sorted(
        p for p in (share / "sounds/freedesktop/stereo").glob("*.oga") if not p.stem.startswith(_NOT_EFFECTS)
    )
    return Sources(speech=tuple(speech), music=tuple(music), effects=tuple(effects))


@functools.cache
def decode(path: Path) -> np.ndarray:
    """``path`` as 48 kHz float32 stereo (mono is duplicated); shape (frames, 2)."""
    fmt = ["-f", "g722"] if path.suffix == ".g722" else []
    command = [str(find_tool("ffmpeg")), "-v", "error", *fmt, "-i", str(path)]
    command += ["-ar", str(SR), "-ac", "2", "-f", "f32le", "-"]
    samples = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(samples, dtype=np.float32).reshape(-1, 2)  # shape: (frames, 2)


def _loudness_lufs(stem: np.ndarray) -> float:
    return float(pyloudnorm.Meter(SR).integrated_loudness(stem.astype(np.float64)))


def _to_loudness(stem: np.ndarray, target_lufs: float) -> np.ndarray:
    return stem * np.float32(10 ** ((target_lufs - _loudness_lufs(stem)) / 20))


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan of (frames,) to (frames, 2); position -1 (left) .. 1 (right)."""
    angle = (position + 1) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1)  # shape: (frames, 2)


def _speech(sources: Sources, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Prompts one after another with 0.2-1.5 s pauses, panned centre; shape (frames, 2)."""
    out = np.zeros((frames, 2), dtype=np.float32)
    at = int(rng.uniform(0.2, 1.0) * SR)
    while at < frames:
        line = decode(sources.speech[rng.integers(len(sources.speech))])[:, 0]
        line = line[: frames - at]
        out[at : at + len(line)] += _pan(line, 0.0)
        at += len(line) + int(rng.uniform(0.2, 1.5) * SR)
    return out


def _music(sources: Sources, clip_index: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """An excerpt of the clip's music (tracks summed, looped if short); shape (frames, 2)."""
    tracks = [decode(path) for path in sources.music[clip_index % len(sources.music)]]
    song = sum(track[: min(len(t) for t in tracks)] for track in tracks)
    song = np.tile(song, (frames // len(song) + 2, 1))
    start = int(rng.integers(0, len(song) - frames))
    return song[start : start + frames].astype(np.float32)


def _effects(sources: Sources, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Effects at random times (mean gap 1.5 s), random pan and +-6 dB gain; shape (frames, 2)."""
    out = np.zeros((frames, 2), dtype=np.float32)
    at = int(rng.exponential(1.5) * SR)
    while at < frames:
        sound = decode(sources.effects[rng.integers(len(sources.effects))])
        sound = _pan(sound.mean(axis=1), rng.uniform(-0.9, 0.9))[: frames - at]
        out[at : at + len(sound)] += sound * np.float32(10 ** (rng.uniform(-6, 6) / 20))
        at += int(rng.exponential(1.5) * SR) + len(sound) // 2
    return out


@dataclass(frozen=True)
class Clip:
    """One mixture and its stems, each (frames, 2) float32; loudness in LUFS as mixed."""

    speech: np.ndarray
    music: np.ndarray
    effects: np.ndarray
    loudness_lufs: dict[str, float]
    headroom_db: float

    @property
    def mix(self) -> np.ndarray:
        return self.speech + self.music + self.effects


def make_clip(sources: Sources, clip_index: int, seed: int) -> Clip:
    """Clip number ``clip_index`` drawn from ``seed``; music cycles through the songs."""
    rng = np.random.default_rng(seed)
    return _over_background(_speech(sources, int(CLIP_S * SR), rng), sources, clip_index, rng)


def speech_over_background(speech: np.ndarray, sources: Sources, clip_index: int, seed: int) -> Clip:
    """Given ``speech`` (frames,), panned centre, under music and effects drawn from ``seed``, as clips are."""
    return _over_background(_pan(speech, 0.0), sources, clip_index, np.random.default_rng(seed))


def _over_background(speech: np.ndarray, sources: Sources, clip_index: int, rng: np.random.Generator) -> Clip:
    """``speech`` (frames, 2) with music and effects, each at a loudness drawn around the DnR levels."""
    frames = len(speech)
    raw = {
        "speech": speech,
        "music": _music(sources, clip_index, frames, rng),
        "effects": _effects(sources, frames, rng),
    }
    targets = {name: level + rng.uniform(-LEVEL_SPREAD_LU, LEVEL_SPREAD_LU) for name, level in LEVELS_LUFS.items()}
    stems = {name: _to_loudness(raw[name], targets[name]) for name in raw}
    peak = float(np.abs(sum(stems.values())).max())
    gain = min(1.0, PEAK_CEILING / peak)
    stems = {name: stem * np.float32(gain) for name, stem in stems.items()}
    headroom_db = 20 * np.log10(gain)
    return Clip(
        **stems,
        loudness_lufs={name: targets[name] + headroom_db for name in stems},
        headroom_db=headroom_db,
    )


def write_clip(clip: Clip, folder: Path) -> None:
    """The clip's mix, stems and media.json as float32 WAVs in ``folder``, and the mix as extract stores it."""
    folder.mkdir()
    for name in ("mix", "speech", "music", "effects"):
        sf.write(str(folder / f"{name}.wav"), getattr(clip, name), SR, subtype="FLOAT")
    with WorkWriter(folder / MIX, clip.mix.shape[1]) as writer:  # the separate stage's input
        writer.write(clip.mix)
    MediaInfo(
        source=str(folder / "mix.wav"), audio_stream=0, codec="pcm_f32le", layout="stereo", channels=2,
        sample_rate=SR, frames=len(clip.mix), source_sample_rate=SR, start_offset_s=0.0,
        start_timecode=None, frame_rate=None,
    ).save(folder / "media.json")
