"""Which backend runs a model here, and opening it: a checkpoint file or an engine directory.

``--backend auto`` picks TensorRT when CUDA and TensorRT are both present, else OpenVINO, else
ONNX Runtime, else PyTorch, and says which it picked and why. An engine directory narrows the
choice to what its files can run on: TensorRT plans only on TensorRT; ONNX files on OpenVINO or
ONNX Runtime; OpenVINO IR only on OpenVINO.

From a checkpoint, fp32 and fp16 graphs for ONNX Runtime / OpenVINO / TensorRT are exported
(and for TensorRT built) on the fly; int8 needs calibration, a deliberate step, so it is only
opened from an engine directory made by build_engine.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from engines.base import Backend
from engines.enginedir import EngineInfo, check_expected_contract, is_engine_dir, read_engine
from twostream.contract import ModelContract
from twostream.errors import EngineError

BACKENDS = ("auto", "tensorrt", "openvino", "onnxruntime", "torch")
PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Runtimes:
    """What this machine offers; a version string, or None when absent."""

    cuda_device: str | None
    tensorrt: str | None
    openvino: str | None
    onnxruntime: str | None


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def detect_runtimes() -> Runtimes:
    """Probe without importing the heavy runtimes (TensorRT is only probed by package)."""
    import torch

    cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    tensorrt = next((v for v in map(_version, ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")) if v), None)
    return Runtimes(cuda, tensorrt, _version("openvino"), _version("onnxruntime"))


def choose_backend(runtimes: Runtimes, engine: EngineInfo | None = None, engine_suffix: str = "") -> Choice:
    """The auto chain. ``engine``/``engine_suffix``: an engine directory's record and its part
    file suffix ('.onnx', '.xml', '.plan'), which limit what can run it."""
    if engine is not None and engine.backend == "tensorrt":
        return Choice("tensorrt", "the engine directory holds TensorRT plans")
    if engine is None and runtimes.cuda_device and runtimes.tensorrt:
        return Choice("tensorrt", f"CUDA GPU ({runtimes.cuda_device}) and TensorRT {runtimes.tensorrt} present")
    missing = "no CUDA GPU" if not runtimes.cuda_device else "TensorRT not installed"
    if engine is not None:
        missing = f"the engine directory holds {engine_suffix} files for {engine.backend}"
    if runtimes.openvino:
        return Choice("openvino", f"{missing}; OpenVINO {runtimes.openvino} present")
    if engine_suffix == ".xml":
        return Choice("openvino", f"{missing} (OpenVINO IR), but OpenVINO is not installed")
    if runtimes.onnxruntime:
        return Choice("onnxruntime", f"{missing}; OpenVINO not installed; ONNX Runtime {runtimes.onnxruntime} present")
    if engine is not None:
        return Choice(engine.backend, f"{missing}, but neither OpenVINO nor ONNX Runtime is installed")
    return Choice("torch", f"{missing}; neither OpenVINO nor ONNX Runtime installed")


def construct(backend: str, info: EngineInfo, files, *, threads: int | None = None,
              input_size: tuple[int, int] | None = None) -> Backend:
    """The backend object for built files (``info`` gives contract, precision, TensorRT target)."""
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


def open_engine_dir(path: Path, backend: str, precision: str, threads: int | None,
                    input_size: tuple[int, int] | None, expect_contract: ModelContract | None,
                    say: Callable[[str], None]) -> Backend:
    """Open a built engine directory on ``backend`` ("auto": what its files can run on)."""
    info = read_engine(path)
    check_expected_contract(info.contract, expect_contract, path)
    if precision not in ("auto", info.precision):
        raise EngineError(f"{path} holds a {info.precision} engine, not {precision}")
    files = info.files(path)
    suffix = files.spatial.suffix
    choice = choose_backend(detect_runtimes(), info, suffix) if backend == "auto" else Choice(backend, "asked for")
    if "tensorrt" in (choice.backend, info.backend):
        if choice.backend != info.backend:
            raise EngineError(f"{path} holds {info.backend} files; --backend {choice.backend} cannot run them")
        from engines.tensorrt_backend import check_target

        check_target(info.tensorrt, path)
    elif choice.backend == "onnxruntime" and suffix != ".onnx":
        raise EngineError(f"{path} holds OpenVINO IR ({suffix}): ONNX Runtime cannot run it; use --backend openvino")
    elif choice.backend == "torch":
        raise EngineError(f"{path} is an engine directory; --backend torch runs checkpoints only")
    if backend == "auto":
        say(f"backend: {choice.backend} ({choice.reason}); engine: {info.precision}, parts "
            f"{info.spatial.precision}/{info.temporal.precision}/{info.head.precision}")
    return construct(choice.backend, info, files, threads=threads, input_size=input_size)




def open_torch(model, precision: str, threads: int | None, input_size: tuple[int, int] | None) -> Backend:
    """A loaded TwoStreamNet on PyTorch: on the GPU when there is one (the auto chain prefers
    TensorRT there), else the CPU."""
    import torch

    from engines.torch_precision_backend import TorchPrecisionBackend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return TorchPrecisionBackend(model, precision=precision, device=device, threads=threads or 1,
                                 input_size=input_size)
