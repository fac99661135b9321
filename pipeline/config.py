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

import errno
import functools
import re
import reprlib
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
# What a run writes in its output folder (the engine's layout): an input in there would be overwritten.
OUTPUT_MANAGED = ("work", "deliverables", ".dubprep", "dubprep.log")
# Values in a project file once its YAML aliases are expanded: a real one has a few dozen.
_MAX_YAML_VALUES = 10_000
_QUOTE_CHARS = 60  # of a value quoted in an error

Layer = tuple[Path, dict[str, Any]]
"""A YAML file (its relative paths start from its folder) and its keys."""


class Project(BaseModel):
    """A validated project: paths are absolute; :func:`project_model` adds a field per stage holding its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Path
    output: Path
    device: str = "auto"
    models: ModelsParams = ModelsParams()
    clean_work: bool = False  # drop OUT/work after a delivery whose QC passed (as --clean-work)

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
    input_label = "--input" if input_path is not None else f"{label}: input"
    _check_input(project.input, input_label)
    _check_output(project, input_label, "--output" if output_path is not None else f"{label}: output")
    return project


def _check_input(media: Path, where: str) -> None:
    """ConfigError unless ``media`` is a regular file (a folder, a link loop, a missing file)."""
    try:
        media.stat()
    except OSError as exc:
        reason = {
            errno.ELOOP: "a symbolic link loop; point it at the media file",
            errno.ENOENT: "file not found; fix the path",
        }.get(exc.errno, f"{exc.strerror}; fix the path or its permissions")
        raise ConfigError(f"{where}: {media}: {reason}") from None
    if media.is_dir():
        raise ConfigError(f"{where}: {media} is a folder; give a media file")
    if not media.is_file():
        raise ConfigError(f"{where}: {media} is not a regular file; give a media file")


def _check_output(project: Project, input_label: str, where: str) -> None:
    """ConfigError when the output is a file, or when the run would rewrite its own input."""
    if project.output.exists() and not project.output.is_dir():
        raise ConfigError(f"{where}: {project.output} is a file, not a folder; choose a folder for the outputs")
    media, output = project.input.resolve(), project.output.resolve()
    for name in OUTPUT_MANAGED:
        if media == output / name or media.is_relative_to(output / name):
            raise ConfigError(
                f"{input_label}: {project.input} is among the files a run on {project.output} rewrites ({name}); "
                f"copy it elsewhere or choose another --output"
            )


def _layers(path: Path, seen: tuple[Path, ...]) -> list[Layer]:
    """The YAML file at ``path`` and those it extends, base first."""
    path = path.absolute()
    if path in seen:
        raise ConfigError(f"{path}: extends: loops back to itself via {' -> '.join(map(str, seen))}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return [(path, data)]
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected a preset name or a YAML file, got {_quoted(parent)}")
    base = _layers(path.parent / parent, seen + (path,)) if parent.endswith((".yaml", ".yml")) else _preset(parent, str(path))
    return [*base, (path, data)]


def _without_alternatives(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` less the keys ``override`` replaces by choosing another way (a stage's ``alternatives``).

    A project's ``extract.language`` replaces an ``extract.audio_stream`` from
    the preset it extends, and the other way round.
    """
    trimmed = dict(base)
    for stage in stages():
        section, groups = stage.name, getattr(stage.Params, "alternatives", ())
        mine, inherited = override.get(section), base.get(section)
        if not (groups and isinstance(mine, dict) and isinstance(inherited, dict)):
            continue
        chosen = [group for group in groups if mine.keys() & set(group)]
        replaced = {key for group in groups if chosen and group not in chosen for key in group}
        trimmed[section] = {key: value for key, value in inherited.items() if key not in replaced}
    return trimmed


def _merged(layers: list[Layer]) -> dict[str, Any]:
    """Every layer's keys merged over the one before, each layer's relative paths made absolute first.

    Which keys are paths depends on the stages' parameter models, and so on
    the backend the merged project chooses. A key a layer sets replaces what
    it chooses instead of (a stage's ``alternatives``) in the layers before.
    """
    chosen: dict[str, Any] = {}
    for _, data in layers:
        chosen = deep_merge(chosen, data)
    models_by_stage = _stage_models(chosen)
    merged: dict[str, Any] = {}
    for path, data in layers:
        data = _absolute(path, data, models_by_stage)
        merged = deep_merge(_without_alternatives(merged, data), data)
    return merged


def _absolute(path: Path, data: dict[str, Any], models_by_stage: dict[str, type[BaseModel]]) -> dict[str, Any]:
    """The keys of the YAML file at ``path`` with their relative paths made absolute against its folder."""
    data, folder = dict(data), path.parent
    for key in ("input", "output"):
        if data.get(key) == "":
            # Path("") is the current folder: an empty value is a slip, not a choice.
            what = "media file" if key == "input" else "folder"
            raise ConfigError(f"{path}: {key}: an empty path; give a {what} (relative to this file)")
        if isinstance(data.get(key), str):
            data[key] = (folder / data[key]).absolute()
    if isinstance(data.get("models"), dict) and isinstance(data["models"].get("dir"), str):
        data["models"] = {**data["models"], "dir": (folder / Path(data["models"]["dir"]).expanduser()).absolute()}
    for stage in stages():
        if isinstance(data.get(stage.name), dict):
            data[stage.name] = absolute_paths(models_by_stage[stage.name], data[stage.name], folder)
    return data


def _preset(name: str, label: str) -> list[Layer]:
    if name not in preset_names():
        raise ConfigError(f"{label}: extends: '{name}' is not one of: {', '.join(preset_names())}")
    with resources.as_file(resources.files("dubprep.presets") / f"{name}.yaml") as preset_path:
        return _layers(preset_path, seen=())


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: project file not found; check the path")
    try:
        loader = yaml.SafeLoader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_values(node, {}, _MAX_YAML_VALUES) > _MAX_YAML_VALUES:
                raise ConfigError(
                    f"{path}: its aliases expand past {_MAX_YAML_VALUES} values; a project file needs a few dozen, "
                    f"write the values out"
                )
            data = None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
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


def _expanded_values(node: yaml.Node, counted: dict[int, int], limit: int) -> int:
    """How many values ``node`` holds with every alias written out, counting each shared node once.

    Stops past ``limit`` (an alias bomb expands exponentially); a node that
    contains itself counts as past it.
    """
    if id(node) in counted:
        return counted[id(node)]
    if isinstance(node, yaml.ScalarNode):
        return 1
    counted[id(node)] = limit + 1  # until known: a cycle back to this node is past the limit
    children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else node.value
    total = 1
    for child in children:
        total += _expanded_values(child, counted, limit)
        if total > limit:
            break
    counted[id(node)] = total
    return total


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
        return f"{label}: {key}: {_quoted(value)} is not one of: {allowed}"
    if kind == "extra_forbidden":
        owners = _backends_taking(loc)
        if owners:
            takers = " and ".join(owners) + (" backend takes" if len(owners) == 1 else " backends take")
            return f"{label}: {key}: only the {takers} it; remove it or set {loc[0]}.backend"
        allowed = ", ".join(_fields_at(model, loc[:-1])) or "none"
        return f"{label}: {key}: unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return f"{label}: {key}: required"
    message = error["msg"].removeprefix("Value error, ")
    return f"{label}: {key}: {message} (got {_quoted(value)})"


def _quoted(value: Any) -> str:
    """``value`` as Python writes it, cut to part of a line: an error names the value, it does not reprint it.

    A path is quoted whole, as a string: it is what the user has to find.
    """
    if isinstance(value, Path) or (isinstance(value, str) and Path(value).is_absolute()):
        return repr(str(value))
    if isinstance(value, str):
        return repr(value) if len(value) <= _QUOTE_CHARS else f"{value[:_QUOTE_CHARS]!r}... ({len(value)} characters)"
    return reprlib.repr(value)


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
