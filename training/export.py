"""Export a training checkpoint as the shipped cinesep weights and pin their sha256 in the model registry.

    python -m training.export [--checkpoints .cache/training] [--checkpoint FILE]

Writes ``stages/backends/weights/cinesep.pt`` (network configuration and
weights only, no optimizer state) atomically, then adds or updates the
``cinesep`` entry of ``pipeline/models.yaml`` with the file's sha256.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from dubprep.checksums import sha256_file
from training.train import latest_checkpoint

REPO = Path(__file__).resolve().parent.parent
WEIGHTS = REPO / "stages" / "backends" / "weights" / "cinesep.pt"
REGISTRY = REPO / "pipeline" / "models.yaml"
MAX_BYTES = 20 * 2**20


def export_weights(checkpoint: Path, weights: Path) -> str:
    """Write the network of ``checkpoint`` to ``weights``; return its sha256."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    weights.parent.mkdir(parents=True, exist_ok=True)
    partial = weights.with_suffix(".pt.partial")
    torch.save({"config": state["config"], "state_dict": state["net"], "step": state["step"]}, partial)
    if partial.stat().st_size > MAX_BYTES:
        partial.unlink()
        raise SystemExit(f"{checkpoint}: the weights would be over {MAX_BYTES >> 20} MiB; train a smaller network")
    os.replace(partial, weights)
    return sha256_file(weights)


def registry_entry(sha256: str, step: int) -> str:
    """The ``cinesep`` entry of models.yaml, as YAML text."""
    return (
        "- name: cinesep\n"
        "  architecture: cinesep\n"
        "  sample_rate: 48000\n"
        "  stems: [dialogue, music, effects]\n"
        f"  checkpoint: {{file: cinesep.pt, sha256: {sha256}}}\n"
        "  bundled: {package: dubprep.stages.backends, folder: weights}\n"
        "  source: >-\n"
        f"    bundled with dubprep: trained by training/ on Debian-packaged audio ({step} steps);\n"
        "    re-export with python -m training.export\n"
    )


def pin(registry: Path, entry: str) -> None:
    """Replace the ``cinesep`` entry of ``registry`` (or append one), keeping everything else."""
    lines = registry.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "- name: cinesep"), None)
    if start is None:
        text = "".join(lines).rstrip("\n") + "\n" + entry
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("- ")), len(lines))
        text = "".join(lines[:start]) + entry + "".join(lines[end:])
    partial = registry.with_suffix(".yaml.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, registry)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=Path(".cache/training"))
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint file (default: the newest in --checkpoints)")
    args = parser.parse_args()
    checkpoint = args.checkpoint or latest_checkpoint(args.checkpoints)
    if checkpoint is None:
        raise SystemExit(f"no checkpoint in {args.checkpoints}; train first: python -m training.train")
    sha256 = export_weights(checkpoint, WEIGHTS)
    step = torch.load(WEIGHTS, map_location="cpu", weights_only=True)["step"]
    pin(REGISTRY, registry_entry(sha256, step))
    print(f"{checkpoint} (step {step}) -> {WEIGHTS} ({WEIGHTS.stat().st_size / 2**20:.1f} MiB), sha256 {sha256}")
    print(f"pinned in {REGISTRY} as cinesep")


if __name__ == "__main__":
    main()
