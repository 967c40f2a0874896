"""bench.py's classic run (one file-backed stream against the seed systems' from-scratch
scoring): the generated clip written to a video file, the streaming pipeline over it, the naive
baseline over it, and the percentiles they are reported in."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from twostream.errors import SourceError


def write_clip(path: Path, frames: int, size: tuple[int, int], seed: int) -> None:
    """Render ``frames`` frames of the gesture stream into an MPEG-4 file (W, H = size)."""
    import cv2

    from twostream.gestures import GestureStream

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    if not writer.isOpened():
        raise SourceError(f"cannot write the benchmark clip '{path}' (no mp4v encoder?)")
    try:
        for item, _ in zip(GestureStream(seed, size), range(frames)):
            writer.write(item.bgr)
    finally:
        writer.release()


def percentiles(values) -> dict:
    values = np.asarray(values, np.float64)
    p50, p95 = np.percentile(values, (50, 95)) if len(values) else (0.0, 0.0)
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3)}


def run_pipeline(backend, clip: Path, frames: int, realtime: bool = False, settings=None):
    """-> (fps, {frame index: logits (K,)}, stats snapshot). ``realtime`` plays the file at
    its own 25 fps, as a camera would deliver it, for latency figures; ``settings``: the
    PipelineSettings to start from (default: the defaults)."""
    from dataclasses import replace

    from realtime.capture import CaptureSettings
    from realtime.pipeline import Pipeline, PipelineSettings
    from realtime.sources import VideoFileSource

    logits = {}
    settings = replace(settings or PipelineSettings(), capture=CaptureSettings(max_frames=frames, realtime=realtime),
                       stats_window=max(frames, 1))
    pipeline = Pipeline(VideoFileSource(clip), backend, settings,
                        on_prediction=lambda p: logits.__setitem__(p.index, p.logits))
    pipeline.start()  # opens the file, warms the backend up
    started = time.monotonic()
    try:
        pipeline.wait()
        elapsed = time.monotonic() - started
    finally:
        pipeline.stop()
    return pipeline.frames_captured / elapsed, logits, pipeline.stats()


def run_naive(backend, clip: Path, frames: int, threads: int, flow_device: str = "cpu"):
    """-> (fps, [(frame index, logits)], per-step times) over the first ``frames`` frames;
    torch flow runs on ``flow_device``."""
    import cv2
    import torch

    from realtime.naive import NaiveScorer

    torch.set_num_threads(threads)
    scorer = NaiveScorer(backend, device=flow_device)
    cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
    results, times = [], []
    read = 0
    started = time.monotonic()
    for index in range(frames):
        t0 = time.perf_counter()
        ok, bgr = cap.read()
        if not ok:
            break
        read += 1
        scored = scorer.push(bgr, (time.perf_counter() - t0) * 1000.0)
        if scored is not None:
            results.append((index, scored[0]))
            times.append(scored[1])
    elapsed = time.monotonic() - started
    cap.release()
    return read / elapsed, results, times


def pick_naive_threads(backend, clip: Path, flow_device: str = "cpu") -> int:
    """The faster of 1 and 2 torch threads for the baseline, on a few of its windows."""
    from twostream.preprocess import WindowPlan

    best, best_fps = 1, 0.0
    probe_frames = WindowPlan.of(backend.contract).span + 4  # the first complete window and a few more
    for threads in (1, 2):
        run_naive(backend, clip, probe_frames, threads, flow_device)  # warm the thread pool up
        fps, _, _ = run_naive(backend, clip, probe_frames, threads, flow_device)
        if fps > best_fps:
            best, best_fps = threads, fps
    return best
