"""One stream pushed hard or for long: the fast path (``run_fast``: a clip read with
back-pressure as fast as the machine scores it, resident memory sampled: ``bench.py
--soak-frames``) and overload (``run_overload``: a live source faster than that rate:
``bench.py --overload F``). Many live streams for long are benchmarks.streams' run with its
memory samples (``bench.py --soak-minutes``).

Overload shows that latency stays bounded when a source is faster than the machine: the
capture is newest-wins and skips frames whose time has passed, so a frame waits behind at most
the one being scored, and what cannot be scored is dropped and counted, never queued.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

from benchmarks.clips import ClipSet
from benchmarks.measure import (LatencyLog, Sampler, cpu_use, hold, latency_summary, load_average, machine_busy_s,
                                warm_up)
from engines.base import Backend
from realtime.errors import PipelineError
from realtime.pipeline import PipelineSettings
from realtime.streamset import StreamSet

SLICE_S = 10.0  # overload figures per 10 s: the first and the last slice are the issue's


def run_fast(open_backend: Callable[[], Backend], clips: ClipSet, *, warmup_s: float,
             seconds: float | None = None, max_frames: int | None = None, rss_every_s: float = 5.0,
             settings: PipelineSettings = PipelineSettings()) -> dict:
    """Clip 0 looped through one stream as a file is read (back-pressure: nothing dropped, no
    pacing), for ``warmup_s`` and then ``seconds``, or until ``max_frames`` frames in all
    (warm-up included). Reports frames and scored fps after the warm-up and resident memory
    (start: after the warm-up). PipelineError if the stream fails, or if ``max_frames`` is
    reached before the warm-up is over."""
    if (seconds is None) == (max_frames is None):
        raise PipelineError("run_fast needs seconds or max_frames, not both")
    if max_frames is not None:
        settings = replace(settings, capture=replace(settings.capture, max_frames=max_frames))
    streamset = StreamSet(open_backend(), settings)
    try:
        stream = streamset.add("0", clips.source(0, None, live=False))
        sampler = Sampler(rss_every_s, lambda: stream.frames_captured)
        streamset.start()
        warm_up(streamset, warmup_s, may_end=max_frames is not None)
        if stream.done:
            raise PipelineError(f"{max_frames} frames went by within the {warmup_s:g} s warm-up: "
                                "ask for more frames")
        t0, frames0, scored0 = time.monotonic(), stream.frames_captured, stream.stats().predictions
        cpu0, busy0 = time.process_time(), machine_busy_s()
        sampler.start(t0)
        t1 = hold(streamset, seconds, sampler.tick, until_done=max_frames is not None)
        frames1, scored1, cpu1 = stream.frames_captured, stream.stats().predictions, time.process_time()
        busy1 = machine_busy_s()
        sampler.tick(t1, force=True)
        description = stream.source.description
    finally:
        unjoined = streamset.close()
    elapsed = t1 - t0
    report = {"clip": description, "frames": frames1, "frames_after_warmup": frames1 - frames0,
              "seconds_after_warmup": round(elapsed, 2), "scored_fps": round((scored1 - scored0) / elapsed, 2),
              "cpu_cores_used": cpu_use(elapsed, cpu1 - cpu0, None if busy0 is None else busy1 - busy0),
              "rss": sampler.summary(), "load_average_at_end": load_average()}
    if unjoined:
        report["threads_not_joined"] = list(unjoined)
    return report


def _drops_between(timeline: list[tuple[float, int]], t0: float, t1: float) -> int:
    """Drops counted between ``t0`` and ``t1``, from (t, dropped so far) samples in time order
    (the last sample at or before each moment)."""
    def at(t: float) -> int:
        return max((dropped for when, dropped in timeline if when <= t), default=0)
    return at(t1) - at(t0)


def run_overload(open_backend: Callable[[], Backend], clips: ClipSet, factor: float, seconds: float, *,
                 rate_seconds: float = 5.0, warmup_s: float = 3.0,
                 settings: PipelineSettings = PipelineSettings()) -> dict:
    """Measure the rate one stream is scored at (``run_fast`` for ``rate_seconds``), then play
    clip 0 as a live source at ``factor`` times that rate for ``seconds``. Reports glass-to-label
    latency and lag (p50/p95/max), predictions and drops per SLICE_S slice from the start, the
    first and the last SLICE_S on their own, and the drop total."""
    if not factor > 0 or not seconds > 0:
        raise PipelineError(f"overload needs a factor > 0 and seconds > 0, got {factor} and {seconds}")
    rate = run_fast(open_backend, clips, warmup_s=warmup_s, seconds=rate_seconds, settings=settings)["scored_fps"]
    fps = factor * rate
    log = LatencyLog(int(fps * (seconds + 10.0) * 1.25) + 256)
    streamset = StreamSet(open_backend(), settings, on_prediction=lambda _name, prediction: log.add(prediction))
    timeline: list[tuple[float, int]] = []
    try:
        stream = streamset.add("0", clips.source(0, fps, live=True))
        streamset.start()
        t0, cpu0, busy0 = time.monotonic(), time.process_time(), machine_busy_s()
        timeline.append((t0, 0))
        t1 = hold(streamset, seconds, lambda now: timeline.append((now, stream.stats().dropped)))
        timeline.append((t1, stream.stats().dropped))
        cpu1, busy1 = time.process_time(), machine_busy_s()
        frames, description = stream.frames_captured, stream.source.description
    finally:
        unjoined = streamset.close()

    def window(a: float, b: float) -> dict:
        return {"from_s": round(a - t0, 1), "to_s": round(b - t0, 1), **latency_summary(log.between(a, b)),
                "drops": _drops_between(timeline, a, b)}

    edges = [t0 + k * SLICE_S for k in range(int((t1 - t0) // SLICE_S) + 1)]
    edges = edges + [t1] if t1 - edges[-1] > 0.5 else edges[:-1] + [t1]
    slices = [window(a, b) for a, b in zip(edges, edges[1:])]
    report = {"clip": description, "scoring_rate_fps": rate, "factor": factor, "source_fps": round(fps, 2),
              "seconds": round(t1 - t0, 2), "frames_offered": frames, "drops": timeline[-1][1],
              "scored_fps": round(len(log.between(t0, t1)) / (t1 - t0), 2),
              "cpu_cores_used": cpu_use(t1 - t0, cpu1 - cpu0, None if busy0 is None else busy1 - busy0),
              "first_10s": window(t0, min(t0 + SLICE_S, t1)), "last_10s": window(max(t0, t1 - SLICE_S), t1),
              "whole_run": window(t0, t1), "slices": slices, "load_average_at_end": load_average()}
    if log.overflow:
        report["predictions_not_logged"] = log.overflow
    if unjoined:
        report["threads_not_joined"] = list(unjoined)
    return report
