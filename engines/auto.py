"""Which backend runs a model here, and constructing it: the auto chain and the one branch per
backend that imports it only when it is chosen.

``--backend auto`` goes down engines.table.KINDS (TensorRT > OpenVINO > ONNX Runtime >
PyTorch) and takes the first that can run here, saying why it skipped the ones before. An
engine directory narrows the chain to what its files can run on: TensorRT plans only on
TensorRT; ONNX files on OpenVINO or ONNX Runtime; OpenVINO IR only on OpenVINO.

Building an engine from a checkpoint (export, compile) is building.cache's job, not this
layer's: here only finished files are opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from engines.base import Backend
from engines.enginedir import EngineInfo
from engines.table import (AUTO, BACKEND_CHOICES, KINDS, ONNXRUNTIME, OPENVINO, PRECISION_CHOICES, TENSORRT, TORCH,
                           BackendKind, kind_of)
from twostream.errors import EngineError

BACKENDS = BACKEND_CHOICES
PRECISIONS = PRECISION_CHOICES


@dataclass(frozen=True)
class Runtimes:
    """What this machine offers; a version string, or None when absent (PyTorch always is)."""

    cuda_device: str | None
    tensorrt: str | None
    openvino: str | None
    onnxruntime: str | None

    def version(self, kind: BackendKind) -> str | None:
        if kind is TENSORRT:
            return self.tensorrt
        if kind is OPENVINO:
            return self.openvino
        if kind is ONNXRUNTIME:
            return self.onnxruntime
        return "present"  # torch: this code cannot run without it


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


def _version(packages: tuple[str, ...]) -> str | None:
    for package in packages:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return None


def detect_runtimes() -> Runtimes:
    """Probe without importing the heavy runtimes (only by installed package)."""
    import torch

    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return Runtimes(cuda, *(_version(kind.packages) for kind in (TENSORRT, OPENVINO, ONNXRUNTIME)))


def _missing(kind: BackendKind, runtimes: Runtimes) -> str | None:
    """Why ``kind`` cannot run here, or None when it can."""
    if "cpu" not in kind.devices and not runtimes.cuda_device:
        return "no CUDA GPU"
    if runtimes.version(kind) is None:
        return f"{kind.title} not installed"
    return None


def _present(kind: BackendKind, runtimes: Runtimes) -> str:
    if kind is TORCH:
        return f"PyTorch on {'CUDA (' + runtimes.cuda_device + ')' if runtimes.cuda_device else 'the CPU'}"
    if "cpu" not in kind.devices:
        return f"CUDA GPU ({runtimes.cuda_device}) and {kind.title} {runtimes.version(kind)} present"
    return f"{kind.title} {runtimes.version(kind)} present"


def _runs(kind: BackendKind, engine: EngineInfo, suffix: str) -> bool:
    """Whether ``kind`` can run an engine built for ``engine.backend`` whose files end in
    ``suffix``: it must read both those files and the kind its builder writes (so a TensorRT
    engine runs only on TensorRT, an ONNX Runtime one on OpenVINO too)."""
    return suffix in kind.reads and kind_of(engine.backend).suffix in kind.reads


def choose_backend(runtimes: Runtimes, engine: EngineInfo | None = None, engine_suffix: str = "") -> Choice:
    """The auto chain. ``engine``/``engine_suffix``: an engine directory's record and its part
    file suffix ('.onnx', '.xml', '.plan'), which limit what can run it."""
    skipped = [] if engine is None else [f"the engine directory holds {engine_suffix} files for {engine.backend}"]
    for kind in KINDS:
        if engine is not None and not _runs(kind, engine, engine_suffix):
            continue
        missing = _missing(kind, runtimes)
        if missing is None:
            return Choice(kind.name, "; ".join([*skipped, _present(kind, runtimes)]))
        skipped.append(missing)
    # Only an engine directory gets here (PyTorch ends the chain): the backend it was built
    # for, whose own check then says what is missing.
    return Choice(engine.backend, "; ".join(skipped))



def engine_choice(path: Path, info: EngineInfo, backend: str, runtimes: Runtimes | None = None) -> Choice:
    """The backend that runs the engine directory ``path`` (described by ``info``): ``backend``
    itself, or the auto chain's pick for "auto". EngineError when it cannot run the files."""
    suffix = info.files(path).spatial.suffix
    if backend == AUTO:
        choice = choose_backend(runtimes or detect_runtimes(), info, suffix)
    else:
        choice = Choice(backend, "asked for")
    kind = kind_of(choice.backend)
    if not kind.built:
        raise EngineError(f"{path} is an engine directory; --backend {kind.name} runs checkpoints only")
    if kind is TENSORRT and info.backend == TENSORRT.name:
        # First: plans are tied to a TensorRT version and GPU, and that is what a user must fix.
        from engines.tensorrt_backend import check_target

        check_target(info.tensorrt, path)
    if not _runs(kind, info, suffix):
        raise EngineError(f"{path} holds {info.backend} files ({suffix}); --backend {kind.name} cannot run them")
    return choice


def construct(backend: str, info: EngineInfo, files, *, threads: int | None = None,
              input_size: tuple[int, int] | None = None) -> Backend:
    """The backend object for built files (``info`` gives contract, precision, TensorRT target).
    ``threads``: per-part threads of an ONNX Runtime / OpenVINO session (None: its default)."""
    if backend == "tensorrt":
        from engines.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(info.contract, files, precision=info.precision, input_size=input_size)
    if backend == "openvino":
        from engines.openvino_backend import OpenVinoBackend, OpenVinoSettings

        settings = OpenVinoSettings() if threads is None else OpenVinoSettings(threads=threads)
        return OpenVinoBackend(info.contract, files, info.precision, settings=settings, input_size=input_size)
    if backend == "onnxruntime":
        from engines.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeSettings

        settings = OnnxRuntimeSettings() if threads is None else OnnxRuntimeSettings(threads=threads)
        return OnnxRuntimeBackend(info.contract, files, precision=info.precision, settings=settings,
                                  input_size=input_size)
    raise EngineError(f"backend {backend!r} does not run built engines")


def torch_device() -> str:
    """Where PyTorch runs a checkpoint: the GPU when there is one (the auto chain prefers
    TensorRT there), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def open_torch(model, precision: str, device: str, input_size: tuple[int, int] | None) -> Backend:
    """A runner around an already loaded TwoStreamNet (fp32 on the CPU shares the model: its
    forward passes only read the weights; other precisions/devices cast a private copy)."""
    if precision == "fp32" and device == "cpu":
        from engines.torch_backend import TorchBackend

        return TorchBackend(model, input_size=input_size)
    from engines.torch_precision_backend import TorchPrecisionBackend

    return TorchPrecisionBackend(model, precision=precision, device=device, input_size=input_size)
