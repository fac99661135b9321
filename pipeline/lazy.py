"""Modules imported when first used, so validating a project never waits for torch.

The stage modules declare their parameters next to the code that runs
them, and the project schema imports those parameters. The model backends
behind a stage (torch, pyannote.audio, DeepFilterNet3...) take seconds to
import; a stage module names them through :func:`lazy_module`, and they are
imported the first time one of their attributes is read, when the stage
runs or its cache key is computed.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, cast


class _Deferred:
    """Stands for a module until an attribute is read, then imports it (Python keeps it imported).

    Not put in sys.modules, unlike importlib's LazyLoader: torch and lightning
    scan sys.modules while they import, which would trigger a half-made import.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def lazy_module(name: str) -> ModuleType:
    """Module ``name``, imported when one of its attributes is first read."""
    return cast(ModuleType, _Deferred(name))
