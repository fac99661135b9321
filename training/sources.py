"""The training audio: Debian packages, fetched, unpacked and decoded once into pools.

Every source is listed in :data:`TRAINING_SOURCES` with its package, role
(speech, music or effects), the files used and the licence (also in
training/SOURCES.md). Packages are fetched with ``apt-get download`` and
unpacked with ``dpkg -x`` (nothing is installed). Only tuning packages
(:mod:`corpus.splits`) feed training: :func:`training_packages` refuses test
and reserved ones.

Decoded audio is stored per role as one int16 array of 48 kHz stereo frames
(``ROLE.npy``, memory-mapped when read) with an index of (start, frames) per
file (``ROLE_index.npy``) and the files' names (``ROLE_files.txt``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from corpus.splits import RESERVED_PACKAGES, require
from dubprep.tools import find_tool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from sepdata import fetch  # noqa: E402  (the benchmark's package fetcher; a script folder, not a package)

SAMPLE_RATE = 48_000
Role = Literal["speech", "music", "effects"]
ROLES: tuple[Role, ...] = ("speech", "music", "effects")

@dataclass(frozen=True)
class Source:
    """Files of one package used for one role.

    ``patterns``: globs under the unpacked root; ``exclude``: regular
    expressions, a path matching any is skipped; ``songs``: each folder
    matched by the patterns is one song whose files are tracks played together.
    """

    package: str
    role: Role
    patterns: tuple[str, ...]
    licence: str
    exclude: tuple[str, ...] = ()
    songs: bool = False


_ASTERISK = "usr/share/asterisk/sounds"
_GAMES = "usr/share/games"
# Asterisk prompts that are tones or silence, not speech.
_NOT_SPEECH = (r"/silence/", r"beep", r"tone", r"confbridge-(join|leave)")
TRAINING_SOURCES = (
    Source("asterisk-core-sounds-en-g722", "speech", (f"{_ASTERISK}/en_US_f_Allison/**/*.g722",),
           "CC-BY-SA-3.0 (prompts by Allison Smith)", _NOT_SPEECH),
    Source("asterisk-prompt-fr-armelle", "speech", (f"{_ASTERISK}/fr/**/*.gsm",), "GPL-2", _NOT_SPEECH),
    Source("asterisk-prompt-es-co", "speech", (f"{_ASTERISK}/es/**/*.gsm",), "GPL-2", _NOT_SPEECH),
    Source("fillets-ng-data", "speech", (f"{_GAMES}/fillets-ng/sound/*/en/*.ogg",), "GPL-2+ (character voices)"),
    Source("fretsonfire-songs-muldjord", "music", (f"{_GAMES}/fretsonfire/data/songs/muldjord/*/*.ogg",),
           "CC-BY-SA-3.0", songs=True),
    Source("fb-music-high", "music", (f"{_GAMES}/frozen-bubble/snd/*.xm",), "GPL-2+"),
    Source("fillets-ng-data", "music", (f"{_GAMES}/fillets-ng/music/*.ogg",), "GPL-2+"),
    Source("wesnoth-1.16-music", "music", (f"{_GAMES}/wesnoth/1.16/data/core/music/*.ogg",), "GPL-2+"),
    Source("extremetuxracer-data", "music", (f"{_GAMES}/etr/music/*.ogg",), "GPL-2+ / CC0 per file"),
    Source("lincity-ng-data", "music", (f"{_GAMES}/lincity-ng/music/default/*.ogg",), "GPL-2+"),
    Source("hedgewars-data", "music", (f"{_GAMES}/hedgewars/Data/Music/*.ogg",), "GPL-2 / CC-BY-SA-3.0 per file"),
    Source("xmoto-data", "music", (f"{_GAMES}/xmoto/Textures/Musics/*.ogg",), "GPL-2+ / permissive per file"),
    Source("sound-theme-freedesktop", "effects", ("usr/share/sounds/freedesktop/stereo/*.oga",),
           "CC-BY-SA-3.0 / CC-BY-3.0 / GPL-2+ per file", (r"audio-channel-", r"audio-test-signal")),
    Source("fillets-ng-data", "effects", (f"{_GAMES}/fillets-ng/sound/share/*.ogg",), "GPL-2+"),
    Source("hedgewars-data", "effects", (f"{_GAMES}/hedgewars/Data/Sounds/*.ogg",), "GPL-2 / CC-BY-SA-3.0 per file"),
    Source("lbreakout2-data", "effects", (f"{_GAMES}/lbreakout2/sounds/*.wav",), "GPL-2+"),
    Source("lincity-ng-data", "effects", (f"{_GAMES}/lincity-ng/sounds/*.wav",), "GPL-2+"),
    Source("extremetuxracer-data", "effects", (f"{_GAMES}/etr/sounds/*.wav", f"{_GAMES}/etr/sounds/*.ogg"),
           "GPL-2+ / CC0 per file"),
    Source("chromium-bsu-data", "effects", (f"{_GAMES}/chromium-bsu/wav/*.wav",), "Clarified-Artistic"),
    Source("oxygen-sounds", "effects", ("usr/share/sounds/Oxygen-*.ogg",), "LGPL-3.0-or-later"),
    Source("gnome-audio", "effects", ("usr/share/sounds/*.wav", "usr/share/sounds/gtk-events/*.wav"),
           "CC-BY-SA-2.0 / CC-BY-3.0"),
)
# Flite (CMU, BSD-style licence): its built-in voices read the English
# subtitles of fillets-ng's levels, for more (synthetic) speakers.
FLITE_PACKAGES = ("flite", "libflite1")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FLITE_LINES_PER_VOICE = 150


def training_packages() -> tuple[str, ...]:
    """Every package the training pools are built from; SplitError unless all are tuning packages."""
    packages = tuple(dict.fromkeys([s.package for s in TRAINING_SOURCES] + list(FLITE_PACKAGES)))
    require(packages, "tune")
    return packages


def source_files(source: Source, root: Path) -> list[tuple[Path, ...]]:
    """The items of ``source``: one tuple of files per item (a song's tracks, or one file)."""
    files = sorted({p for pattern in source.patterns for p in root.glob(pattern) if p.is_file()})
    files = [p for p in files if not any(re.search(rx, str(p.relative_to(root))) for rx in source.exclude)]
    if not source.songs:
        return [(p,) for p in files]
    folders: dict[Path, list[Path]] = {}
    for path in files:
        folders.setdefault(path.parent, []).append(path)
    return [tuple(tracks) for _, tracks in sorted(folders.items())]


def decode(path: Path) -> np.ndarray:
    """``path`` as 48 kHz float32 stereo (mono duplicated); shape (frames, 2)."""
    fmt = {".g722": ["-f", "g722"], ".gsm": ["-f", "gsm"]}.get(path.suffix, [])
    command = [str(find_tool("ffmpeg")), "-v", "error", *fmt, "-i", str(path)]
    command += ["-ar", str(SAMPLE_RATE), "-ac", "2", "-f", "f32le", "-"]
    samples = subprocess.run(command, capture_output=True, check=True).stdout
    return np.frombuffer(samples, dtype=np.float32).reshape(-1, 2)  # shape: (frames, 2)


def decode_item(files: tuple[Path, ...]) -> np.ndarray:
    """The tracks of one item summed (cut to the shortest); shape (frames, 2)."""
    tracks = [decode(path) for path in files]
    frames = min(len(track) for track in tracks)
    return sum(track[:frames] for track in tracks)


def subtitle_lines(root: Path) -> list[str]:
    """English dialogue lines of fillets-ng's levels (for the flite voices), in a fixed order."""
    lines = []
    for script in sorted(root.glob(f"{_GAMES}/fillets-ng/script/*/dialogs_en.lua")):
        lines += re.findall(r'dialogId\("[^"]*",\s*"[^"]*",\s*"([^"]{20,200})"\)', script.read_text(errors="ignore"))
    return lines


def synthesize(root: Path, out_dir: Path) -> list[tuple[Path, ...]]:
    """WAVs of each flite voice reading its share of the subtitle lines; one item per WAV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {"LD_LIBRARY_PATH": str(root / "usr/lib/x86_64-linux-gnu")}
    lines = subtitle_lines(root)
    items = []
    for v, voice in enumerate(FLITE_VOICES):
        for k in range(FLITE_LINES_PER_VOICE):
            text = lines[(v * FLITE_LINES_PER_VOICE + k) % len(lines)]
            wav = out_dir / f"{voice}_{k:03d}.wav"
            if not wav.exists():
                command = [str(root / "usr/bin/flite"), "-voice", voice, "-t", text, "-o", str(wav)]
                subprocess.run(command, env=env, check=True, capture_output=True)
            items.append((wav,))
    return items


def build_pools(cache: Path) -> None:
    """Fetch, unpack, synthesise and decode every training source into ``cache``/pools (once)."""
    pools = cache / "pools"
    if all((pools / f"{role}_index.npy").exists() for role in ROLES):
        return
    root = fetch(training_packages(), cache)
    items: dict[Role, list[tuple[Path, ...]]] = {role: [] for role in ROLES}
    for source in TRAINING_SOURCES:
        items[source.role] += source_files(source, root)
    items["speech"] += synthesize(root, cache / "flite")
    pools.mkdir(parents=True, exist_ok=True)
    for role in ROLES:
        _write_pool(pools, role, items[role], root)


def _write_pool(pools: Path, role: Role, items: list[tuple[Path, ...]], root: Path) -> None:
    """Decode ``items`` into ``role``.npy (int16 (frames, 2)), ``role``_index.npy and ``role``_files.txt."""
    index, names, chunks = [], [], []
    start = 0
    for files in items:
        audio = decode_item(files)
        if len(audio) < SAMPLE_RATE // 4:
            continue
        chunks.append(np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16))
        index.append((start, len(audio)))
        names.append(" + ".join(str(p.relative_to(root)) if p.is_relative_to(root) else p.name for p in files))
        start += len(audio)
    np.save(pools / f"{role}.npy", np.concatenate(chunks))
    (pools / f"{role}_files.txt").write_text("\n".join(names) + "\n")
    np.save(pools / f"{role}_index.npy", np.asarray(index, dtype=np.int64))  # written last: marks the pool done


def print_pool_hours(pools: Path) -> None:
    """Print the items and hours of audio in each pool (the figures the README gives)."""
    for role in ROLES:
        frames = np.load(pools / f"{role}_index.npy")[:, 1]  # shape: (items,)
        print(f"{role}: {len(frames)} items, {frames.sum() / SAMPLE_RATE / 3600:.2f} h")


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="fetch and decode the training audio")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "dubprep-train")
    cache = parser.parse_args().cache
    build_pools(cache)
    print_pool_hours(cache / "pools")


if __name__ == "__main__":
    main()
