"""OpenVINO backend (CPU plugin): the three parts as OpenVINO IR (.xml + .bin) or ONNX files,
fp32, fp16 or int8 (a Q/DQ ONNX graph, or the IR converted from one).

    spatial   rgb (N, 3, H, W) float32 0..255           -> (N, C, h, w) float32
    temporal  flow (N, 2L, H, W) float32 0..255         -> (N, C, h, w) float32
    head      (N, T, C, h, w) float32 x 2               -> logits (N, K) float32

The inference precision is always passed explicitly: the CPU plugin otherwise picks bf16 on
CPUs with AMX/AVX-512 BF16 (its default inference precision there), which is not what "fp32"
promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from engines.base import Backend
from engines.onnx_parts import PartFiles, PartShape, check_part_shapes, load_part
from twostream.contract import ModelContract
from twostream.errors import EngineError

# The precision OpenVINO computes in, per engine precision. int8 layers run in int8 whatever the
# hint; the hint decides the rest (un-quantised layers and the Q/DQ edges), kept at f32.
# fp16 engines are FP16 IR (fp16 weights); they compute in f16 only on CPUs with native fp16
# arithmetic (AVX512-FP16, AMX-FP16, ARM) and are decompressed to f32 elsewhere, as OpenVINO does.
_PRECISION_HINT = {"fp32": "f32", "fp16": "f16", "int8": "f32"}


@dataclass(frozen=True)
class OpenVinoSettings:
    """``threads`` per part; LATENCY hint = one stream, batch-1 calls as fast as possible.
    Pinning is off: the flow thread and the head thread share the same two cores."""

    threads: int = 2
    pin_threads: bool = False


def compile_options(core, precision: str, settings: OpenVinoSettings) -> dict:
    """The CPU plugin's properties for ``precision`` on this CPU."""
    if precision not in _PRECISION_HINT:
        raise EngineError(f"OpenVINO: unknown precision {precision!r}")
    hint = _PRECISION_HINT[precision]
    if hint == "f16" and "FP16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        hint = "f32"
    return {
        "INFERENCE_PRECISION_HINT": hint,
        "INFERENCE_NUM_THREADS": settings.threads,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": settings.pin_threads,
    }


class OpenVinoBackend(Backend):
    """One compiled model and one infer request per part: requests are not thread-safe, but the
    runtime calls each part from one thread only, so one request per part suffices."""

    name = "openvino"

    def __init__(self, contract: ModelContract, files: PartFiles, precision: str, *,
                 settings: OpenVinoSettings = OpenVinoSettings(), input_size: tuple[int, int] | None = None):
        super().__init__(contract, input_size, precision=precision, device="cpu")
        import openvino as ov

        self.files = files
        core = ov.Core()  # per backend: no process-wide state
        options = compile_options(core, precision, settings)
        self.inference_precision = options["INFERENCE_PRECISION_HINT"]
        # Read all three, check their shapes, then compile (the slow step): a broken or edited
        # engine fails before any compile.
        models = tuple(_read(core, path) for path in files.as_tuple())
        check_part_shapes(contract, self.input_size,
                          *(_declared(model, path) for model, path in zip(models, files.as_tuple())))
        self._requests = tuple(self._compile(core, model, path, options).create_infer_request()
                               for model, path in zip(models, files.as_tuple()))

    @staticmethod
    def _compile(core, model, path: Path, options: dict):
        try:
            return core.compile_model(model, "CPU", options)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError with long traces
            raise EngineError(f"OpenVINO cannot compile {path}: {_reason(exc)}") from exc

    def _run(self, index: int, *inputs: np.ndarray) -> np.ndarray:
        request = self._requests[index]
        if request is None:
            raise EngineError(f"{self.name} backend is closed")
        request.infer(list(inputs))
        # A view of the request's own output memory, valid until the next call of this part:
        # exactly what the Backend protocol allows, and it saves a copy per call.
        return request.get_output_tensor(0).data

    def _spatial(self, rgb: np.ndarray) -> np.ndarray:
        return self._run(0, rgb)

    def _temporal(self, flow: np.ndarray) -> np.ndarray:
        return self._run(1, flow)

    def _head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._run(2, s, t)

    def close(self) -> None:
        self._requests = (None, None, None)


def _reason(exc: Exception) -> str:
    """The line of an OpenVINO exception that says what is wrong: its messages start with the
    C++ file and the failed check ('Exception from src/...', 'Check ... failed at ...')."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    said = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return (said or lines or [type(exc).__name__])[-1]


def _read(core, path: Path):
    """The model of one part file (IR .xml + .bin, or ONNX), its weights checked first."""
    if path.suffix == ".xml":
        _check_weights(path)
    elif path.suffix == ".onnx":
        load_part(path)  # a truncated file is one clear line, as with ONNX Runtime
    try:
        return core.read_model(str(path))
    except Exception as exc:  # noqa: BLE001
        raise EngineError(f"OpenVINO cannot read {path}: {_reason(exc)}; rebuild with build_engine.py") from exc


def _check_weights(xml: Path) -> None:
    """An IR's .bin must hold every constant its .xml points into (each Const layer's data
    offset + size): a short or missing file is named with both sizes, before OpenVINO reads it
    and says only 'Incorrect weights in bin file!'."""
    weights = xml.with_suffix(".bin")
    try:
        spans = [(int(d.get("offset")), int(d.get("size"))) for d in ElementTree.parse(xml).iter("data")
                 if d.get("offset") is not None and d.get("size") is not None]
    except (ElementTree.ParseError, OSError, ValueError) as exc:
        raise EngineError(f"{xml} is not readable OpenVINO IR ({exc}): truncated or corrupt; "
                          "rebuild with build_engine.py") from exc
    needed = max((offset + size for offset, size in spans), default=0)
    if not needed:
        return
    if not weights.is_file():
        raise EngineError(f"{weights} is missing ({xml.name} needs {needed} bytes of weights from it); "
                          "rebuild with build_engine.py")
    size = weights.stat().st_size
    if size < needed:
        raise EngineError(f"{weights} has {size} bytes, {xml.name} needs {needed}: truncated or corrupt; "
                          "rebuild with build_engine.py")


def _declared(model, path: Path) -> PartShape:
    """The shapes an OpenVINO model declares (a dynamic axis is free: None)."""
    def shape(port) -> tuple[int | None, ...]:
        return tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return PartShape(path, tuple(shape(port) for port in model.inputs), shape(model.outputs[0]))


def save_ir(onnx_path: Path, xml_path: Path, precision: str) -> Path:
    """Convert an ONNX part (fp32 or Q/DQ int8) to IR. fp16 stores fp16 weights (half the
    file); int8 keeps its Q/DQ pattern as FakeQuantize, which the CPU plugin runs in int8."""
    import openvino as ov

    try:
        model = ov.convert_model(str(onnx_path))
        ov.save_model(model, str(xml_path), compress_to_fp16=precision == "fp16")
    except Exception as exc:  # noqa: BLE001
        raise EngineError(f"OpenVINO cannot convert {onnx_path}: {_reason(exc)}") from exc
    return xml_path
