"""Build the three parts of a model for one backend and precision into a folder.

    export fp32 ONNX (checked against PyTorch)
      -> fp16: fp16 graph with float32 inputs/outputs
      -> int8: calibration set -> Q/DQ graphs; parts go back to fp32 while the model's
               agreement with fp32 on validation windows is too low (calibration.mixed)
      -> onnxruntime: the ONNX files | openvino: IR (.xml/.bin) | tensorrt: plans
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from building.settings import BuildSettings
from calibration.dataset import build_calibration_set
from calibration.quantize import PartInputs, default_settings, part_inputs, quantize_parts
from engines.table import ENGINE_BACKENDS, ENGINE_PRECISIONS
from engines.enginedir import EngineInfo, EnginePart, TensorRTTarget, tool_versions
from building.export import check_export, export_parts, to_fp16
from engines.onnx_parts import PARTS, PartFiles
from calibration.mixed import PART_NAMES, choose_parts
from calibration.scoring import WindowSet, can_generate, generated_windows
from twostream import seeds
from twostream.errors import EngineError
from twostream.model import TwoStreamNet

logger = logging.getLogger(__name__)  # progress, one line per step

@dataclass(frozen=True)
class Built:
    info: EngineInfo
    int8_decision: str = ""  # which parts are int8, and why (int8 builds)


def check_available(backend: str) -> TensorRTTarget | None:
    """Fail before any work when the backend cannot be used here (EngineError, one line)."""
    if backend not in ENGINE_BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose from {', '.join(ENGINE_BACKENDS)}")
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


def build_parts(model: TwoStreamNet, out_dir: Path, settings: BuildSettings) -> Built:
    """Write the three parts into ``out_dir`` (which must exist) and return their record."""
    if settings.precision not in ENGINE_PRECISIONS:
        raise EngineError(f"unknown precision {settings.precision!r}; choose from {', '.join(ENGINE_PRECISIONS)}")
    unknown = set(settings.int8_parts.split(",")) - set(PART_NAMES) - {"auto"}
    if unknown:
        raise EngineError(f"int8 parts must be 'auto' or a comma list of {', '.join(PART_NAMES)}; got {sorted(unknown)}")
    target = check_available(settings.backend)
    work = out_dir / "onnx-work"
    work.mkdir()
    logger.info("export: fp32 ONNX, checked against PyTorch")
    fp32 = export_parts(model, work)
    check_export(model, fp32, settings.export_tolerance)
    graphs, precisions, decision = fp32, ("fp32",) * 3, ""
    if settings.precision == "fp16":
        graphs = PartFiles(*(to_fp16(fp32.of(p), work / f"{p.name}.fp16.onnx") for p in PARTS))
        check_export(model, graphs, settings.fp16_tolerance)
        precisions = ("fp16",) * 3
    elif settings.precision == "int8":
        graphs, precisions, decision = _quantise(model, fp32, work, settings)
    if settings.backend == "openvino" and settings.precision == "fp16":
        graphs = fp32  # OpenVINO's own FP16 IR: fp16 weights from the fp32 graph (save_ir)
    files = _finish(graphs, out_dir, settings, model)
    shutil.rmtree(work)
    parts = tuple(EnginePart(path.name, precision) for path, precision in zip(files.as_tuple(), precisions))
    calibration = None
    if settings.precision == "int8":
        quant = settings.quant or default_settings(settings.backend)
        calibration = (f"{', '.join(settings.calib)} ({quant.method}; activations "
                       f"{'symmetric int8' if quant.symmetric_activations else 'unsigned uint8'}, weights "
                       f"per-channel {'7' if quant.reduce_range else '8'}-bit); {decision}")
    info = EngineInfo(contract=model.contract, backend=settings.backend, precision=settings.precision,
                      spatial=parts[0], temporal=parts[1], head=parts[2], tools=tool_versions(),
                      tensorrt=target, calibration=calibration)
    return Built(info, decision)


def _quantise(model: TwoStreamNet, fp32: PartFiles, work: Path, settings: BuildSettings):
    """Calibrate, quantise the three parts, and choose which of them stay int8."""
    from engines.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeSettings

    logger.info(f"calibrate: reading {', '.join(settings.calib) or '(nothing)'}")
    calibration = build_calibration_set(settings.calib, model.contract, settings.calibration)
    logger.info(f"calibrate: {len(calibration.tower_frames)} tower frames, {len(calibration.windows)} head windows "
                f"from {calibration.description}")
    # The fp32 ONNX graphs stand in for PyTorch here: check_export held them to 1e-4 of it,
    # and they score the calibration and validation windows several times faster.
    reference = OnnxRuntimeBackend(model.contract, fp32, settings=OnnxRuntimeSettings(threads=2))
    inputs: PartInputs = part_inputs(calibration, reference)
    quant = settings.quant or default_settings(settings.backend)
    int8 = quantize_parts(fp32, work, inputs, quant)
    if settings.int8_parts != "auto":
        wanted = tuple(name in settings.int8_parts.split(",") for name in PART_NAMES)
        return _mix(int8, fp32, wanted), _precisions(wanted), f"int8 parts: {settings.int8_parts} (asked for)"
    if can_generate(model.contract):
        windows = generated_windows(model.contract, settings.validation_clips_per_class, per_clip=5,
                                    seed=seeds.VALIDATION)
    else:
        windows = WindowSet(calibration.clips, calibration.windows, False, "calibration windows")
    # ONNX Runtime's int8 kernels compute 7-bit-weight graphs exactly; full-range ones
    # (TensorRT builds) may saturate on CPUs without VNNI, so those are evaluated literally,
    # node by node (slower, but the Q/DQ arithmetic itself, as TensorRT computes it).
    literal = not quant.reduce_range
    with OnnxRuntimeBackend(model.contract, int8, settings=OnnxRuntimeSettings(threads=2, literal=literal)) as quantised:
        choice = choose_parts(reference, quantised, windows, settings.min_agreement)
    logger.info(f"quantise: {choice.describe()}")
    return _mix(int8, fp32, choice.int8), _precisions(choice.int8), choice.describe()


def _mix(int8: PartFiles, fp32: PartFiles, chosen: tuple[bool, bool, bool]) -> PartFiles:
    return PartFiles(*(q if keep else f for q, f, keep in zip(int8.as_tuple(), fp32.as_tuple(), chosen)))


def _precisions(chosen: tuple[bool, bool, bool]) -> tuple[str, str, str]:
    return tuple("int8" if keep else "fp32" for keep in chosen)


def _finish(graphs: PartFiles, out_dir: Path, settings: BuildSettings, model: TwoStreamNet) -> PartFiles:
    """ONNX graphs -> the backend's own files, named {part}.onnx / .xml / .plan in ``out_dir``."""
    if settings.backend == "onnxruntime":
        return PartFiles(*(Path(shutil.copyfile(graphs.of(p), out_dir / f"{p.name}.onnx")) for p in PARTS))
    if settings.backend == "openvino":
        from engines.openvino_backend import save_ir

        logger.info(f"openvino: IR ({settings.precision})")
        return PartFiles(*(save_ir(graphs.of(p), out_dir / f"{p.name}.xml", settings.precision) for p in PARTS))
    from engines.tensorrt_backend import build_plan

    import torch

    contract = model.contract
    with torch.inference_mode():  # (C, h, w) of each tower's features: the head's input shapes
        probe = model.spatial(torch.zeros(1, 3, *contract.input_size))
        temporal_probe = model.temporal(torch.zeros(1, contract.flow_channels, *contract.input_size))
    feature_shape = tuple(int(d) for d in probe.shape[1:])
    temporal_feature_shape = tuple(int(d) for d in temporal_probe.shape[1:])
    logger.info(f"tensorrt: building plans ({settings.precision})")
    return PartFiles(*(build_plan(graphs.of(p), out_dir / f"{p.name}.plan", p, model.contract, feature_shape,
                                  settings.tensorrt, temporal_feature_shape=temporal_feature_shape) for p in PARTS))
