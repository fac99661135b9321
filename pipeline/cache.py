"""Hashes, cache keys and manifests.

A stage's cache key hashes its input files' sha256, its canonical parameters,
the checksum of its model and the source of its code. Its manifest records
that key and every output file (sha256, size, mtime), and is written last,
inside the stage's temporary folder, so a folder with a manifest is complete.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dubprep import __version__

MANIFEST = "manifest.json"
_HASH_BLOCK_BYTES = 8 * 1024 * 1024


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK_BYTES):
            digest.update(block)
    return digest.hexdigest()


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


def code_hash(modules: tuple[str, ...]) -> str:
    """sha256 over dubprep's version and the source of ``modules``."""
    digest = hashlib.sha256(__version__.encode())
    for name in sorted(modules):
        digest.update(name.encode())
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    return digest.hexdigest()


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


def outputs_intact(folder: Path, outputs: dict[str, dict[str, Any]]) -> list[str]:
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
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary sibling, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
