"""The tower stage: each frame some scored window will sample goes through the spatial and
the temporal tower once, and its features go into the feature cache.

Because the towers are 2D, a frame's features do not depend on the window it is part of; a
window is then T cache reads and one head call (realtime.scorer) instead of 2T tower passes.

With device rings (realtime.deviceflow) and a backend that takes tensors on that device
(engines.base: the torch backends), the tower inputs are ring views on the device: (1, 3, H, W)
and (1, 2L, H, W) uint8, cast inside the backend; nothing goes through the host. Any other
backend gets host float32 arrays, as from host rings (a CPU tensor's .numpy() shares memory).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from engines.base import Backend
from realtime.channel import Channel
from realtime.messages import FlowField, TowerFeatures
from realtime.rings import FeatureCache, FlowRing, FrameRing
from realtime.stage import Control, ProcessingStage
from twostream.preprocess import WindowPlan


class TowerStage(ProcessingStage[FlowField, TowerFeatures]):
    """FlowField -> (features into ``cache`` when the plan needs them) -> TowerFeatures."""

    def __init__(self, control: Control, inbox: Channel[FlowField], outbox: Channel[TowerFeatures],
                 backend: Backend, frames: FrameRing, fields: FlowRing, cache: FeatureCache, plan: WindowPlan):
        super().__init__("towers", control, inbox, outbox)
        self.backend = backend
        self.frames, self.fields, self.cache, self.plan = frames, fields, cache, plan
        self.direct = frames.device is not None and backend.takes_tensors_on(frames.device)
        height, width = backend.input_size
        # Batch-1 float32 staging buffers for host inputs, reused every frame: the uint8 ->
        # float32 cast writes into them, so the backend gets a fresh-looking array with no allocation.
        self._rgb = np.zeros((1, 3, height, width), np.float32)
        self._flow = np.zeros((1, 2 * plan.stack_length, height, width), np.float32)

    def process(self, field: FlowField) -> TowerFeatures:
        seq = field.seq
        if not self.plan.needs_features(seq):
            return TowerFeatures(field, False, 0.0, 0.0)
        started = time.perf_counter()
        spatial = self.backend.spatial(self._input(self.frames.rgb(seq), self._rgb))
        middle = time.perf_counter()
        temporal = self.backend.temporal(self._input(self.fields.stack(seq, self.plan.stack_length), self._flow))
        done = time.perf_counter()
        self.cache.put(seq, spatial[0], temporal[0])
        return TowerFeatures(field, True, (middle - started) * 1000.0, (done - middle) * 1000.0)

    def _input(self, view: np.ndarray | torch.Tensor, staging: np.ndarray) -> np.ndarray | torch.Tensor:
        """A ring view (C, H, W) as a batch-1 tower input: the device view itself, (1, C, H, W)
        uint8, when the backend takes it; else cast into the float32 ``staging`` (1, C, H, W)."""
        if self.direct:
            return view.unsqueeze(0)  # a view: same storage as the ring
        staging[0] = view.cpu().numpy() if isinstance(view, torch.Tensor) else view
        return staging
