"""Which torch device the model stages run on.

A project says ``device: auto`` (the default: the first CUDA GPU when torch
sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. The engine resolves
it once per run; stages read the result from ``StageContext.device``.
"""

from __future__ import annotations

DEVICE_PATTERN = r"auto|cpu|cuda(:[0-9]+)?"


class DeviceUnavailable(Exception):
    """The requested GPU is not visible to torch on this machine."""


def resolve_device(requested: str) -> str:
    """'cpu' or 'cuda[:N]' for ``requested`` (one of DEVICE_PATTERN's forms)."""
    if requested == "cpu":
        return "cpu"
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "auto":
        return "cuda:0" if count else "cpu"
    index = int(requested.partition(":")[2] or 0)
    if index >= count:
        raise DeviceUnavailable(f"device {requested!r} asked for, but torch sees {count} CUDA GPU(s) here")
    return f"cuda:{index}"
