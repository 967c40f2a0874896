"""Optical flow exactly as the model's contract says: the one implementation used by training,
calibration and the live runtime, so all three see the same numbers.

Frames are resized (whole frame, no crop) to the contract's input size; flow is computed on
the grey resized frames, clipped to ±bound px and quantised to uint8 (contract.FLOW_QUANTISATION).
A 2L-channel stack is a gather of L stored fields, never a recomputation.
"""

from __future__ import annotations

import cv2
import numpy as np

from twostream.contract import FLOW_METHODS
from twostream.errors import ContractMismatch

_DIS_PRESETS = {
    "dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def available_flow_methods() -> tuple[str, ...]:
    """Methods this OpenCV build provides (TV-L1 needs opencv-contrib)."""
    has_tvl1 = hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")
    return tuple(m for m in FLOW_METHODS if m != "tvl1" or has_tvl1)


class OpticalFlow:
    """Dense flow between two grey uint8 frames (H, W) -> float32 (H, W, 2) in pixels.

    Holds OpenCV state (DIS keeps buffers), so use one instance per thread.
    """

    def __init__(self, method: str):
        if method not in FLOW_METHODS:
            raise ContractMismatch(f"unknown flow method {method!r}; choose from {FLOW_METHODS}")
        if method not in available_flow_methods():
            raise ContractMismatch(f"flow method {method!r} needs opencv-contrib-python-headless")
        self.method = method
        if method in _DIS_PRESETS:
            self._impl = cv2.DISOpticalFlow_create(_DIS_PRESETS[method])
        elif method == "tvl1":
            self._impl = cv2.optflow.DualTVL1OpticalFlow_create()
        else:
            self._impl = None

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        if self._impl is None:  # Farneback, OpenCV's documented example parameters
            return cv2.calcOpticalFlowFarneback(prev, cur, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return self._impl.calc(prev, cur, None)


def quantise_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """float (H, W, 2) px -> uint8 (H, W, 2): q = clip(round(f * 128 / bound) + 128, 0, 255)."""
    scaled = np.rint(flow * (128.0 / bound)) + 128.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def resize_frame(bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 (h, w, 3) of any size -> (RGB uint8 (H, W, 3), grey uint8 (H, W)), size = (H, W)."""
    height, width = size
    small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB), cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


def stack_fields(fields: np.ndarray) -> np.ndarray:
    """L quantised fields (L, H, W, 2) -> one temporal-tower input (2L, H, W), channels
    x0, y0, x1, y1, ... oldest first."""
    length, height, width, _ = fields.shape
    return fields.transpose(0, 3, 1, 2).reshape(2 * length, height, width)


def clip_flows(grey: np.ndarray, flow: OpticalFlow, bound: float) -> np.ndarray:
    """Grey frames (F, H, W) -> quantised fields (F, H, W, 2); field 0 is zero motion (no
    previous frame), field i = flow(frame i-1 -> frame i)."""
    fields = np.full((*grey.shape, 2), 128, dtype=np.uint8)
    for i in range(1, len(grey)):
        fields[i] = quantise_flow(flow(grey[i - 1], grey[i]), bound)
    return fields
