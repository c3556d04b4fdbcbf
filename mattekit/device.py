"""Choosing the torch device a network runs on, from the ``--device`` option."""

from __future__ import annotations

import re

import torch

from mattekit.errors import MattekitError


def resolve_device(name: str) -> torch.device:
    """``"auto"`` (the first CUDA GPU if any, else the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    name = name.strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise MattekitError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise MattekitError(f"--device {name}: no CUDA GPU is available (use --device cpu or auto)")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise MattekitError(f"--device {name}: there is no GPU {index}; {count} CUDA GPU(s) available")
    return torch.device("cuda", index)
