"""The project file: YAML, presets, overrides and validation.

A project names its input media, its output folder and each stage's
parameters. ``extends: NAME`` merges a shipped preset (``presets/NAME.yaml``)
or another YAML file under the project's own keys. Everything is validated
before any work; an error names the file, the key path and the allowed values.
"""

from __future__ import annotations

import re
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from dubprep.device import DEVICE_PATTERN
from dubprep.errors import ConfigError
from dubprep.models import ModelsParams, registry
from dubprep.stages.assemble import AssembleParams
from dubprep.stages.diarize import DiarizeParams
from dubprep.stages.extract import ExtractParams
from dubprep.stages.backends import fasterwhisper
from dubprep.stages.separate import SeparateParams, model_directory
from dubprep.stages.transcribe import TranscribeParams

DEFAULT_PRESET = "default"


class Project(BaseModel):
    """A validated project: paths are absolute, every stage has its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Path
    output: Path
    device: str = "auto"
    models: ModelsParams = ModelsParams()
    extract: ExtractParams = ExtractParams()
    separate: SeparateParams = SeparateParams()
    diarize: DiarizeParams = DiarizeParams()
    transcribe: TranscribeParams | None = None  # off unless the project asks
    assemble: AssembleParams = AssembleParams()

    @field_validator("device")
    @classmethod
    def _device_form(cls, value: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return value


def preset_names() -> list[str]:
    """Names of the presets shipped in the package."""
    return sorted(p.name[: -len(".yaml")] for p in resources.files("dubprep.presets").iterdir() if p.name.endswith(".yaml"))


def load_project(
    path: Path | None, input_path: Path | None = None, output_path: Path | None = None, device: str | None = None
) -> Project:
    """Load, merge and validate a project; ``path=None`` runs the default preset.

    ``input_path`` / ``output_path`` override the project's (relative to the
    current folder), so one project file serves as a template for many reels;
    ``device`` overrides the project's ``device``.
    """
    label = str(path) if path else f"preset '{DEFAULT_PRESET}'"
    raw = _resolve(path, seen=()) if path else _preset(DEFAULT_PRESET, label)
    raw = dict(raw)
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
    return _with_model_located(project)


def _with_model_located(project: Project) -> Project:
    """Registered models as the absolute directories they are in, found via ``models.dir``.

    The bandit backend's ``separate.model``, and ``transcribe.model``, whose
    files are checked here, before any work (a Hugging Face id stays as it is).
    """
    if project.separate.backend == "bandit":
        located = str(model_directory(project.separate, project.models.dir))
        project = project.model_copy(update={"separate": project.separate.model_copy(update={"model": located})})
    if project.transcribe is not None:
        fasterwhisper.check(project.transcribe.model, project.models.dir)
        located = str(fasterwhisper.locate(project.transcribe.model, project.models.dir))
        project = project.model_copy(update={"transcribe": project.transcribe.model_copy(update={"model": located})})
    return project


def _resolve(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The project's keys merged over whatever it extends; relative paths made absolute."""
    path = path.absolute()
    if path in seen:
        raise ConfigError(f"{path}: extends: loops back to itself via {' -> '.join(map(str, seen))}")
    data = _read_yaml(path)
    for key in ("input", "output"):
        if isinstance(data.get(key), str):
            data[key] = (path.parent / data[key]).absolute()
    _absolute_diarize_paths(data, path.parent)
    _absolute_model_paths(data, path.parent)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected a preset name or a YAML file, got {parent!r}")
    base = _resolve(path.parent / parent, seen + (path,)) if parent.endswith((".yaml", ".yml")) else _preset(parent, str(path))
    return deep_merge(base, data)


def _absolute_model_paths(data: dict[str, Any], folder: Path) -> None:
    """``models.dir``, and a ``separate.model`` that is not a registered name, are relative to the YAML file."""
    models = data.get("models")
    if isinstance(models, dict) and isinstance(models.get("dir"), str):
        models["dir"] = (folder / Path(models["dir"]).expanduser()).absolute()
    separate = data.get("separate")
    if isinstance(separate, dict) and isinstance(separate.get("model"), str) and separate["model"] not in registry():
        separate["model"] = str((folder / Path(separate["model"]).expanduser()).absolute())
    transcribe = data.get("transcribe")
    if isinstance(transcribe, dict) and isinstance(transcribe.get("model"), str):
        # A folder there; anything else (a registered name, a Hugging Face id, a typo) stays as written.
        candidate = folder / Path(transcribe["model"]).expanduser()
        if transcribe["model"] not in registry() and candidate.is_dir():
            transcribe["model"] = str(candidate.absolute())


def _absolute_diarize_paths(data: dict[str, Any], folder: Path) -> None:
    """Reference clips, and a pyannote pipeline folder, are relative to the YAML file that names them.

    A ``pyannote_pipeline`` that is no folder there stays as written: a
    Hugging Face id.
    """
    diarize = data.get("diarize")
    if not isinstance(diarize, dict):
        return
    speakers = diarize.get("speakers")
    if isinstance(speakers, dict):
        diarize["speakers"] = {
            name: (folder / clip).absolute() if isinstance(clip, str) else clip for name, clip in speakers.items()
        }
    pipeline = diarize.get("pyannote_pipeline")
    if isinstance(pipeline, str) and (folder / pipeline).is_dir():
        diarize["pyannote_pipeline"] = str((folder / pipeline).absolute())


def _preset(name: str, label: str) -> dict[str, Any]:
    if name not in preset_names():
        raise ConfigError(f"{label}: extends: '{name}' is not one of: {', '.join(preset_names())}")
    with resources.as_file(resources.files("dubprep.presets") / f"{name}.yaml") as preset_path:
        return _resolve(preset_path, seen=())


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
    try:
        return Project.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], label)) from None


def _describe(error: dict[str, Any], label: str) -> str:
    """One line: file, key path, what is wrong and what is allowed."""
    loc = [str(part) for part in error["loc"] if not str(part).startswith(("function-", "union["))]
    key = ".".join(loc) or "(top level)"
    value = error.get("input")
    kind = error["type"]
    if kind == "literal_error":
        allowed = error["ctx"]["expected"].replace(" or ", ", ").replace("'", "")
        return f"{label}: {key}: {value!r} is not one of: {allowed}"
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(loc[:-1])) or "none"
        return f"{label}: {key}: unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return f"{label}: {key}: required"
    message = error["msg"].removeprefix("Value error, ")
    return f"{label}: {key}: {message} (got {value!r})"


def _fields_at(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Project
    for part in loc:
        annotation = model.model_fields[part].annotation
        annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)  # X | None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
