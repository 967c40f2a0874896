"""Many live streams in one process on one shared engine: what ``bench.py --streams N`` and
``--sweep`` measure.

    N clips in memory ─ArraySource(live, 25 fps, looped)─▶ StreamSet: N Streams ─▶ SharedEngine
                                                              (capture, flow,       (batched
                                                               towers, head each)    calls)

Every stream is a live camera as far as the runtime can tell: the capture paces it at ``fps``,
newest wins, drops are counted; glass-to-label latency runs from when each frame was due
(Frame.t_due) to its label. The run warms up (each stream fills its first window, the engine's
workers settle), then is measured for ``seconds``: every prediction scored in that span counts,
and drops are read at its start, its middle and its end, so "steady drops" (the second half's)
tell a machine that keeps up after a hiccup from one that falls behind for good.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from benchmarks.clips import ClipSet
from benchmarks.measure import (LatencyLog, Sampler, batch_sizes, cpu_use, hold, latency_summary, load_average,
                                machine_busy_s, spread, warm_up)
from engines.base import Backend
from realtime.batching import BatchSettings
from realtime.errors import PipelineError
from realtime.pipeline import PipelineSettings
from realtime.streams import Stream
from realtime.streamset import StreamSet

P95_LIMIT_MS = 50.0
CRITERION = (f"every stream's p95 glass-to-label latency <= {P95_LIMIT_MS:g} ms and no steady drops "
             "(no frame dropped in the second half of the measured run) in any stream")


@dataclass(frozen=True)
class LiveRun:
    """``streams`` live sources paced at ``fps``, measured for ``seconds`` after ``warmup_s``,
    on one engine batching by ``batch``; resident memory sampled every ``rss_every_s``."""

    streams: int
    seconds: float = 30.0
    warmup_s: float = 3.0
    fps: float = 25.0
    batch: BatchSettings = field(default_factory=BatchSettings)
    rss_every_s: float = 5.0

    def __post_init__(self) -> None:
        if self.streams < 1 or not self.seconds > 0 or not self.warmup_s >= 0 or not self.fps > 0:
            raise PipelineError(f"a live run needs streams >= 1, seconds > 0, warmup_s >= 0 and fps > 0, got {self}")


@dataclass(frozen=True)
class _Mark:
    """Each stream's frames taken and frames dropped at one moment (monotonic ``t``), the CPU
    time this process had used by then (all threads) and the machine's (machine_busy_s)."""

    t: float
    frames: tuple[int, ...]
    dropped: tuple[int, ...]
    cpu_s: float
    busy_s: float | None


def _mark(streamset: StreamSet) -> _Mark:
    streams = streamset.streams
    return _Mark(time.monotonic(), tuple(s.frames_captured for s in streams),
                 tuple(s.stats().dropped for s in streams), time.process_time(), machine_busy_s())


def stage_p50s(stream: Stream) -> dict:
    """Median ms of each processing stage over the stream's last predictions (its stats
    window, 300 by default: the last 12 s at 25 fps). ``spatial``, ``temporal`` and ``head``
    include the wait for their shared engine's worker and batch."""
    stats = stream.stats()
    return {name: round(stats.stage(name).p50, 2) for name in ("flow", "spatial", "temporal", "head")}


def run_live(open_backend: Callable[[], Backend], clips: ClipSet, run: LiveRun,
             settings: PipelineSettings = PipelineSettings()) -> dict:
    """Run ``run.streams`` live streams on one StreamSet (a backend from ``open_backend()``,
    closed with it) and return the JSON-ready report: per stream (clip, frames, predictions,
    latency and lag p50/p95/max, drops in all and in the second half), aggregate scored fps,
    pooled latency, batch sizes per part, resident memory, and whether CRITERION was met.
    PipelineError if a stream fails or ends during the run."""
    # Room for every prediction: at most one per frame (hop 1), frames at most ``fps``.
    capacity = int(run.fps * (run.warmup_s + run.seconds + 10.0) * 1.25) + 256
    logs = {str(i): LatencyLog(capacity) for i in range(run.streams)}
    streamset = StreamSet(open_backend(), settings, batch=run.batch,
                          on_prediction=lambda name, prediction: logs[name].add(prediction))
    try:
        for i in range(run.streams):
            streamset.add(str(i), clips.source(i, run.fps, live=True))
        sampler = Sampler(run.rss_every_s, lambda: sum(s.frames_captured for s in streamset.streams))
        streamset.start()
        warm_up(streamset, run.warmup_s)
        start, engine_start = _mark(streamset), streamset.stats()
        sampler.start(start.t)
        hold(streamset, run.seconds / 2, sampler.tick)
        half = _mark(streamset)
        hold(streamset, run.seconds - (half.t - start.t), sampler.tick)
        end, engine_end = _mark(streamset), streamset.stats()
        sampler.tick(end.t, force=True)
        descriptions = [s.source.description for s in streamset.streams]
        stages = [stage_p50s(s) for s in streamset.streams]
    finally:
        unjoined = streamset.close()
    elapsed = end.t - start.t
    per_stream, pooled = [], []
    for i, (name, log) in enumerate(logs.items()):
        rows = log.between(start.t, end.t)
        pooled.append(rows)
        per_stream.append({
            "stream": name, "clip": descriptions[i], "frames": end.frames[i] - start.frames[i],
            **latency_summary(rows),
            "drops": {"total": end.dropped[i] - start.dropped[i], "steady": end.dropped[i] - half.dropped[i]},
            "stages_p50_ms": stages[i],
        })
    rows = np.concatenate(pooled)
    p95s = [s["latency_ms"]["p95"] for s in per_stream]
    worst = None if None in p95s else max(p95s)
    steady = sum(s["drops"]["steady"] for s in per_stream)
    report = {
        "streams": run.streams,
        "max_batch": run.batch.max_batch,
        "max_wait_ms": run.batch.max_wait_ms,
        "seconds": round(elapsed, 2),
        "aggregate_scored_fps": round(len(rows) / elapsed, 2),
        "aggregate_input_fps": round(sum(np.subtract(end.frames, start.frames)) / elapsed, 2),
        # Well under the core count while streams drop: the cores went to other users of a
        # shared machine ("others"), or the streams wait on something other than the CPU.
        "cpu_cores_used": cpu_use(elapsed, end.cpu_s - start.cpu_s,
                                  None if end.busy_s is None else end.busy_s - start.busy_s),
        "latency_ms": spread(rows[:, 1]),
        "lag_ms": spread(rows[:, 2]),
        "worst_stream_p95_ms": worst,
        "drops": {"total": sum(s["drops"]["total"] for s in per_stream), "steady": steady},
        "sustained": worst is not None and worst <= P95_LIMIT_MS and steady == 0,
        "batch_sizes": batch_sizes(engine_start, engine_end),
        "rss": sampler.summary(),
        "load_average_at_end": load_average(),
        "per_stream": per_stream,
    }
    overflow = sum(log.overflow for log in logs.values())
    if overflow:
        report["predictions_not_logged"] = overflow
    if unjoined:
        report["threads_not_joined"] = list(unjoined)
    return report


def unbatched(run: LiveRun) -> LiveRun:
    """The same run with batching off: every engine call alone (max_batch 1)."""
    return replace(run, batch=replace(run.batch, max_batch=1))


def run_sweep(open_backend: Callable[[], Backend], clips: ClipSet, counts: tuple[int, ...], run: LiveRun,
              compare: bool = False, settings: PipelineSettings = PipelineSettings()) -> dict:
    """``run`` with each stream count in ``counts`` (ascending); the largest that met
    CRITERION, and with ``compare`` that count again without batching (the smallest count
    when none met it). Two failing counts in a row end the sweep: more streams only load the
    machine more, and one failure alone may be another user's burst on a shared machine."""
    runs, failed_in_a_row = [], 0
    for count in counts:
        report = run_live(open_backend, clips, replace(run, streams=count), settings)
        runs.append(report)
        failed_in_a_row = 0 if report["sustained"] else failed_in_a_row + 1
        if failed_in_a_row == 2:
            break
    sustained = [r["streams"] for r in runs if r["sustained"]]
    largest = max(sustained) if sustained else None
    result = {
        "criterion": CRITERION,
        "largest_n_sustained": largest,
        "counts_run": [r["streams"] for r in runs],
        "counts_skipped": [n for n in counts if n > runs[-1]["streams"]],
        "summary": [_row(r) for r in runs],
        "runs": runs,
    }
    if compare:
        count = largest or counts[0]
        at = next(r for r in runs if r["streams"] == count)
        result["at_n"] = {"streams": count, "batched": _row(at),
                          "unbatched": run_live(open_backend, clips, unbatched(replace(run, streams=count)), settings)}
    return result


def _row(report: dict) -> dict:
    """One line of a sweep: the figures that decide it, and the mean batch per part."""
    return {"streams": report["streams"], "sustained": report["sustained"],
            "worst_stream_p95_ms": report["worst_stream_p95_ms"], "latency_ms": report["latency_ms"],
            "steady_drops": report["drops"]["steady"], "drops": report["drops"]["total"],
            "aggregate_scored_fps": report["aggregate_scored_fps"], "cpu_cores_used": report["cpu_cores_used"],
            "mean_batch": {part: sizes["mean"] for part, sizes in report["batch_sizes"].items()},
            "load_average_at_end": report["load_average_at_end"]}
