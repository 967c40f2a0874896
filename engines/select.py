"""Map a backend name from the command line onto a backend instance.

Explicit branches, no registry: each backend is imported only when chosen, so a missing
optional runtime (added by later backends) fails only when someone asks for it.
"""

from __future__ import annotations

from pathlib import Path

from engines.base import Backend
from twostream.errors import EngineError

BACKEND_CHOICES = ("auto", "torch")


def resolve_backend_name(name: str) -> str:
    """'auto' -> the best backend available here (only PyTorch fp32 for now)."""
    if name not in BACKEND_CHOICES:
        raise EngineError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_CHOICES)}")
    return "torch" if name == "auto" else name


def open_backend(name: str, model_path: str | Path, *, threads: int | None = 1,
                 input_size: tuple[int, int] | None = None) -> Backend:
    """Load ``model_path`` into the named backend. Raises CheckpointError or EngineError."""
    resolved = resolve_backend_name(name)
    if resolved == "torch":
        from engines.torch_backend import TorchBackend

        return TorchBackend.from_checkpoint(model_path, threads=threads, input_size=input_size)
    raise EngineError(f"backend {resolved!r} is not implemented")  # unreachable today
