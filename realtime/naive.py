"""The seed systems' way, kept as the benchmark's baseline: every window scored from scratch.

Per window: T*L flow fields recomputed from the frames (each sampled frame's whole stack), and
all T sampled frames run through both towers, batched as one clip, then the head. Same model
parts and the same preprocessing steps (twostream.preprocess) as the streaming pipeline, so the
two produce the same logits and differ only in what they recompute.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from engines.base import Backend
from twostream.preprocess import FlowSpec, OpticalFlow, WindowPlan, flow_field, stack_fields


@dataclass(frozen=True)
class NaiveTimes:
    """Milliseconds one window took in each step of the from-scratch scorer."""

    decode: float
    flow: float
    spatial: float
    temporal: float
    head: float


class NaiveScorer:
    """Feed frames one by one; every frame that ends a complete window (hop 1) is scored."""

    def __init__(self, backend: Backend, method: str | None = None, device: str = "cpu"):
        contract = backend.contract
        self.backend = backend
        self.plan = WindowPlan.of(contract, hop=1)
        # device: where torch flow (tvl1-torch) runs, one pair per call as the seeds' code did
        self.spec = replace(FlowSpec.of(contract, device), method=method or contract.flow_method,
                            size=tuple(backend.input_size))
        self._flow = OpticalFlow(self.spec.method, self.spec.tvl1, self.spec.device)
        self._recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.plan.span)  # (rgb, grey)
        self._seen = 0

    def push(self, bgr: np.ndarray, decode_ms: float = 0.0) -> tuple[np.ndarray, NaiveTimes] | None:
        """Add a frame (h, w, 3) BGR; returns (logits (K,), times) when it ends a window."""
        self._recent.append(self.spec.resize(bgr))
        seq = self._seen
        self._seen += 1
        if not self.plan.is_scored(seq):
            return None
        return self._score(decode_ms)

    def _score(self, decode_ms: float) -> tuple[np.ndarray, NaiveTimes]:
        plan, length = self.plan, self.plan.stack_length
        # Positions in the deque: the newest frame is at span-1.
        sampled = plan.offsets + (plan.span - 1)
        started = time.perf_counter()
        rgb = np.stack([self._recent[s][0] for s in sampled]).astype(np.float32)
        stacks = []
        for s in sampled:
            fields = [flow_field(self._flow, self._recent[i - 1][1], self._recent[i][1], self.spec.bound,
                                 self.spec.compensation, self.spec.direction, self.spec.size)
                      for i in range(s - length + 1, s + 1)]
            stacks.append(stack_fields(np.stack(fields)))
        flow = np.stack(stacks).astype(np.float32)
        t_flow = time.perf_counter()
        spatial = self.backend.spatial(rgb)
        t_spatial = time.perf_counter()
        temporal = self.backend.temporal(flow)
        t_temporal = time.perf_counter()
        logits = self.backend.head(spatial[None], temporal[None])[0].copy()
        t_head = time.perf_counter()
        return logits, NaiveTimes(decode_ms, (t_flow - started) * 1000, (t_spatial - t_flow) * 1000,
                                  (t_temporal - t_spatial) * 1000, (t_head - t_temporal) * 1000)
