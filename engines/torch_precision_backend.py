"""PyTorch in reduced precision (bf16, fp16) and/or on CUDA: the TorchBackend's three parts
with the weights cast once and the inputs cast per call; outputs are float32 as the protocol
says. fp32 on the CPU is engines.torch_backend.TorchBackend itself.

    spatial   rgb (N, 3, H, W) float32 0..255           -> (N, C, h, w) float32
    temporal  flow (N, 2L, H, W) float32 0..255         -> (N, C, h, w) float32
    head      (N, T, C, h, w) float32 x 2               -> logits (N, K) float32

Inputs stay exact in fp16/bf16: RGB and quantised flow are integers 0..255. Tower inputs may
also be uint8/float32 tensors on ``device`` (engines.base: the GPU flow stage's ring views).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from engines.table import TORCH
from engines.torch_backend import TorchBackend
from twostream.errors import EngineError
from twostream.model import TwoStreamNet

TORCH_PRECISIONS = TORCH.precisions
TORCH_DEVICES = TORCH.devices


def _dtype(precision: str) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    raise EngineError(f"torch: unknown precision {precision!r}; choose from {', '.join(TORCH_PRECISIONS)}")


class TorchPrecisionBackend(TorchBackend):
    """A private copy of the net in ``precision`` on ``device`` ('cpu' or 'cuda')."""

    def __init__(self, model: TwoStreamNet, *, precision: str = "fp32", device: str = "cpu",
                 input_size: tuple[int, int] | None = None):
        super().__init__(model, input_size=input_size, precision=precision, device=device)
        if device not in TORCH_DEVICES:
            raise EngineError(f"torch: unknown device {device!r}; choose from {', '.join(TORCH_DEVICES)}")
        if device == "cuda" and not torch.cuda.is_available():
            raise EngineError("torch: --device cuda asked for, but torch sees no CUDA GPU")
        self.torch_device, self.dtype = torch.device(device), _dtype(precision)
        # A copy: the caller's fp32 model stays the reference it was.
        net = copy.deepcopy(model).to(device=self.torch_device, dtype=self.dtype).eval()
        if self.dtype != torch.float32:
            # oneDNN's bf16/fp16 convolutions want NHWC; on CUDA it lets cuDNN use tensor cores.
            # Towers only: channels_last is for 4D weights, the head's 3D conv has 5D ones.
            net.spatial_tower.to(memory_format=torch.channels_last)
            net.temporal_tower.to(memory_format=torch.channels_last)
        self._model = net

    def _in(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        # A device ring view (uint8, already here) is only cast: no host round trip.
        tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
        return tensor.to(self.torch_device, self.dtype, non_blocking=True)

    @staticmethod
    def _out(tensor: torch.Tensor) -> np.ndarray:
        return tensor.float().cpu().numpy()  # .cpu() synchronises with the CUDA stream

    def _spatial(self, rgb: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._out(self._model.spatial(self._in(rgb)))

    def _temporal(self, flow: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._out(self._model.temporal(self._in(flow)))

    def _head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._out(self._model.head(self._in(s), self._in(t)))
