"""Map a backend name from the command line onto a backend instance.

Explicit branches, no registry: each backend is imported only when chosen, so a missing
optional runtime fails only when someone asks for it. The auto chain (TensorRT when CUDA and
TensorRT are present, else OpenVINO, else ONNX Runtime, else PyTorch) and the loading of
checkpoints and engine directories live in engines.auto.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from engines.base import Backend
from twostream.errors import EngineError

BACKEND_CHOICES = ("auto", "tensorrt", "openvino", "onnxruntime", "torch")
PRECISION_CHOICES = ("auto", "fp32", "fp16", "bf16", "int8")


def resolve_backend_name(name: str) -> str:
    """'auto' -> the backend the auto chain picks on this machine for a checkpoint."""
    if name not in BACKEND_CHOICES:
        raise EngineError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_CHOICES)}")
    if name != "auto":
        return name
    from engines.auto import choose_backend, detect_runtimes

    return choose_backend(detect_runtimes()).backend


def open_backend(name: str, model_path: str | Path, *, threads: int | None = 1,
                 input_size: tuple[int, int] | None = None, precision: str = "auto",
                 log: Callable[[str], None] | None = None) -> Backend:
    """Load ``model_path`` (a checkpoint, or an engine directory from build_engine.py) into the
    named backend; ``log`` hears which backend auto picked and why. Raises CheckpointError,
    EngineError or ContractMismatch."""
    if name not in BACKEND_CHOICES:
        raise EngineError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_CHOICES)}")
    from engines.auto import open_model

    return open_model(model_path, name, precision, threads=threads, input_size=input_size, log=log)
