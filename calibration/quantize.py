"""Explicit INT8 quantisation: Q/DQ nodes inserted into each part's fp32 ONNX graph by ONNX
Runtime's static quantiser, with ranges calibrated on a CalibrationSet.

One format for three runtimes: ONNX Runtime runs a Q/DQ graph directly, OpenVINO turns each
Q/DQ pair into a FakeQuantize and runs int8, and TensorRT (strongly typed) builds int8 layers
from it. Weights are signed, symmetric and per output channel. Biases stay float: TensorRT's Q/DQ
layers take int8 (fp8, int4) tensors, not the int32 biases ONNX Runtime would write, and every
runtime here folds a float bias into the int8 convolution anyway (measured: same speed).

Activations: TensorRT accepts only symmetric int8 (zero point 0), and a graph quantised that way
runs on all three runtimes. But post-ReLU activations are never negative, so symmetric int8
leaves them 7 bits; unsigned activations with a zero point keep 8. On an earlier demo model's 500
held-out windows, all parts int8: top-1 agreement with fp32 0.976 (ONNX Runtime) / 0.982
(OpenVINO) symmetric against 0.998 / 0.998 unsigned, the temporal tower costing most. So CPU
builds use unsigned activations (``symmetric_activations=False``) and TensorRT builds symmetric
ones (``default_settings``).

Weights use 7 bits on CPUs (``reduce_range``): on x86 CPUs without VNNI (AVX2 only, as the AMD
EPYC development machines), ONNX Runtime's and OpenVINO's int8 kernels add pairs of u8 x s8
products in int16 and saturate with full-range weights. Measured on the spatial tower: median
relative feature error 0.37 (ORT) / 0.33 (OpenVINO) with 8-bit weights against 0.035 / 0.033 with
7-bit ones, which is also what the Q/DQ arithmetic itself gives. GPUs have no such limit.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.dataset import CalibrationSet
from engines.base import Backend
from engines.onnx_parts import HEAD, SPATIAL, TEMPORAL, PartFiles, PartSpec, read_info, tag
from calibration.scoring import WindowSet, gather, tower_features
from twostream.errors import EngineError

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class QuantSettings:
    per_channel: bool = True
    reduce_range: bool = True  # 7-bit weights: see the module docstring
    method: str = "minmax"
    op_types: tuple[str, ...] | None = None  # None: every op type the quantiser knows
    # True: signed activations, zero point 0 (what TensorRT needs); False: unsigned with a zero
    # point (ONNX Runtime and OpenVINO; one more bit for post-ReLU values). See the docstring.
    symmetric_activations: bool = True
    batch: int = 16  # samples per calibration run of the augmented graph


@dataclass(frozen=True)
class PartInputs:
    """Calibration inputs of the three parts, float32:
    rgb (M, 3, H, W); flow (M, 2L, H, W); s and t (W, T, C, h, w) fp32 tower features."""

    rgb: np.ndarray
    flow: np.ndarray
    s: np.ndarray
    t: np.ndarray

    def of(self, part: PartSpec) -> tuple[np.ndarray, ...]:
        if part == SPATIAL:
            return (self.rgb,)
        if part == TEMPORAL:
            return (self.flow,)
        return (self.s, self.t)


def default_settings(backend: str) -> "QuantSettings":
    """TensorRT: symmetric activations (all it accepts), full-range weights. CPU runtimes:
    unsigned activations and 7-bit weights (see the module docstring for both)."""
    if backend == "tensorrt":
        return QuantSettings(reduce_range=False, symmetric_activations=True)
    return QuantSettings(reduce_range=True, symmetric_activations=False)


def part_inputs(calibration: CalibrationSet, reference: Backend) -> PartInputs:
    """Tower inputs straight from the set; head inputs are the fp32 towers' features of the
    calibration windows, gathered at the contract's stride exactly as the runtime gathers them."""
    contract = reference.contract
    windows = WindowSet(calibration.clips, calibration.windows, False, calibration.description)
    s, t = gather(tower_features(reference, windows), windows, contract)
    return PartInputs(*calibration.tower_inputs(contract.stack_length), s, t)


def _reader(part: PartSpec, arrays: tuple[np.ndarray, ...], batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class _Batches(CalibrationDataReader):
        """Feeds the calibration inputs in batches of ``batch`` (the graphs have a dynamic batch)."""

        def __init__(self) -> None:
            # Whole batches only: the histogram calibrators stack batches and need equal sizes.
            count = len(arrays[0])
            self._starts = iter(range(0, max(count - count % batch, 1), batch) if count >= batch else [0])

        def get_next(self) -> dict | None:
            start = next(self._starts, None)
            if start is None:
                return None
            return {name: a[start:start + batch] for name, a in zip(part.inputs, arrays)}

    return _Batches()


def quantize_part(src: Path, dst: Path, part: PartSpec, arrays: tuple[np.ndarray, ...],
                  settings: QuantSettings = QuantSettings()) -> Path:
    """fp32 ONNX ``src`` -> Q/DQ int8 ONNX ``dst``, tagged with the same contract."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if settings.method not in CALIBRATION_METHODS:
        raise EngineError(f"unknown calibration method {settings.method!r}; choose from {CALIBRATION_METHODS}")
    if len(arrays[0]) == 0:
        raise EngineError(f"no calibration samples for the {part.name} part")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[settings.method]
    info = read_info(src)
    # The quantiser writes augmented graphs next to its working files: keep them out of the
    # output folder.
    # ONNX Runtime's quantiser logs its advice with module-level logging.warning(), i.e. through
    # the root logger: nothing but a process-wide setting could hide it, so it is left alone
    # (its warnings may matter to a user; the commands show only warnings from third parties).
    with tempfile.TemporaryDirectory(prefix="twostream-quant-") as work:
        staged, prepared = Path(work) / dst.name, Path(work) / "prepared.onnx"
        # Shape inference and graph clean-up first: the exporter leaves biases behind Identity
        # nodes, which the quantiser would otherwise leave in float.
        quant_pre_process(str(src), str(prepared))
        quantize_static(
            str(prepared), str(staged), _reader(part, arrays, settings.batch),
            quant_format=QuantFormat.QDQ, per_channel=settings.per_channel, reduce_range=settings.reduce_range,
            op_types_to_quantize=None if settings.op_types is None else list(settings.op_types),
            activation_type=QuantType.QInt8 if settings.symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=method,
            extra_options={"ActivationSymmetric": settings.symmetric_activations, "WeightSymmetric": True, "QuantizeBias": False})
        shutil.move(str(staged), dst)
    tag(dst, info.contract, info.part, "int8")
    return dst


def quantize_parts(fp32: PartFiles, out_dir: Path, inputs: PartInputs,
                   settings: QuantSettings = QuantSettings()) -> PartFiles:
    """All three parts quantised into ``out_dir/{part}.int8.onnx``."""
    return PartFiles(*(quantize_part(fp32.of(part), out_dir / f"{part.name}.int8.onnx", part, inputs.of(part), settings)
                       for part in (SPATIAL, TEMPORAL, HEAD)))
