"""The protocol every inference backend implements: the model's three parts, one call each.

    spatial(rgb)    rgb  (N, 3, H, W)      float32, RGB 0..255           -> (N, C, h, w) float32
    temporal(flow)  flow (N, 2L, H, W)     float32, quantised flow 0..255 -> (N, C', h', w') float32
    head(s, t)      s (N, T, C, h, w), t (N, T, C', h', w') tower features -> (N, K) float32 logits

(C', h', w') = (C, h, w) unless the temporal tower has a backbone of its own (contract's
``temporal_backbone``, late fusions): ``feature_shape`` and ``temporal_feature_shape`` say.

Normalisation is inside the model, so every backend takes the same raw inputs.

Template method (as Polygraphy's runners): the public calls check ranks, shapes and dtypes and
say expected vs actual; a backend implements only ``_spatial``, ``_temporal`` and ``_head``.

Device tensors (the GPU flow stage's rings): a backend whose ``tensor_device`` is a torch
device ("cuda", "cpu") also takes ``spatial``/``temporal`` inputs as torch tensors on that
device, uint8 or float32 (still 0..255, same shapes), and casts them itself: a ring view goes
into the model with no host round trip. ``tensor_device`` None (ONNX Runtime, OpenVINO,
TensorRT): numpy only; the runtime hands those a host array (``.cpu().numpy()``: no copy for a
CPU tensor). Outputs are numpy float32 either way.

Threading: the streaming runtime calls ``spatial``/``temporal`` from one thread and ``head`` from
another, so a backend must allow calls to different parts at the same time (one call per part
at a time). A returned array belongs to the caller only until the next call of the same part
(a backend may reuse its output buffers), so copy what you keep.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from twostream.contract import ModelContract
from twostream.errors import EngineError


def _check(what: str, array: np.ndarray, expected: tuple[int | None, ...]) -> None:
    """Raise EngineError unless ``array`` is float32 with ``expected`` shape (None = any)."""
    if not isinstance(array, np.ndarray):
        raise EngineError(f"{what}: expected a numpy array, got {type(array).__name__}")
    if array.dtype != np.float32:
        raise EngineError(f"{what}: expected float32, got {array.dtype}")
    _check_shape(what, array, expected)


def _check_tensor(what: str, tensor, device: str, expected: tuple[int | None, ...]) -> None:
    """Raise EngineError unless ``tensor`` is a torch tensor on ``device``, uint8 or float32,
    with ``expected`` shape. Imported here: numpy-only backends never pay for torch."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise EngineError(f"{what}: expected a numpy array or a torch tensor, got {type(tensor).__name__}")
    if not same_device(tensor.device, device):
        raise EngineError(f"{what}: expected a tensor on {device}, got one on {tensor.device}")
    if tensor.dtype not in (torch.uint8, torch.float32):
        raise EngineError(f"{what}: expected a uint8 or float32 tensor, got {tensor.dtype}")
    _check_shape(what, tensor, expected)


def same_device(have, want) -> bool:
    """Whether two torch devices (torch.device or names) are one: "cuda" is whichever "cuda:N"
    the other names (the current one, where torch allocates for "cuda")."""
    import torch

    have, want = torch.device(have), torch.device(want)
    return have.type == want.type and (have.index is None or want.index is None or have.index == want.index)


def _check_shape(what: str, array, expected: tuple[int | None, ...]) -> None:
    shape_ok = array.ndim == len(expected) and all(
        want is None or want == got for want, got in zip(expected, array.shape))
    if not shape_ok:
        shown = tuple("N" if want is None else want for want in expected)
        raise EngineError(f"{what}: expected shape {shown}, got {tuple(array.shape)}")


class Backend(ABC):
    """One loaded model, callable part by part. Use as a context manager or call ``close``."""

    name = "abstract"
    # The torch device whose tensors spatial/temporal take as they are (module docstring);
    # None: numpy arrays only.
    tensor_device: str | None = None

    def __init__(self, contract: ModelContract, input_size: tuple[int, int] | None = None, *,
                 precision: str = "fp32", device: str = "cpu"):
        self.contract = contract
        # What this runner computes in and where ("cpu" or "cuda"), for reports: an engine's
        # own precision (its parts may be mixed: engines.enginedir.EngineInfo has them).
        self.precision, self.device = precision, device
        # Frames are resized to this (H, W); it differs from the contract only when the user
        # explicitly allowed a contract mismatch.
        self.input_size = tuple(input_size or contract.input_size)
        self._feature_shape: tuple[int, int, int] | None = None
        self._temporal_feature_shape: tuple[int, int, int] | None = None

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's tower features, found once by a probe call."""
        if self._feature_shape is None:
            probe = np.zeros((1, 3, *self.input_size), np.float32)
            self._feature_shape = tuple(int(d) for d in self._spatial(probe).shape[1:])
        return self._feature_shape

    @property
    def temporal_feature_shape(self) -> tuple[int, int, int]:
        """(C', h', w') of one frame's temporal features: the spatial ones' unless the temporal
        tower has its own backbone, then found once by a probe call."""
        if self._temporal_feature_shape is None:
            if self.contract.temporal_trunk == self.contract.backbone:
                return self.feature_shape
            probe = np.zeros((1, self.contract.flow_channels, *self.input_size), np.float32)
            self._temporal_feature_shape = tuple(int(d) for d in self._temporal(probe).shape[1:])
        return self._temporal_feature_shape

    def takes_tensors_on(self, device: str) -> bool:
        """Whether spatial/temporal take torch tensors on ``device`` as they are."""
        return self.tensor_device is not None and same_device(device, self.tensor_device)

    def _check_input(self, what: str, array, expected: tuple[int | None, ...]) -> None:
        if self.tensor_device is not None and not isinstance(array, np.ndarray):
            _check_tensor(what, array, self.tensor_device, expected)
        else:
            _check(what, array, expected)

    def spatial(self, rgb: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) float32 RGB 0..255 (or a tensor on ``tensor_device``) -> (N, C, h, w) float32."""
        self._check_input("spatial input", rgb, (None, 3, *self.input_size))
        return self._spatial(rgb)

    def temporal(self, flow: np.ndarray) -> np.ndarray:
        """(N, 2L, H, W) float32 quantised flow 0..255 (or a tensor on ``tensor_device``)
        -> (N, C, h, w) float32."""
        self._check_input("temporal input", flow, (None, self.contract.flow_channels, *self.input_size))
        return self._temporal(flow)

    def head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Spatial (N, T, C, h, w) and temporal (N, T, C', h', w') features, float32 -> logits (N, K) float32."""
        _check("head spatial features", s, (None, self.contract.num_segments, *self.feature_shape))
        _check("head temporal features", t, (None, self.contract.num_segments, *self.temporal_feature_shape))
        if s.shape[0] != t.shape[0]:
            raise EngineError(f"head: batch sizes differ, spatial {s.shape[0]} vs temporal {t.shape[0]}")
        return self._head(s, t)

    @abstractmethod
    def _spatial(self, rgb: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _temporal(self, flow: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray: ...

    def warm_up(self) -> None:
        """Run every part once on zeros: first calls pay for kernel selection and allocation,
        which would otherwise land in the first prediction's latency."""
        height, width = self.input_size
        s = self.spatial(np.zeros((1, 3, height, width), np.float32))
        t = self.temporal(np.zeros((1, self.contract.flow_channels, height, width), np.float32))
        segments = self.contract.num_segments
        self.head(np.zeros((1, segments, *s.shape[1:]), np.float32), np.zeros((1, segments, *t.shape[1:]), np.float32))

    def close(self) -> None:
        """Release engine resources. Idempotent."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
