"""PyTorch fp32 backend: the reference every other backend is checked against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engines.base import Backend
from twostream.checkpoint import load_model
from twostream.model import TwoStreamNet


class TorchBackend(Backend):
    """Runs the three parts of a ``TwoStreamNet`` on the CPU in fp32.

    Torch's thread count is process-wide, so it is not set here: each command sets it once at
    startup (1 for the streaming runtime: its stages run in parallel, and on small batch-1
    convolutions OpenMP's spinning workers fight the flow thread for the cores; measured on
    2 vCPUs: ~400 ms per tower call with 2 threads vs ~3.5 ms with 1).
    """

    name = "torch"

    def __init__(self, model: TwoStreamNet, *, input_size: tuple[int, int] | None = None,
                 precision: str = "fp32", device: str = "cpu"):
        super().__init__(model.contract, input_size, precision=precision, device=device)
        self._model = model.eval()
        # Ring views of a device flow stage on this device go in as they are (engines.base).
        self.tensor_device = device

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> "TorchBackend":
        """Load a model file (raises twostream.errors.CheckpointError)."""
        model, _ = load_model(path)
        return cls(model, **kwargs)

    @property
    def model(self) -> TwoStreamNet:
        return self._model

    @staticmethod
    def _tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A numpy input as a tensor (shared memory); a uint8 ring view cast to float32."""
        return torch.from_numpy(x) if isinstance(x, np.ndarray) else x.to(torch.float32)

    # inference_mode is thread-local, so each call enters it (a few microseconds).
    def _spatial(self, rgb: np.ndarray | torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self._model.spatial(self._tensor(rgb)).numpy()

    def _temporal(self, flow: np.ndarray | torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self._model.temporal(self._tensor(flow)).numpy()

    def _head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._model.head(torch.from_numpy(s), torch.from_numpy(t)).numpy()
