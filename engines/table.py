"""The one table of backends and precisions: what each backend runs, what it needs, where.

Everything that names backends or precisions (the commands' ``--backend``/``--precision``
choices, the auto chain, the build and engine-directory checks) is derived from ``KINDS``.
It is data only: which class runs a backend stays an explicit branch that imports the backend
only when it is chosen (engines.auto.construct).
"""

from __future__ import annotations

from dataclasses import dataclass

from twostream.errors import EngineError

AUTO = "auto"


@dataclass(frozen=True)
class BackendKind:
    """One inference backend.

    ``precisions``: what it runs; ``built``: a checkpoint must be built into an engine
    directory for it (export, compile) before it runs; ``devices``: where it runs;
    ``suffix``: its part files in an engine directory ('' for none: it runs checkpoints);
    ``reads``: the part-file suffixes it can open (OpenVINO also reads ONNX files);
    ``packages``: the pip packages that provide it (any one of them); ``title``: for messages.
    """

    name: str
    title: str
    precisions: tuple[str, ...]
    built: bool
    devices: tuple[str, ...]
    suffix: str
    reads: tuple[str, ...]
    packages: tuple[str, ...]


TENSORRT = BackendKind("tensorrt", "TensorRT", ("fp32", "fp16", "int8"), True, ("cuda",), ".plan", (".plan",),
                       ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"))
OPENVINO = BackendKind("openvino", "OpenVINO", ("fp32", "fp16", "int8"), True, ("cpu",), ".xml",
                       (".xml", ".onnx"), ("openvino",))
ONNXRUNTIME = BackendKind("onnxruntime", "ONNX Runtime", ("fp32", "fp16", "int8"), True, ("cpu",), ".onnx",
                          (".onnx",), ("onnxruntime",))
TORCH = BackendKind("torch", "PyTorch", ("fp32", "bf16", "fp16"), False, ("cpu", "cuda"), "", (), ("torch",))

KINDS = (TENSORRT, OPENVINO, ONNXRUNTIME, TORCH)  # the auto order: first usable wins
ENGINE_KINDS = tuple(kind for kind in KINDS if kind.built)

BACKEND_NAMES = tuple(kind.name for kind in KINDS)
PRECISION_NAMES = tuple(dict.fromkeys(p for kind in KINDS for p in kind.precisions))  # every one, once
# What the commands accept: "auto" picks the backend (and the precision: fp32, or an engine's own).
BACKEND_CHOICES = (AUTO, *BACKEND_NAMES)
PRECISION_CHOICES = (AUTO, *PRECISION_NAMES)
ENGINE_BACKENDS = tuple(kind.name for kind in ENGINE_KINDS)
ENGINE_PRECISIONS = tuple(p for p in PRECISION_NAMES if any(p in kind.precisions for kind in ENGINE_KINDS))
# From a checkpoint, an engine is built on the fly in these; int8 needs a calibration step.
CHECKPOINT_ENGINE_PRECISIONS = ("fp32", "fp16")


def kind_of(name: str) -> BackendKind:
    """The table row of backend ``name`` (not "auto"); EngineError for an unknown one."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise EngineError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_CHOICES)}")


def check_request(backend: str, precision: str) -> None:
    """One EngineError line for an unknown backend or precision, or a precision the backend
    does not run. "auto" is allowed for both."""
    if backend != AUTO:
        kind_of(backend)
    if precision not in PRECISION_CHOICES:
        raise EngineError(f"unknown precision {precision!r}; choose from {', '.join(PRECISION_CHOICES)}")
    check_precision(backend, precision)


def check_precision(backend: str, precision: str) -> None:
    """EngineError unless ``backend`` runs ``precision`` (either may be "auto")."""
    if AUTO in (backend, precision):
        return
    kind = kind_of(backend)
    if precision not in kind.precisions:
        raise EngineError(f"{backend} runs {', '.join(kind.precisions)}, not {precision}")
