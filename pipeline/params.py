"""What stage and backend parameters share: paths written relative to the project file, and a backend's own keys.

A parameter that names a file or folder is marked with
:class:`RelativeToProject`; the project loader makes it absolute against
the folder of the YAML file that sets it, and the cache key replaces it by
the checksum of what it names, so moving a project changes nothing.

A stage with backends (separate, diarize) validates its section of the
project with one flat model: its own fields and the chosen backend's
(``separate: {backend: dfn3, atten_lim_db: 20}``), made by :func:`with_backend`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict


class NoParams(BaseModel):
    """A backend that takes no parameters of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _never(value: str, folder: Path) -> bool:
    return False


@dataclass(frozen=True)
class RelativeToProject:
    """Marks a parameter written relative to its YAML file: a path, or a mapping of names to paths.

    A value for which ``unless(value, folder)`` holds stays as written: it
    names something else (a registered model, a Hugging Face id).
    """

    unless: Callable[[str, Path], bool] = _never


def marker(model: type[BaseModel], key: str) -> RelativeToProject | None:
    """The :class:`RelativeToProject` mark of ``model``'s field ``key``, if it has one."""
    field = model.model_fields.get(key)
    return next((m for m in field.metadata if isinstance(m, RelativeToProject)), None) if field else None


def absolute_paths(model: type[BaseModel], section: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``section`` (keys of ``model`` as one YAML file in ``folder`` writes them) with marked paths made absolute."""
    out = dict(section)
    for key, value in section.items():
        mark = marker(model, key)
        if mark is not None:
            out[key] = _absolute(value, folder, mark)
    return out


def _absolute(value: Any, folder: Path, mark: RelativeToProject) -> Any:
    if isinstance(value, dict):
        return {name: _absolute(item, folder, mark) for name, item in value.items()}
    if isinstance(value, str) and not mark.unless(value, folder):
        return str((folder / Path(value).expanduser()).absolute())
    return value


@functools.cache
def with_backend(stage_params: type[BaseModel], backend_params: type[BaseModel]) -> type[BaseModel]:
    """One model holding ``stage_params``' fields, then ``backend_params``'; their validators both run."""
    name = f"{stage_params.__name__}[{backend_params.__name__}]"
    return type(name, (backend_params, stage_params), {"__module__": stage_params.__module__})
