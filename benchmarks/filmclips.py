"""Film-like 60-s clips with known stems, from the Debian packages of ONE split of corpus/splits.py.

    python benchmarks/filmclips.py --set test --clips 8 [--seed 3000]

Each clip is 60 s at 48 kHz, stereo or 5.1, as a media file the product reads
(24-bit PCM in an audio-only .mov; one clip in eight AAC in an .mp4), with
its ground truth beside it as float WAVs in the clip's channel order: DX
(dialogue), MX (music), FX (effects) and ME = MX + FX. Clip ``i`` of a set
is drawn from ``numpy.random.default_rng([seed, i])``:

- layout: even clips stereo, odd clips 5.1 (L R C LFE Ls Rs);
- balance: clips 0, 1 (mod 4) Divide-and-Remaster (speech -17, music -24,
  effects -21 LUFS), clips 2, 3 (mod 4) "action" (speech -21, music -18,
  effects -16 LUFS: the M&E louder than the lines); each level +-2 LU,
  measured with pyloudnorm (BS.1770) over every channel but the LFE;
- dialogue: lines of one speech package of the set (its actors), one after
  another with 0.2-1.5 s pauses; one gap in five is a 5-12 s silence, so
  some lines start right after a long dialogue-free stretch. Stereo: centre.
  5.1: in C, and on clips 4-7 (mod 8) bleeding into L and R at -8..-14 dB;
- music: one track of the set (stereo as mastered), from a random point,
  looped if short. 5.1: spread over L/R and Ls/Rs (constant power);
- effects: spot effects at random times (mean gap 1.5 s), +-6 dB, each at a
  random azimuth (stereo: a pan; 5.1: between two neighbouring speakers
  of L C R Rs Ls), and on every other clip an ambience bed (an effect of
  3 s or more, looped, 10 dB under the spots);
- LFE (5.1): the music and the effects each low-passed at 120 Hz, -6 dB,
  in their own stem (the dialogue has no LFE);
- if the mix would pass 0.99, every stem is lowered by the same gain.

Before a package is fetched, ``corpus.splits.require`` checks that it belongs
to the chosen split; every file used is one the package itself ships
(``dpkg-deb -c``), so a clip never mixes splits. Built clips are cached
under ``$DUBPREP_BENCH_CACHE/filmclips`` by a key of every parameter (set,
seed, index, builder version and the .deb files used).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import soundfile as sf
from scipy.signal import butter, sosfilt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from corpus.splits import require  # noqa: E402  (the repository root is not a package)
from sepdata import fetch  # noqa: E402

from dubprep.tools import find_tool  # noqa: E402

BUILDER_VERSION = 1
SR = 48_000
CLIP_S = 60.0
CHANNELS = {"stereo": ("L", "R"), "5.1": ("L", "R", "C", "LFE", "Ls", "Rs")}
BALANCES_LUFS = {
    "dnr": {"DX": -17.0, "MX": -24.0, "FX": -21.0},
    "action": {"DX": -21.0, "MX": -18.0, "FX": -16.0},
}
LEVEL_SPREAD_LU = 2.0
PEAK_CEILING = 0.99
LFE_CUTOFF_HZ = 120.0
LFE_GAIN_DB = -6.0
BED_UNDER_SPOTS_DB = -10.0
BED_MIN_S = 3.0
DEFAULT_SEEDS = {"tune": 2000, "test": 3000}
# 5.1 speakers around the listener (degrees) and their channel index, in ring order.
RING_DEG = (("Ls", -110.0), ("L", -30.0), ("C", 0.0), ("R", 30.0), ("Rs", 110.0))


@dataclass(frozen=True)
class Rule:
    """Files of one Debian package used as one kind of source: paths (from '/') matching ``pattern``.

    ``grouped``: the files of one folder are one source played together
    (the separate instrument tracks of one song).
    """

    package: str
    role: str  # speech | music | effects
    pattern: str
    exclude: str = r"$^"
    grouped: bool = False


_TONES = r".*/(beep|beeperr|ascending-2tone|descending-2tone|confbridge-(join|leave))\.\w+"
SETS: dict[str, tuple[Rule, ...]] = {
    "test": (
        Rule("fillets-ng-data-cs", "speech", r".*/fillets-ng/sound/[^/]+/cs/[^/]+\.ogg"),
        Rule("fillets-ng-data-nl", "speech", r".*/fillets-ng/sound/[^/]+/nl/[^/]+\.ogg"),
        Rule("asterisk-prompt-it-menardi-wav", "speech", r".*/it_IT_f_Menardi/[^/]+\.wav", _TONES),
        Rule("warzone2100-music", "music", r".*/warzone2100/music/albums/.*\.opus"),
        Rule("megaglest-data", "music", r".*/megaglest/.*/music/[^/]+\.ogg"),
        Rule("supertux-data", "music", r".*/supertux2/music/.*\.ogg"),
        Rule("lugaru-data", "effects", r".*/lugaru/Sounds/[^/]+\.ogg", r".*/Music[^/]*"),
        # Unit acknowledgements ('_ack', '_select') are spoken: not effects.
        Rule(
            "megaglest-data", "effects",
            r".*/megaglest/(techs/megapack/commondata|tilesets/[^/]+)/sounds/[^/]+\.(wav|ogg)",
            r".*_(ack|select)\d*\.wav",
        ),
        # Its sounds are inside a zip (.pk3); voices (player/<name>, feedback, announcer) are left out.
        Rule(
            "openarena-data", "effects",
            r".*/pak0\.pk3!sound/(world|items|weapons|movers|player/footsteps)/.*\.(wav|ogg)",
        ),
    ),
    "tune": (
        Rule("asterisk-core-sounds-en-g722", "speech", r".*/en_US_f_Allison/[^/]+\.g722", _TONES),
        Rule("asterisk-prompt-fr-armelle", "speech", r".*/asterisk/sounds/fr/.*\.gsm", _TONES),
        Rule("asterisk-prompt-es-co", "speech", r".*/asterisk/sounds/es/.*\.gsm", _TONES),
        Rule("fillets-ng-data", "speech", r".*/fillets-ng/sound/[^/]+/en/[^/]+\.ogg"),
        Rule("fretsonfire-songs-muldjord", "music", r".*/songs/muldjord/[^/]+/[^/]+\.ogg", grouped=True),
        Rule("fb-music-high", "music", r".*/frozen-bubble/snd/[^/]+\.xm"),
        Rule("wesnoth-1.16-music", "music", r".*/wesnoth/.*/music/[^/]+\.ogg"),
        Rule("fillets-ng-data", "music", r".*/fillets-ng/music/rybky\d+\.ogg"),
        Rule(  # the spoken channel names and the test signal are not effects
            "sound-theme-freedesktop", "effects",
            r".*/freedesktop/stereo/[^/]+\.oga", r".*/(audio-channel-|audio-test-signal)[^/]*",
        ),
        Rule("extremetuxracer-data", "effects", r".*/etr/sounds/[^/]+\.wav"),
        Rule("lincity-ng-data", "effects", r".*/lincity-ng/sounds/[^/]+\.wav"),
        Rule("hedgewars-data", "effects", r".*/hedgewars/Data/Sounds/[^/]+\.ogg"),
        Rule("fillets-ng-data", "effects", r".*/fillets-ng/sound/share/[^/]+\.ogg"),
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("DUBPREP_BENCH_CACHE", Path.home() / ".cache" / "dubprep-bench"))


@contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (created), so helpers sharing the cache do not clobber each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def require_rules(rules: tuple[Rule, ...], split: str) -> None:
    """SplitError unless every package the rules draw from belongs to ``split``."""
    require(tuple(sorted({rule.package for rule in rules})), split)


@dataclass(frozen=True)
class Source:
    """One source: files played together (one file, or the tracks of one song) from ``package``."""

    package: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Pool:
    """A split's sources by role, and the .deb files they come from (part of the clip cache key)."""

    speech: tuple[Source, ...]
    music: tuple[Source, ...]
    effects: tuple[Source, ...]
    debs: tuple[str, ...]


def _package_paths(package: str, cache: Path) -> tuple[str, list[str]]:
    """Fetch ``package``; return its .deb name and the paths it ships, unpacked under ``cache``/root.

    A member of a zip archive it ships (a game's .pk3) is listed as 'ARCHIVE!MEMBER'.
    """
    with _locked(cache / "locks" / f"{package}.lock"):
        root = fetch((package,), cache)
        deb = sorted((cache / "debs").glob(f"{package}_*.deb"))[-1]
        listing = cache / "listings" / f"{deb.name}.txt"
        if not listing.exists():
            tar = subprocess.run(
                f"dpkg-deb --fsys-tarfile '{deb}' | tar -t", shell=True, capture_output=True, check=True
            )
            names = [str(root / name.removeprefix("./")) for name in tar.stdout.decode().splitlines()]
            archives = [name for name in names if name.endswith(".pk3")]
            names += [f"{name}!{member}" for name in archives for member in zipfile.ZipFile(name).namelist()]
            listing.parent.mkdir(parents=True, exist_ok=True)
            tmp = listing.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text("\n".join(names) + "\n")
            tmp.replace(listing)
    return deb.name, listing.read_text().splitlines()


def find_pool(split: str, cache: Path) -> Pool:
    """Every source of ``split``'s rules; SplitError before anything is fetched if a package is of another split."""
    rules = SETS[split]
    require_rules(rules, split)
    found: dict[str, list[Source]] = {"speech": [], "music": [], "effects": []}
    debs = set()
    for rule in rules:
        deb, paths = _package_paths(rule.package, cache)
        debs.add(deb)
        matches = sorted(p for p in paths if re.fullmatch(rule.pattern, p) and not re.fullmatch(rule.exclude, p))
        if not matches:
            raise FileNotFoundError(
                f"{rule.package} ships no {rule.role} file matching {rule.pattern}; fix its rule in {__file__}"
            )
        if rule.grouped:
            folders = sorted({str(Path(p).parent) for p in matches})
            songs = [tuple(p for p in matches if str(Path(p).parent) == folder) for folder in folders]
            found[rule.role] += [Source(rule.package, files) for files in songs]
        else:
            found[rule.role] += [Source(rule.package, (p,)) for p in matches]
    return Pool(**{role: tuple(sources) for role, sources in found.items()}, debs=tuple(sorted(debs)))


def _readable(path: str, cache: Path) -> Path:
    """A file ffmpeg can open for ``path``: the path itself, or a zip member extracted once into ``cache``."""
    if "!" not in path:
        return Path(path)
    archive, member = path.split("!", 1)
    target = cache / "extracted" / hashlib.sha256(archive.encode()).hexdigest()[:12] / member
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_bytes(zipfile.ZipFile(archive).read(member))
        tmp.replace(target)
    return target


def decode(path: Path, channels: int, start_s: float = 0.0, duration_s: float | None = None) -> np.ndarray:
    """``path`` (or a part of it) as 48 kHz float32, ``channels`` channels (ffmpeg's down/upmix); (frames, channels)."""
    raw_formats = {".g722": "g722", ".gsm": "gsm"}
    fmt = ["-f", raw_formats[path.suffix]] if path.suffix in raw_formats else []
    command = [str(find_tool("ffmpeg")), "-v", "error", "-ss", f"{start_s:.3f}", *fmt, "-i", str(path)]
    command += ["-t", f"{duration_s:.3f}"] if duration_s is not None else []
    command += ["-ar", str(SR), "-ac", str(channels), "-f", "f32le", "-"]
    samples = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(samples, dtype=np.float32).reshape(-1, channels)  # shape: (frames, channels)


def duration_s(path: Path) -> float:
    """Length of ``path`` in seconds (header when soundfile reads it, else ffprobe)."""
    try:
        return sf.info(str(path)).duration
    except sf.LibsndfileError:
        command = [str(find_tool("ffprobe")), "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"]
        command.append(str(path))
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
        return float(out) if out not in ("", "N/A") else len(decode(path, 1)) / SR


@dataclass(frozen=True)
class ClipSpec:
    """What clip ``index`` of a set is: layout, balance, container, dialogue bleed into L/R (dB, None: none)."""

    split: str
    seed: int
    index: int
    layout: str
    balance: str
    container: str  # mov (24-bit PCM) | mp4 (AAC)
    bleed_db: float | None

    def key(self, debs: tuple[str, ...]) -> str:
        """Cache key of every parameter that shapes the clip."""
        text = json.dumps({"spec": self.__dict__, "version": BUILDER_VERSION, "debs": debs}, sort_keys=True)
        return f"{self.split}-{self.index:02d}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def clip_spec(split: str, seed: int, index: int, rng: np.random.Generator) -> ClipSpec:
    layout = ("stereo", "5.1")[index % 2]
    bleed = layout == "5.1" and index % 8 >= 4
    return ClipSpec(
        split=split, seed=seed, index=index, layout=layout,
        balance=("dnr", "action")[(index // 2) % 2],
        container="mp4" if index % 8 == 2 else "mov",
        bleed_db=float(-rng.uniform(8.0, 14.0)) if bleed else None,
    )


def _pan_gains(layout: str, azimuth_deg: float) -> np.ndarray:
    """Constant-power gains (channels,) placing a mono source at ``azimuth_deg`` (stereo: -30..30 = L..R)."""
    names = CHANNELS[layout]
    gains = np.zeros(len(names), dtype=np.float32)
    if layout == "stereo":
        angle = (np.clip(azimuth_deg, -30, 30) + 30) / 60 * np.pi / 2
        gains[:] = np.cos(angle), np.sin(angle)
        return gains
    ring = [angle for _, angle in RING_DEG] + [RING_DEG[0][1] + 360]
    azimuth = (azimuth_deg - RING_DEG[0][1]) % 360 + RING_DEG[0][1]
    pair = next(i for i in range(len(ring) - 1) if ring[i] <= azimuth <= ring[i + 1])
    fraction = (azimuth - ring[pair]) / (ring[pair + 1] - ring[pair]) * np.pi / 2
    first, second = RING_DEG[pair][0], RING_DEG[(pair + 1) % len(RING_DEG)][0]
    gains[names.index(first)] = np.cos(fraction)
    gains[names.index(second)] += np.sin(fraction)
    return gains


def _spread(stereo: np.ndarray, layout: str, rng: np.random.Generator) -> np.ndarray:
    """A stereo bed (frames, 2) in the layout: as is, or 5.1 over L/R and Ls/Rs (constant power); (frames, channels)."""
    if layout == "stereo":
        return stereo
    names = CHANNELS[layout]
    out = np.zeros((len(stereo), len(names)), dtype=np.float32)
    angle = rng.uniform(0.35, 0.7)  # radians: how much of each side goes to its surround
    for side, (front, back) in enumerate((("L", "Ls"), ("R", "Rs"))):
        out[:, names.index(front)] = stereo[:, side] * np.cos(angle)
        out[:, names.index(back)] = stereo[:, side] * np.sin(angle)
    return out


def _with_lfe(stem: np.ndarray, layout: str) -> np.ndarray:
    """5.1: the stem's LFE channel set to its other channels' sum, low-passed at 120 Hz and lowered 6 dB."""
    if layout == "stereo":
        return stem
    sos = butter(4, LFE_CUTOFF_HZ, btype="low", fs=SR, output="sos")
    stem[:, CHANNELS[layout].index("LFE")] = sosfilt(sos, stem.sum(axis=1)) * 10 ** (LFE_GAIN_DB / 20)
    return stem


def _dialogue(spec: ClipSpec, lines: tuple[Source, ...], cache: Path, rng: np.random.Generator) -> np.ndarray:
    """Lines one after another, 0.2-1.5 s apart, one gap in five 5-12 s; centre (+ L/R bleed); (frames, channels)."""
    frames = int(CLIP_S * SR)
    mono = np.zeros(frames, dtype=np.float32)
    at = int(rng.uniform(0.2, 3.0) * SR)
    while at < frames:
        line = decode(_readable(lines[rng.integers(len(lines))].files[0], cache), 1)[:, 0]
        line = line[: frames - at]
        mono[at : at + len(line)] += line
        gap_s = rng.uniform(5.0, 12.0) if rng.random() < 0.2 else rng.uniform(0.2, 1.5)
        at += len(line) + int(gap_s * SR)
    names = CHANNELS[spec.layout]
    gains = np.zeros(len(names), dtype=np.float32)
    if spec.layout == "stereo":
        gains[:] = np.sqrt(0.5)
    else:
        gains[names.index("C")] = 1.0
        if spec.bleed_db is not None:
            gains[[names.index("L"), names.index("R")]] = 10 ** (spec.bleed_db / 20)
    return mono[:, None] * gains  # shape: (frames, channels)


def _music(spec: ClipSpec, source: Source, cache: Path, rng: np.random.Generator) -> np.ndarray:
    """The source's tracks summed from a random point (looped if short), spread over the layout; (frames, channels)."""
    frames = int(CLIP_S * SR)
    paths = [_readable(f, cache) for f in source.files]
    length_s = min(duration_s(p) for p in paths)
    if length_s > CLIP_S + 1:
        start_s = rng.uniform(0, length_s - CLIP_S - 1)
        song = sum(decode(p, 2, start_s, CLIP_S + 0.5) for p in paths)
    else:
        tracks = [decode(p, 2) for p in paths]
        song = sum(t[: min(len(t) for t in tracks)] for t in tracks)
        song = np.tile(song, (frames // len(song) + 2, 1))
        start = int(rng.integers(0, len(song) - frames))
        song = song[start:]
    song = np.pad(song, ((0, max(0, frames - len(song))), (0, 0)))[:frames]
    return _with_lfe(_spread(song.astype(np.float32), spec.layout, rng), spec.layout)


def _spot_effects(spec: ClipSpec, pool: tuple[Source, ...], cache: Path, rng: np.random.Generator) -> np.ndarray:
    """Effects at random times (mean gap 1.5 s), +-6 dB, each at a random azimuth; (frames, channels)."""
    frames = int(CLIP_S * SR)
    out = np.zeros((frames, len(CHANNELS[spec.layout])), dtype=np.float32)
    at = int(rng.exponential(1.5) * SR)
    while at < frames:
        sound = decode(_readable(pool[rng.integers(len(pool))].files[0], cache), 1)[: frames - at, 0]
        azimuth = rng.uniform(-30, 30) if spec.layout == "stereo" else rng.uniform(-180, 180)
        gain = 10 ** (rng.uniform(-6, 6) / 20)
        out[at : at + len(sound)] += sound[:, None] * (_pan_gains(spec.layout, azimuth) * gain)
        at += int(rng.exponential(1.5) * SR) + len(sound) // 2
    return out


def _bed(spec: ClipSpec, pool: tuple[Source, ...], cache: Path, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """An ambience bed: the first drawn effect of >= 3 s, looped and spread; (frames, channels) and its path."""
    frames = int(CLIP_S * SR)
    for _ in range(200):
        path = pool[rng.integers(len(pool))].files[0]
        if duration_s(_readable(path, cache)) >= BED_MIN_S:
            sound = decode(_readable(path, cache), 2)
            sound = np.tile(sound, (frames // len(sound) + 2, 1))
            start = int(rng.integers(0, len(sound) - frames))
            return _spread(sound[start : start + frames], spec.layout, rng), path
    raise FileNotFoundError(f"no effect of {BED_MIN_S} s or more among {len(pool)} drawn 200 times")


def loudness_lufs(stem: np.ndarray, layout: str) -> float:
    """BS.1770 integrated loudness over every channel but the LFE (pyloudnorm orders 5.1 as L R C Ls Rs)."""
    names = CHANNELS[layout]
    measured = stem[:, [names.index(n) for n in names if n != "LFE"]].astype(np.float64)
    return float(pyloudnorm.Meter(SR).integrated_loudness(measured))


def _to_lufs(stem: np.ndarray, layout: str, target_lufs: float) -> np.ndarray:
    return stem * np.float32(10 ** ((target_lufs - loudness_lufs(stem, layout)) / 20))


@dataclass
class Clip:
    """A clip's spec, its stems (frames, channels) float32 and how it was made (sources, levels)."""

    spec: ClipSpec
    stems: dict[str, np.ndarray]
    made: dict


def make_clip(split: str, seed: int, index: int, pool: Pool, cache: Path) -> Clip:
    """Clip ``index`` of ``split`` drawn from ``default_rng([seed, index])``."""
    rng = np.random.default_rng([seed, index])
    spec = clip_spec(split, seed, index, rng)
    voices = sorted({s.package for s in pool.speech})
    voice = voices[index % len(voices)]
    music = pool.music[rng.integers(len(pool.music))]
    stems = {
        "DX": _dialogue(spec, tuple(s for s in pool.speech if s.package == voice), cache, rng),
        "MX": _music(spec, music, cache, rng),
    }
    spots = _spot_effects(spec, pool.effects, cache, rng)
    bed_path = None
    if index % 2 == 0:
        bed, bed_path = _bed(spec, pool.effects, cache, rng)
        spots = spots + _to_lufs(bed, spec.layout, loudness_lufs(spots, spec.layout) + BED_UNDER_SPOTS_DB)
    stems["FX"] = _with_lfe(spots, spec.layout)
    spread_lu = LEVEL_SPREAD_LU
    targets = {n: lufs + rng.uniform(-spread_lu, spread_lu) for n, lufs in BALANCES_LUFS[spec.balance].items()}
    stems = {n: _to_lufs(stem, spec.layout, targets[n]) for n, stem in stems.items()}
    gain = min(1.0, PEAK_CEILING / float(np.abs(sum(stems.values())).max()))
    stems = {n: (stem * np.float32(gain)).astype(np.float32) for n, stem in stems.items()}
    stems["ME"] = stems["MX"] + stems["FX"]
    made = {
        "voice_package": voice,
        "music": [_shown(f) for f in music.files],
        "music_package": music.package,
        "bed": _shown(bed_path) if bed_path else None,
        "loudness_lufs": {n: round(loudness_lufs(stems[n], spec.layout), 2) for n in ("DX", "MX", "FX", "ME")},
        "lowered_db": round(-20 * np.log10(gain), 2),
    }
    return Clip(spec, stems, made)


def _shown(path: str) -> str:
    """A source path without the cache's unpack root."""
    return re.sub(r"^.*?/usr/share/", "", path)


def write_clip(clip: Clip, folder: Path) -> None:
    """The clip's media file, stem WAVs and clip.json into ``folder`` (written aside, then renamed in)."""
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, stem in clip.stems.items():
        sf.write(str(tmp / f"{name}.wav"), stem, SR, subtype="FLOAT")
    mix = sum(clip.stems[n] for n in ("DX", "MX", "FX"))
    spec = clip.spec
    codec = ["-c:a", "pcm_s24le"] if spec.container == "mov" else ["-c:a", "aac", "-b:a", "320k"]
    command = [str(find_tool("ffmpeg")), "-v", "error", "-f", "f32le", "-ar", str(SR), "-ch_layout", spec.layout]
    command += ["-i", "-", *codec, str(tmp / f"clip.{spec.container}")]
    subprocess.run(command, input=np.ascontiguousarray(mix, dtype=np.float32).tobytes(), check=True)
    info = {"spec": spec.__dict__, "builder_version": BUILDER_VERSION, "channels": CHANNELS[spec.layout], **clip.made}
    (tmp / "clip.json").write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(folder)


def clip_media(folder: Path) -> Path:
    """The media file of a built clip folder."""
    return next(p for p in sorted(folder.iterdir()) if p.stem == "clip" and p.suffix in (".mov", ".mp4"))


def build_set(split: str, clips: int, seed: int, cache: Path) -> list[Path]:
    """Folders of clips 0..clips-1 of ``split`` (built once, cached by every parameter)."""
    pool = find_pool(split, cache)
    folders = []
    for index in range(clips):
        spec = clip_spec(split, seed, index, np.random.default_rng([seed, index]))
        folder = cache / "filmclips" / spec.key(pool.debs)
        with _locked(cache / "locks" / f"{folder.name}.lock"):
            if not folder.exists():
                write_clip(make_clip(split, seed, index, pool, cache), folder)
        folders.append(folder)
    return folders


def describe(folder: Path) -> str:
    """One line saying how a built clip was made."""
    info = json.loads((folder / "clip.json").read_text())
    spec = info["spec"]
    bleed = f", DX bleed into L/R {spec['bleed_db']:.1f} dB" if spec["bleed_db"] is not None else ""
    levels = " ".join(f"{n} {v:.1f}" for n, v in info["loudness_lufs"].items())
    return (
        f"{folder.name}: {spec['layout']} {spec['balance']} {spec['container']}{bleed}; "
        f"voices {info['voice_package']}; "
        f"music {info['music'][0]}; bed {info['bed'] or '-'}; LUFS {levels}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="split", choices=sorted(SETS), required=True)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seed", type=int, help="default: 2000 (tune), 3000 (test)")
    args = parser.parse_args()
    seed = DEFAULT_SEEDS[args.split] if args.seed is None else args.seed
    for folder in build_set(args.split, args.clips, seed, cache_dir()):
        print(describe(folder))


if __name__ == "__main__":
    main()
