"""Which Debian package may be used for what: tuning, testing, or the final reserved check.

Every benchmark and the training recipe draw their audio from Debian
packages (fetched with ``apt-get download``, unpacked with ``dpkg -x``,
never installed). Each package belongs to exactly one split:

- ``tune``: training data and every choice of threshold, constant, rule or
  model. Benchmarks' tuning sets come from here.
- ``test``: what the README reports. Nothing here ever feeds training or a
  choice; its voices, languages and music/effects families are not in
  ``tune`` (speech: Czech and Dutch actors of Fish Fillets, an Italian
  prompt voice; tune speech is English, French and Spanish).
- ``reserved``: a final check, run rarely, never used for training or tuning.

A package in no split may not be used at all until it is given one here:
:func:`require` refuses it, so a new source is a decision made in this file.
"""

from __future__ import annotations

import fnmatch
from typing import Literal

Split = Literal["tune", "test", "reserved"]

# Patterns are fnmatch globs over package names.
TUNE_PACKAGES = (
    "asterisk-core-sounds-en-*",  # Allison Smith, US English
    "asterisk-prompt-fr-armelle",
    "asterisk-prompt-es-co",
    "fillets-ng-data",  # English voices of Fish Fillets, its music and effects
    "flite",
    "libflite1",
    "fretsonfire-songs-muldjord",
    "fb-music-high",
    "wesnoth-1.16-music",
    "extremetuxracer-data",
    "lincity-ng-data",
    "hedgewars-data",
    "xmoto-data",
    "sound-theme-freedesktop",
    "lbreakout2-data",
    "chromium-bsu-data",
    "oxygen-sounds",
    "gnome-audio",
)
TEST_PACKAGES = (
    "fillets-ng-data-cs",  # Czech voice actors of Fish Fillets
    "fillets-ng-data-nl",  # Dutch voice actors of Fish Fillets
    "asterisk-prompt-it-menardi*",  # Italian prompts
    "warzone2100-music",
    "megaglest-data",
    "supertux-data",
    "neverball-data",
    "lugaru-data",
    "openttd-opensfx",
    "openarena-data",
)
RESERVED_PACKAGES = (
    "asterisk-core-sounds-fr-*",
    "asterisk-core-sounds-it-*",
    "asterisk-core-sounds-ru-*",
    "asterisk-core-sounds-es-*",  # Allison Smith again (as the tune English prompts): not a new voice
    "fretsonfire-songs-sectoid",
    "drascula-music",
    "asc-music",
    "colobot-*",
    "freedroid-data",
    "pingus-data",
)
_PATTERNS: dict[Split, tuple[str, ...]] = {"tune": TUNE_PACKAGES, "test": TEST_PACKAGES, "reserved": RESERVED_PACKAGES}


class SplitError(ValueError):
    """A package used outside its split, or in none."""


def split_of(package: str) -> Split | None:
    """The split ``package`` belongs to, or None when it has none."""
    found = [split for split, patterns in _PATTERNS.items() if any(fnmatch.fnmatch(package, p) for p in patterns)]
    if len(found) > 1:
        raise SplitError(f"{package} matches several splits ({', '.join(found)}); fix corpus/splits.py")
    return found[0] if found else None


def require(packages: tuple[str, ...], split: Split) -> None:
    """SplitError unless every one of ``packages`` belongs to ``split``."""
    wrong = [f"{p} ({split_of(p) or 'no split'})" for p in packages if split_of(p) != split]
    if wrong:
        raise SplitError(
            f"only {split} packages may be used here, not: {', '.join(wrong)}; "
            "a new source gets its split in corpus/splits.py first"
        )
