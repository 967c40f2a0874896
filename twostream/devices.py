"""Where torch work runs: one place that turns a user's ``--device`` into a torch device name."""

from __future__ import annotations

import torch

from twostream.errors import ContractMismatch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """"auto" -> "cuda" when torch sees a CUDA device, else "cpu"; "cpu" and "cuda" as named
    ("cuda:1" and the like pass through). Raises ContractMismatch with one line when CUDA is
    asked for and not available, or the name is not a device."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ContractMismatch(f"CUDA requested but not available (device {name!r}; this torch "
                                   f"{torch.__version__} sees no CUDA device): run on cpu, or auto")
        return name
    raise ContractMismatch(f"unknown device {name!r}; choose from {DEVICES}")
