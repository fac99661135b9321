"""Hashes, cache keys and manifests.

A stage's cache key hashes its input files' sha256, its parameters (a path
among them replaced by the checksum of what it names), the checksum of its
model and its code: the code of every dubprep module it imports, directly
or not, with comments and docstrings left out. Its manifest records that
key and every output file (sha256, size, mtime), and is written last,
inside the stage's temporary folder, so a folder with a manifest is complete.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dubprep import __version__
from dubprep.checksums import sha256_file, sha256_folder
from dubprep.params import marker

MANIFEST = "manifest.json"
_PACKAGE = "dubprep"
# What this version writes in a manifest; one without them is from an older dubprep and is not reused.
_MANIFEST_KEYS = ("key", "params", "inputs", "model", "code", "outputs")


class HashCache:
    """Remembers the sha256 of big files by (path, size, mtime) between runs.

    Hashing a 20 GB camera original takes longer than checking that nothing
    changed, so a file whose size and mtime are unchanged keeps its hash.
    """

    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, list[Any]] = json.loads(path.read_text()) if path.is_file() else {}

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.absolute())
        cached = self.entries.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return cached[2]
        digest = sha256_file(file)
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, digest]
        write_json_atomic(self.path, self.entries)
        return digest


def module_source(name: str) -> str:
    """The source text of module ``name``, read from its file (the module is not imported)."""
    return Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8")


@functools.cache
def _parsed(source: str) -> tuple[str, tuple[str, ...]]:
    """(the code of ``source`` without comments, docstrings or layout; the dotted names it imports)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    imported = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return ast.dump(tree), tuple(imported)


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(
        statement.value.value, str
    )


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # 'dubprep.audio_io.SAMPLE_RATE': a name in a module
        return False


def code_closure(roots: tuple[str, ...]) -> set[str]:
    """``roots`` and every dubprep module they import, directly or through one another, with their packages."""
    found: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:end]) for end in range(1, len(parts)) if parts[0] == _PACKAGE]
        _, imported = _parsed(module_source(name))
        todo += [n for n in imported if n.split(".")[0] == _PACKAGE and n not in found and _is_module(n)]
    return found


def code_hash(roots: tuple[str, ...]) -> str:
    """sha256 over dubprep's version and the code of ``roots`` and every dubprep module they import.

    Comments, docstrings and layout do not count: editing them reruns nothing.
    """
    digest = hashlib.sha256(__version__.encode())
    for name in sorted(code_closure(roots)):
        digest.update(name.encode() + b"\0" + _parsed(module_source(name))[0].encode())
    return digest.hexdigest()


def key_params(params: BaseModel) -> dict[str, Any]:
    """``params`` as JSON, each path parameter replaced by the checksum of the file or folder it names."""
    dumped = params.model_dump(mode="json")
    for name in dumped:
        if marker(type(params), name) is not None:
            dumped[name] = _content(dumped[name])
    return dumped


def _content(value: Any) -> Any:
    if isinstance(value, dict):
        return {name: _content(item) for name, item in value.items()}
    if isinstance(value, str) and Path(value).is_file():
        return f"sha256:{sha256_file(Path(value))}"
    if isinstance(value, str) and Path(value).is_dir():
        return f"sha256 of folder:{sha256_folder(Path(value))}"
    return value  # not a path here: a registered name, a Hugging Face id


@dataclass(frozen=True)
class KeyParts:
    """What a stage's result depends on; ``key`` hashes all of it."""

    stage: str
    params: dict[str, Any]
    inputs: dict[str, str]
    model: str
    code: str

    @property
    def key(self) -> str:
        payload = json.dumps(
            {"stage": self.stage, "params": self.params, "inputs": self.inputs, "model": self.model, "code": self.code},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def differences(self, manifest: dict[str, Any]) -> list[str]:
        """Why a previous result with ``manifest`` does not match these parts."""
        reasons = [
            f"{self.stage}.{name}: {manifest['params'].get(name)!r} -> {value!r}"
            for name, value in sorted(self.params.items())
            if manifest["params"].get(name) != value
        ]
        reasons += [f"input {name} changed" for name, sha in sorted(self.inputs.items()) if manifest["inputs"].get(name) != sha]
        if manifest["model"] != self.model:
            reasons.append("model weights changed")
        if manifest["code"] != self.code:
            reasons.append("code changed")
        return reasons or ["cache key changed"]


def describe_outputs(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256, size and mtime of every file in ``folder`` except the manifest."""
    described = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        stat = file.stat()
        described[file.relative_to(folder).as_posix()] = {
            "sha256": sha256_file(file), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        }
    return described


def damaged_outputs(folder: Path, outputs: dict[str, dict[str, Any]]) -> list[str]:
    """Names of recorded outputs that are missing or changed (by size or mtime)."""
    damaged = []
    for name, recorded in outputs.items():
        path = folder / name
        if not path.is_file():
            damaged.append(f"{name} missing")
            continue
        stat = path.stat()
        if stat.st_size != recorded["bytes"] or stat.st_mtime_ns != recorded["mtime_ns"]:
            damaged.append(f"{name} modified")
    return damaged


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of the result in ``folder``; None when there is none, or it is unreadable or an older dubprep's."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or any(key not in manifest for key in _MANIFEST_KEYS):
        return None
    return manifest


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary sibling, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
