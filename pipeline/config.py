"""The project file: YAML, presets, overrides and validation.

A project names its input media, its output folder and each stage's
parameters, one section per registered stage. ``extends: NAME`` merges a
shipped preset (``presets/NAME.yaml``) or another YAML file under the
project's own keys. A relative path is relative to the YAML file that
writes it: ``input``, ``output``, ``models.dir`` and every stage or backend
parameter marked :class:`~dubprep.params.RelativeToProject`. Everything is
validated before any work; an error names the file, the key path and the
allowed values.
"""

from __future__ import annotations

import functools
import re
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from dubprep import models
from dubprep.device import DEVICE_PATTERN
from dubprep.errors import ConfigError
from dubprep.models import ModelsParams
from dubprep.params import absolute_paths
from dubprep.stage import stage_named, stages

DEFAULT_PRESET = "default"

Layer = tuple[Path, dict[str, Any]]
"""One YAML file's keys, and the folder its relative paths start from."""


class Project(BaseModel):
    """A validated project: paths are absolute; :func:`project_model` adds a field per stage holding its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Path
    output: Path
    device: str = "auto"
    models: ModelsParams = ModelsParams()

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return value


def preset_names() -> list[str]:
    """Names of the presets shipped in the package."""
    return sorted(p.name[: -len(".yaml")] for p in resources.files("dubprep.presets").iterdir() if p.name.endswith(".yaml"))


def project_model(sections: dict[str, Any]) -> type[Project]:
    """:class:`Project` with a field per registered stage, each the model its ``sections[stage]`` calls for.

    An optional stage's field is None unless the project has its key.
    """
    chosen = _stage_models(sections)
    return _model(tuple((stage.name, chosen[stage.name], stage.optional) for stage in stages()))


def _stage_models(sections: dict[str, Any]) -> dict[str, type[BaseModel]]:
    """Each stage's parameter model for its section of the project (the backend it names, if it has backends)."""
    models_by_stage = {}
    for stage in stages():
        section = sections.get(stage.name)
        models_by_stage[stage.name] = stage.params_model(section if isinstance(section, dict) else {})
    return models_by_stage


@functools.cache
def _model(chosen: tuple[tuple[str, type[BaseModel], bool], ...]) -> type[Project]:
    fields: dict[str, Any] = {
        name: (model | None, None) if optional else (model, Field(default_factory=model))
        for name, model, optional in chosen
    }
    return create_model("Project", __base__=Project, **fields)


def load_project(
    path: Path | None, input_path: Path | None = None, output_path: Path | None = None, device: str | None = None
) -> Project:
    """Load, merge and validate a project; ``path=None`` runs the default preset.

    ``input_path`` / ``output_path`` override the project's (relative to the
    current folder), so one project file serves as a template for many reels;
    ``device`` overrides the project's ``device``.
    """
    label = str(path) if path else f"preset '{DEFAULT_PRESET}'"
    raw = _merged(_layers(path, seen=()) if path else _preset(DEFAULT_PRESET, label))
    if input_path is not None:
        raw["input"] = Path(input_path).absolute()
    if output_path is not None:
        raw["output"] = Path(output_path).absolute()
    if device is not None:
        raw["device"] = device
    for key in ("input", "output"):
        if key not in raw:
            flag = f"--{key}"
            raise ConfigError(f"{label}: {key}: required; set it in the project file or pass {flag}")
    project = _validate(raw, label)
    if not project.input.is_file():
        raise ConfigError(f"{label}: input: file not found: {project.input}; fix the path or pass --input")
    return project


def _layers(path: Path, seen: tuple[Path, ...]) -> list[Layer]:
    """The YAML file at ``path`` and those it extends, base first."""
    path = path.absolute()
    if path in seen:
        raise ConfigError(f"{path}: extends: loops back to itself via {' -> '.join(map(str, seen))}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return [(path.parent, data)]
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected a preset name or a YAML file, got {parent!r}")
    base = _layers(path.parent / parent, seen + (path,)) if parent.endswith((".yaml", ".yml")) else _preset(parent, str(path))
    return [*base, (path.parent, data)]


def _merged(layers: list[Layer]) -> dict[str, Any]:
    """Every layer's keys merged over the one before, each layer's relative paths made absolute first.

    Which keys are paths depends on the stages' parameter models, and so on
    the backend the merged project chooses.
    """
    chosen: dict[str, Any] = {}
    for _, data in layers:
        chosen = deep_merge(chosen, data)
    models_by_stage = _stage_models(chosen)
    merged: dict[str, Any] = {}
    for folder, data in layers:
        data = dict(data)
        for key in ("input", "output"):
            if isinstance(data.get(key), str):
                data[key] = (folder / data[key]).absolute()
        if isinstance(data.get("models"), dict) and isinstance(data["models"].get("dir"), str):
            data["models"] = {**data["models"], "dir": (folder / Path(data["models"]["dir"]).expanduser()).absolute()}
        for stage in stages():
            if isinstance(data.get(stage.name), dict):
                data[stage.name] = absolute_paths(models_by_stage[stage.name], data[stage.name], folder)
        merged = deep_merge(merged, data)
    return merged


def _preset(name: str, label: str) -> list[Layer]:
    if name not in preset_names():
        raise ConfigError(f"{label}: extends: '{name}' is not one of: {', '.join(preset_names())}")
    with resources.as_file(resources.files("dubprep.presets") / f"{name}.yaml") as preset_path:
        return _layers(preset_path, seen=())


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: project file not found; check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; a project file is YAML text") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of keys (input, output, stages), got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, merging nested mappings key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _validate(raw: dict[str, Any], label: str) -> Project:
    """The project; backends find registered models in its models dir (``models.dir``, else the environment's)."""
    model = project_model(raw)
    configured = raw.get("models", {}).get("dir") if isinstance(raw.get("models"), dict) else None
    context = {"models_dir": models.models_dir(Path(configured) if isinstance(configured, (str, Path)) else None)}
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], label, model)) from None


def _describe(error: dict[str, Any], label: str, model: type[BaseModel]) -> str:
    """One line: file, key path, what is wrong and what is allowed."""
    loc = [str(part) for part in error["loc"] if not str(part).startswith(("function-", "union["))]
    key = ".".join(loc) or "(top level)"
    value = error.get("input")
    kind = error["type"]
    if kind == "literal_error":
        allowed = error["ctx"]["expected"].replace(" or ", ", ").replace("'", "")
        return f"{label}: {key}: {value!r} is not one of: {allowed}"
    if kind == "extra_forbidden":
        owners = _backends_taking(loc)
        if owners:
            takers = " and ".join(owners)
            return f"{label}: {key}: only the {takers} backend takes it; remove it or set {loc[0]}.backend"
        allowed = ", ".join(_fields_at(model, loc[:-1])) or "none"
        return f"{label}: {key}: unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return f"{label}: {key}: required"
    message = error["msg"].removeprefix("Value error, ")
    return f"{label}: {key}: {message} (got {value!r})"


def _backends_taking(loc: list[str]) -> list[str]:
    """The backends of stage ``loc[0]`` whose own keys include ``loc[1]``: a key for another backend."""
    if len(loc) != 2 or loc[0] not in [stage.name for stage in stages()]:
        return []
    backends = stage_named(loc[0]).backends
    return backends.taking(loc[1]) if backends else []


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc:
        annotation = model.model_fields[part].annotation
        annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)  # X | None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
