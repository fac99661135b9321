"""sha256 of files and folders, and the check of model weights against a pinned sha256.

Every checksum dubprep takes goes through here: the cache key's inputs and
parameters, the model registry's files, a backend's weights. A file's sum is
remembered in this process until its size or modification time changes, so
a multi-GB checkpoint named by several stages is read once.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from dubprep.errors import ModelError

_BLOCK_BYTES = 8 * 1024 * 1024


@functools.cache
def _file_sha256(path: Path, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 (hex) of ``path``, read in blocks."""
    stat = path.stat()
    return _file_sha256(path.absolute(), stat.st_size, stat.st_mtime_ns)


def sha256_folder(folder: Path) -> str:
    """sha256 over the relative name and sha256 of every file in ``folder``.

    Hidden files and folders (``.git``, ``.cache``) are not the folder's
    content and are left out.
    """
    digest = hashlib.sha256()
    relative = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    for name in relative:
        if not any(part.startswith(".") for part in name.split("/")):
            digest.update(name.encode() + b"\0" + sha256_file(folder / name).encode())
    return digest.hexdigest()


def verified_sha256(path: Path, expected: str, what: str, fix: str) -> str:
    """sha256 of ``path``; ModelError naming ``what``, the expected sum and ``fix`` if missing or different."""
    if not path.is_file():
        raise ModelError(f"{what} not found at {path} (expected sha256 {expected}); {fix}")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelError(
            f"{what} at {path} have sha256 {actual}, expected {expected}; "
            f"the file is corrupt or from another version; {fix}"
        )
    return actual
