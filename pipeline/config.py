"""The project file: YAML, presets, overrides and validation.

A project names its input media, its output folder and each stage's
parameters. ``extends: NAME`` merges a shipped preset (``presets/NAME.yaml``)
or another YAML file under the project's own keys. Everything is validated
before any work; an error names the file, the key path and the allowed values.
"""

from __future__ import annotations

import errno
import re
import reprlib
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
# What a run writes in its output folder (the engine's layout): an input in there would be overwritten.
OUTPUT_MANAGED = ("work", "deliverables", ".dubprep", "dubprep.log")
# Values in a project file once its YAML aliases are expanded: a real one has a few dozen.
_MAX_YAML_VALUES = 10_000
_QUOTE_CHARS = 60  # of a value quoted in an error


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
    input_label = "--input" if input_path is not None else f"{label}: input"
    _check_input(project.input, input_label)
    _check_output(project, input_label, "--output" if output_path is not None else f"{label}: output")
    return _with_model_located(project)


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
        if data.get(key) == "":
            # Path("") is the current folder: an empty value is a slip, not a choice.
            what = "media file" if key == "input" else "folder"
            raise ConfigError(f"{path}: {key}: an empty path; give a {what} (relative to this file)")
        if isinstance(data.get(key), str):
            data[key] = (path.parent / data[key]).absolute()
    _absolute_diarize_paths(data, path.parent)
    _absolute_model_paths(data, path.parent)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected a preset name or a YAML file, got {_quoted(parent)}")
    base = _resolve(path.parent / parent, seen + (path,)) if parent.endswith((".yaml", ".yml")) else _preset(parent, str(path))
    return deep_merge(_without_alternatives(base, data), data)


def _without_alternatives(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` less the keys ``override`` replaces by choosing another way (a stage's ``alternatives``).

    A project's ``extract.language`` replaces an ``extract.audio_stream`` from
    the preset it extends, and the other way round.
    """
    trimmed = dict(base)
    for section, field in Project.model_fields.items():
        groups = getattr(field.annotation, "alternatives", ())
        mine, inherited = override.get(section), base.get(section)
        if not (groups and isinstance(mine, dict) and isinstance(inherited, dict)):
            continue
        chosen = [group for group in groups if mine.keys() & set(group)]
        replaced = {key for group in groups if chosen and group not in chosen for key in group}
        trimmed[section] = {key: value for key, value in inherited.items() if key not in replaced}
    return trimmed


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
        return f"{label}: {key}: {_quoted(value)} is not one of: {allowed}"
    if kind == "extra_forbidden":
        allowed = ", ".join(_fields_at(loc[:-1])) or "none"
        return f"{label}: {key}: unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return f"{label}: {key}: required"
    message = error["msg"].removeprefix("Value error, ")
    return f"{label}: {key}: {message} (got {_quoted(value)})"


def _quoted(value: Any) -> str:
    """``value`` as Python writes it, cut to part of a line: an error names the value, it does not reprint it.

    A path is quoted whole, as a string: it is what the user has to find.
    """
    if isinstance(value, Path):
        return repr(str(value))
    if isinstance(value, str):
        return repr(value) if len(value) <= _QUOTE_CHARS else f"{value[:_QUOTE_CHARS]!r}... ({len(value)} characters)"
    return reprlib.repr(value)


def _fields_at(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Project
    for part in loc:
        annotation = model.model_fields[part].annotation
        annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)  # X | None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
