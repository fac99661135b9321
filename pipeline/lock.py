"""One run per output folder, enforced with an advisory file lock.

``flock`` is released by the kernel when the process dies, so a run killed
with SIGKILL never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dubprep.errors import LockError


class OutputLock:
    """Context manager holding an exclusive lock on ``<output>/.dubprep/lock``."""

    def __init__(self, state_dir: Path, output: Path):
        self.path = state_dir / "lock"
        self.output = output
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockError(
                f"{self.output}: another dubprep run (pid {holder}) is using this output folder; "
                f"wait for it to finish or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
