"""bench.py --flow-bench: tvl1-torch (fast and opencv presets) against OpenCV contrib's TV-L1 and
DIS, on the same frame pairs: milliseconds per pair, endpoint error on pairs with known motion
(twostream.flowpairs), and agreement with OpenCV's TV-L1 on real consecutive frames.

Timing: each torch batch runs once to warm up, then ``repeats`` times; the median call over
the batch size is the figure (CUDA synchronised before the clock stops). OpenCV's methods take
one pair at a time, so theirs is the median of ``repeats`` rounds of the same pairs one by one.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.measure import load_average, machine
from twostream.flowpairs import endpoint_error, motion_pairs, video_pairs
from twostream.tvl1 import TVL1Params, tvl1_flow

SIZES = ((112, 112), (224, 224))
BATCHES = (1, 16)
PRESETS = {"tvl1-torch fast": TVL1Params.fast(), "tvl1-torch opencv": TVL1Params.opencv()}
VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"


def _opencv_methods() -> dict:
    """Name -> a callable (prev, cur) grey uint8 (H, W) -> (H, W, 2) float32 px."""
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return {"opencv-contrib tvl1": lambda a, b: tvl1.calc(a, b, None),
            "opencv dis-medium": lambda a, b: dis.calc(a, b, None)}


def _torch_call(prev: np.ndarray, cur: np.ndarray, params: TVL1Params, device: str) -> tuple[np.ndarray, float]:
    """One batched call -> (flow (N, H, W, 2), seconds including the copies to and from the device)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    a = torch.from_numpy(prev).to(device, torch.float32)
    b = torch.from_numpy(cur).to(device, torch.float32)
    flow = tvl1_flow(a, b, params).permute(0, 2, 3, 1).cpu().numpy()
    return flow, time.perf_counter() - started


def _batch(pairs, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` pairs, cycling through ``pairs``."""
    chosen = [pairs[i % len(pairs)] for i in range(count)]
    return np.stack([p.prev for p in chosen]), np.stack([p.cur for p in chosen])


def _timings(pairs, device: str, repeats: int) -> dict:
    """ms per pair: torch presets at each batch size; OpenCV one pair at a time."""
    out = {}
    for name, params in PRESETS.items():
        for batch in BATCHES:
            prev, cur = _batch(pairs, batch)
            _torch_call(prev, cur, params, device)  # warm-up: allocations, kernels
            seconds = [_torch_call(prev, cur, params, device)[1] for _ in range(repeats)]
            out[f"{name}, batch {batch}"] = round(statistics.median(seconds) * 1000 / batch, 2)
    for name, method in _opencv_methods().items():
        method(pairs[0].prev, pairs[0].cur)
        rounds = []
        for _ in range(repeats):
            started = time.perf_counter()
            for pair in pairs:
                method(pair.prev, pair.cur)
            rounds.append((time.perf_counter() - started) / len(pairs))
        out[f"{name}, one pair at a time"] = round(statistics.median(rounds) * 1000, 2)
    return out


def _errors(pairs, device: str) -> dict:
    """Endpoint error (px, 8-px border left out) per motion, per method."""
    prev, cur = _batch(pairs, len(pairs))
    flows = {name: _torch_call(prev, cur, params, device)[0] for name, params in PRESETS.items()}
    for name, method in _opencv_methods().items():
        flows[name] = np.stack([method(p.prev, p.cur) for p in pairs])
    table = {"true mean motion px": {p.name: round(p.magnitude, 3) for p in pairs}}
    for name, flow in flows.items():
        table[name] = {p.name: round(endpoint_error(f, p.truth), 4) for p, f in zip(pairs, flow)}
    return table


def _agreement(size: tuple[int, int], device: str) -> dict | None:
    """Mean endpoint difference to OpenCV contrib's TV-L1 on real consecutive frames."""
    videos = sorted(VIDEOS.glob("*.avi")) + sorted(VIDEOS.glob("*.mp4"))
    prev, cur = video_pairs(videos, size, per_video=4)
    if not len(prev):
        return None
    methods = _opencv_methods()
    reference = np.stack([methods["opencv-contrib tvl1"](a, b) for a, b in zip(prev, cur)])
    out = {"pairs": len(prev), "videos": [v.name for v in videos],
           "opencv-contrib tvl1 mean motion px": round(float(np.linalg.norm(reference, axis=-1).mean()), 3)}
    flows = {name: _torch_call(prev, cur, params, device)[0] for name, params in PRESETS.items()}
    flows["opencv dis-medium"] = np.stack([methods["opencv dis-medium"](a, b) for a, b in zip(prev, cur)])
    for name, flow in flows.items():
        out[f"{name} mean endpoint difference px"] = round(float(np.linalg.norm(flow - reference, axis=-1).mean()), 4)
    return out


def flow_bench(device: str, repeats: int = 3) -> dict:
    """The whole report for bench.py (JSON-ready)."""
    report = {"mode": "flow-bench", "device": device, "machine": machine(), "torch": torch.__version__,
              "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "opencv": cv2.__version__,
              "opencv_threads": cv2.getNumThreads(), "repeats": repeats,
              "presets": {name: params.to_dict() for name, params in PRESETS.items()}}
    if device.startswith("cuda"):
        report["gpu"] = torch.cuda.get_device_name(device)
    for height, width in SIZES:
        pairs = motion_pairs((height, width))
        report[f"{width}x{height}"] = {
            "ms_per_pair": _timings(pairs, device, repeats),
            "endpoint_error_px": _errors(pairs, device),
            "real_frames_vs_opencv_contrib": _agreement((height, width), device),
        }
    report["load_average_at_end"] = load_average()
    return report
