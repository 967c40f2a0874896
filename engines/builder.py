"""Build the three parts of a model for one backend and precision into a folder.

    export fp32 ONNX (checked against PyTorch)
      -> fp16: fp16 graph with float32 inputs/outputs
      -> int8: calibration set -> Q/DQ graphs; the head stays fp32 when quantising it alone
               costs agreement on the calibration windows (``quantize_head='auto'``)
      -> onnxruntime: the ONNX files | openvino: IR (.xml/.bin) | tensorrt: plans
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from calibration.dataset import CalibrationSettings, build_calibration_set
from calibration.quantize import PartInputs, QuantSettings, part_inputs, quantize_parts
from engines.enginedir import EngineInfo, EnginePart, TensorRTTarget, tool_versions
from engines.onnx_export import PARTS, PartFiles, check_export, export_parts, to_fp16
from engines.parity import PartCost, WindowSet, part_costs, score
from engines.tensorrt_backend import TensorRTBuildSettings
from twostream.errors import EngineError
from twostream.model import TwoStreamNet

BUILD_BACKENDS = ("tensorrt", "openvino", "onnxruntime")
BUILD_PRECISIONS = ("fp32", "fp16", "int8")
HEAD_CHOICES = ("auto", "yes", "no")


@dataclass(frozen=True)
class BuildSettings:
    backend: str
    precision: str
    calib: tuple[str, ...] = ()  # calibration sources (int8): video files, folders, 'demo'
    calibration: CalibrationSettings = CalibrationSettings()
    quant: QuantSettings = QuantSettings()
    quantize_head: str = "auto"
    # 'auto' keeps the int8 head when, quantised alone, it changes at most this share of the
    # calibration windows' top-1 (measured on calibration windows, never on held-out ones).
    head_max_disagreement: float = 0.005
    export_tolerance: float = 1e-4  # fp32 ONNX vs PyTorch, relative
    fp16_tolerance: float = 5e-2  # fp16 graph vs PyTorch fp32, relative
    tensorrt: TensorRTBuildSettings = TensorRTBuildSettings()


@dataclass(frozen=True)
class Built:
    info: EngineInfo
    head_decision: str = ""  # why the head is int8 or fp32 (int8 builds)
    calibration_costs: tuple[PartCost, ...] = field(default=())


def check_available(backend: str) -> TensorRTTarget | None:
    """Fail before any work when the backend cannot be used here (EngineError, one line)."""
    if backend not in BUILD_BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose from {', '.join(BUILD_BACKENDS)}")
    try:
        import onnxruntime  # noqa: F401 - every build checks its export and calibrates with it
    except ImportError as exc:
        raise EngineError("onnxruntime is not installed (pip install -r requirements.txt)") from exc
    if backend == "openvino":
        try:
            import openvino  # noqa: F401
        except ImportError as exc:
            raise EngineError("OpenVINO is not installed (pip install -r requirements.txt)") from exc
    if backend == "tensorrt":
        from engines.tensorrt_backend import current_target

        return current_target()
    return None


def build_parts(model: TwoStreamNet, out_dir: Path, settings: BuildSettings,
                log: Callable[[str], None] = lambda _m: None) -> Built:
    """Write the three parts into ``out_dir`` (which must exist) and return their record."""
    if settings.precision not in BUILD_PRECISIONS:
        raise EngineError(f"unknown precision {settings.precision!r}; choose from {', '.join(BUILD_PRECISIONS)}")
    if settings.quantize_head not in HEAD_CHOICES:
        raise EngineError(f"quantize_head must be one of {HEAD_CHOICES}")
    target = check_available(settings.backend)
    work = out_dir / "onnx-work"
    work.mkdir()
    log("export: fp32 ONNX, checked against PyTorch")
    fp32 = export_parts(model, work)
    check_export(model, fp32, settings.export_tolerance)
    graphs, precisions, decision, costs = fp32, ("fp32",) * 3, "", ()
    if settings.precision == "fp16":
        graphs = PartFiles(*(to_fp16(fp32.of(p), work / f"{p.name}.fp16.onnx") for p in PARTS))
        check_export(model, graphs, settings.fp16_tolerance)
        precisions = ("fp16",) * 3
    elif settings.precision == "int8":
        graphs, precisions, decision, costs = _quantise(model, fp32, work, settings, log)
    if settings.backend == "openvino" and settings.precision == "fp16":
        graphs = fp32  # OpenVINO's own FP16 IR: fp16 weights from the fp32 graph (save_ir)
    files = _finish(graphs, out_dir, settings, model, log)
    shutil.rmtree(work)
    parts = tuple(EnginePart(path.name, precision) for path, precision in zip(files.as_tuple(), precisions))
    calibration = None
    if settings.precision == "int8":
        calibration = f"{', '.join(settings.calib)} ({settings.quant.method}, per-channel "\
                      f"{settings.quant.per_channel}, 7-bit weights {settings.quant.reduce_range}); head: {decision}"
    info = EngineInfo(contract=model.contract, backend=settings.backend, precision=settings.precision,
                      spatial=parts[0], temporal=parts[1], head=parts[2], tools=tool_versions(),
                      tensorrt=target, calibration=calibration)
    return Built(info, decision, costs)


def _quantise(model: TwoStreamNet, fp32: PartFiles, work: Path, settings: BuildSettings, log):
    """Calibrate, quantise the three parts, and decide whether the head stays int8."""
    from engines.onnxruntime_backend import OnnxRuntimeBackend
    from engines.torch_backend import TorchBackend

    log(f"calibrate: reading {', '.join(settings.calib) or '(nothing)'}")
    calibration = build_calibration_set(settings.calib, model.contract, settings.calibration)
    log(f"calibrate: {len(calibration.tower_frames)} tower frames, {len(calibration.windows)} head windows "
        f"from {calibration.description}")
    reference = TorchBackend(model, threads=None)
    inputs: PartInputs = part_inputs(calibration, reference)
    int8 = quantize_parts(fp32, work, inputs, settings.quant)
    if settings.quantize_head != "auto":
        keep = settings.quantize_head == "yes"
        decision = "int8 (asked for)" if keep else "fp32 (asked for)"
        return _with_head(int8, fp32, keep), _precisions(keep), decision, ()
    windows = WindowSet(calibration.clips, calibration.windows, False, "calibration windows")
    with OnnxRuntimeBackend(model.contract, int8) as quantised:
        costs = part_costs(quantised, reference, windows, score(reference, windows), score(quantised, windows))
    head = next(c for c in costs if c.part == "head")
    keep = 1.0 - head.top1_agreement <= settings.head_max_disagreement
    decision = (f"{'int8' if keep else 'fp32'}: quantised alone it changes "
                f"{100 * (1 - head.top1_agreement):.1f}% of {len(windows.pairs)} calibration windows' top-1 "
                f"(limit {100 * settings.head_max_disagreement:g}%)")
    log(f"quantise: head {decision}")
    return _with_head(int8, fp32, keep), _precisions(keep), decision, costs


def _with_head(int8: PartFiles, fp32: PartFiles, int8_head: bool) -> PartFiles:
    return PartFiles(int8.spatial, int8.temporal, int8.head if int8_head else fp32.head)


def _precisions(int8_head: bool) -> tuple[str, str, str]:
    return ("int8", "int8", "int8" if int8_head else "fp32")


def _finish(graphs: PartFiles, out_dir: Path, settings: BuildSettings, model: TwoStreamNet, log) -> PartFiles:
    """ONNX graphs -> the backend's own files, named {part}.onnx / .xml / .plan in ``out_dir``."""
    if settings.backend == "onnxruntime":
        return PartFiles(*(Path(shutil.copyfile(graphs.of(p), out_dir / f"{p.name}.onnx")) for p in PARTS))
    if settings.backend == "openvino":
        from engines.openvino_backend import save_ir

        log(f"openvino: IR ({settings.precision})")
        return PartFiles(*(save_ir(graphs.of(p), out_dir / f"{p.name}.xml", settings.precision) for p in PARTS))
    from engines.tensorrt_backend import build_plan

    import torch

    with torch.inference_mode():  # (C, h, w) of the towers' features: the head's input shape
        probe = model.spatial(torch.zeros(1, 3, *model.contract.input_size))
    feature_shape = tuple(int(d) for d in probe.shape[1:])
    log(f"tensorrt: building plans ({settings.precision})")
    return PartFiles(*(build_plan(graphs.of(p), out_dir / f"{p.name}.plan", p, model.contract, feature_shape,
                                  settings.tensorrt) for p in PARTS))
