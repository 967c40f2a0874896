"""What a build is asked for, in a module of its own: build_engine.py reads the defaults for
its options without importing torch (building.builder), which takes seconds."""

from __future__ import annotations

from dataclasses import dataclass

from calibration.dataset import CalibrationSettings
from calibration.quantize import QuantSettings
from engines.tensorrt_backend import TensorRTBuildSettings


@dataclass(frozen=True)
class BuildSettings:
    backend: str
    precision: str
    calib: tuple[str, ...] = ()  # calibration sources (int8): video files, folders, 'demo'
    calibration: CalibrationSettings = CalibrationSettings()
    quant: QuantSettings | None = None  # None: calibration.quantize.default_settings(backend)
    # 'auto': parts go back to fp32, costliest first, until the model agrees with fp32 on
    # ``min_agreement`` of the validation windows (calibration.mixed); or e.g. 'spatial,head'.
    int8_parts: str = "auto"
    min_agreement: float = 0.99
    validation_clips_per_class: int = 10  # x 10 classes x 5 windows = 500 validation windows
    export_tolerance: float = 1e-4  # fp32 ONNX vs PyTorch, relative
    fp16_tolerance: float = 5e-2  # fp16 graph vs PyTorch fp32, relative
    tensorrt: TensorRTBuildSettings = TensorRTBuildSettings()
