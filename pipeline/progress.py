"""Progress reporting: stages call a hook; the default hook does nothing."""

from __future__ import annotations

from typing import Protocol


class ProgressHook(Protocol):
    """What a stage calls to report progress, in units it chooses (e.g. frames)."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """A hook that ignores every call: the default for library use and tests."""

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass
