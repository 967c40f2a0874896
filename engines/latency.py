"""Per-part latency of a backend at batch 1, as the streaming runtime calls it: one frame per
tower call, one window per head call. Median and 95th percentile over ``runs`` calls after
``warmup`` calls (first calls pay for kernel selection and allocation)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engines.base import Backend


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float


@dataclass(frozen=True)
class PartLatency:
    spatial: Latency
    temporal: Latency
    head: Latency

    @property
    def per_frame_ms(self) -> float:
        """Median cost of one new frame at hop 1: both towers and one head call."""
        return self.spatial.p50_ms + self.temporal.p50_ms + self.head.p50_ms


def _time(call, runs: int, warmup: int) -> Latency:
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - started) * 1000.0
    p50, p95 = np.percentile(times, (50, 95))
    return Latency(round(float(p50), 3), round(float(p95), 3))


def part_latency(backend: Backend, runs: int = 200, warmup: int = 20, seed: int = 0) -> PartLatency:
    """Time each part on plausible inputs: rgb (1, 3, H, W), flow (1, 2L, H, W), and a window
    (1, T, C, h, w) x 2 of the backend's own features."""
    contract = backend.contract
    rng = np.random.default_rng(seed)
    height, width = backend.input_size
    rgb = rng.uniform(0, 255, (1, 3, height, width)).astype(np.float32)
    flow = np.clip(rng.normal(128, 12, (1, contract.flow_channels, height, width)), 0, 255).astype(np.float32)
    s = np.repeat(np.array(backend.spatial(rgb))[:, None], contract.num_segments, axis=1)
    t = np.repeat(np.array(backend.temporal(flow))[:, None], contract.num_segments, axis=1)
    return PartLatency(_time(lambda: backend.spatial(rgb), runs, warmup),
                       _time(lambda: backend.temporal(flow), runs, warmup),
                       _time(lambda: backend.head(s, t), runs, warmup))
