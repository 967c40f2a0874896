"""What the benchmarks measure and how it is summarised: every prediction's glass-to-label
latency and lag (``LatencyLog``), resident memory (``rss_mb``), the machine, and the JSON-ready
summaries of latencies and batch sizes.

A benchmark keeps every prediction of its measured run, not the runtime's sliding window of
300: percentiles over a 30-s run of 12 streams need all ~9,000 of them. The log is allocated
and touched in full before the run starts, so a soak's memory samples see it from the first
one and its growth is the runtime's alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from realtime.batching import BatchStats, PartBatchStats
from realtime.errors import PipelineError
from realtime.messages import Prediction
from realtime.streams import StreamState
from realtime.streamset import StreamSet

TICK_S = 0.2  # how often a running benchmark checks its streams and takes its samples
# Longest a warm-up waits for every stream's first prediction past its own seconds: a machine
# that cannot score a first window of each stream in that long would measure only start-up.
FIRST_WINDOW_CAP_S = 60.0


class LatencyLog:
    """(t_scored, glass-to-label ms, lag ms) of up to ``capacity`` predictions of one stream,
    in the order they came. Written by one stream's head thread, read once it has stopped (or
    up to ``count`` while it runs: rows are written before the count moves past them).
    Predictions past ``capacity`` are counted in ``overflow``, not kept."""

    def __init__(self, capacity: int):
        # np.full writes every page now: RSS includes the whole log before the first sample.
        self._rows = np.full((capacity, 3), np.nan, np.float64)
        self.count = 0
        self.overflow = 0

    def add(self, prediction: Prediction) -> None:
        if self.count == len(self._rows):
            self.overflow += 1
            return
        self._rows[self.count] = (prediction.t_scored, prediction.times.total, prediction.times.lag)
        self.count += 1

    def between(self, t0: float, t1: float) -> np.ndarray:
        """(n, 3) rows scored in [t0, t1) (monotonic seconds)."""
        rows = self._rows[: self.count]
        return rows[(rows[:, 0] >= t0) & (rows[:, 0] < t1)]


def spread(values: np.ndarray, with_max: bool = True) -> dict:
    """{'p50', 'p95'(, 'max')} of ``values`` in ms, rounded; None values when it is empty."""
    if len(values) == 0:
        summary = {"p50": None, "p95": None}
        return {**summary, "max": None} if with_max else summary
    p50, p95 = np.percentile(values, (50, 95))
    summary = {"p50": round(float(p50), 2), "p95": round(float(p95), 2)}
    if with_max:
        summary["max"] = round(float(np.max(values)), 2)
    return summary


def latency_summary(rows: np.ndarray) -> dict:
    """Predictions, glass-to-label latency and lag of ``rows`` (LatencyLog.between)."""
    return {"predictions": int(len(rows)), "latency_ms": spread(rows[:, 1]), "lag_ms": spread(rows[:, 2])}


def batch_sizes(before: BatchStats, after: BatchStats) -> dict:
    """Per part, the batches of the engine calls made between two snapshots: calls, mean and
    max batch (items per call), and how many calls had each size ({size: calls}; the last
    size, max_batch, also counts single requests larger than it)."""
    return {new.part: _part_sizes(old, new) for old, new in zip(before.parts, after.parts)}


def _part_sizes(old: PartBatchStats, new: PartBatchStats) -> dict:
    counts = np.subtract(new.sizes, old.sizes)
    calls, items = new.calls - old.calls, new.items - old.items
    used = np.flatnonzero(counts)
    return {"calls": int(calls), "mean": round(items / calls, 3) if calls else None,
            "max": int(used[-1] + 1) if len(used) else None,
            "histogram": {str(int(size) + 1): int(counts[size]) for size in used}}


def rss_mb() -> float | None:
    """This process's resident memory now (VmRSS in /proc/self/status), MiB; None where
    /proc is not there (not Linux)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024.0, 1)  # the kernel reports kB
    return None


def rss_summary(samples: list[tuple[float, int, float | None]]) -> dict:
    """Samples (seconds since the measured run began, frames so far, RSS MiB) -> start (the
    first sample, taken after the warm-up), min, max, end, growth (end - start) and the
    samples themselves as [s, frames, MiB]."""
    values = [rss for _, _, rss in samples if rss is not None]
    if not values:
        return {"available": False, "why": "no /proc/self/status here"}
    return {"start_mb": values[0], "min_mb": min(values), "max_mb": max(values), "end_mb": values[-1],
            "growth_mb": round(values[-1] - values[0], 1),
            "samples": [[round(t, 1), frames, rss] for t, frames, rss in samples]}


def machine() -> dict:
    """The CPU model and cores this runs on (the first 'model name' of /proc/cpuinfo, which is
    what lscpu prints; None where there is no /proc), and the load average when it started: the
    figures mean little without them on a shared machine."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load_average_at_start": load_average()}


def machine_busy_s() -> float | None:
    """CPU seconds every process on the machine has spent busy since boot, all cores (from
    /proc/stat: everything but idle and iowait); None where there is no /proc. Beside this
    process's own time.process_time() it says how much of the cores other users took."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in fields[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_use(elapsed: float, own_s: float, busy_s: float | None) -> dict:
    """Cores (CPU seconds per second) this process and everyone else used over ``elapsed``
    seconds, from the differences of time.process_time() and machine_busy_s()."""
    others = None if busy_s is None else round(max(0.0, busy_s - own_s) / elapsed, 2)
    return {"this_process": round(own_s / elapsed, 2), "others": others}


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the OS has none): other users' work
    on a shared machine shows here, and every run reports it at its end."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


class Sampler:
    """Resident memory every ``every_s`` seconds, with ``frames()`` (frames so far) beside it:
    ``samples`` = [(seconds since ``start``, frames, MiB)]."""

    def __init__(self, every_s: float, frames: Callable[[], int]):
        self.every_s, self._frames = every_s, frames
        self.samples: list[tuple[float, int, float | None]] = []
        self._t0 = self._next = None

    def start(self, now: float) -> None:
        self._t0, self._next = now, now
        self.tick(now)

    def tick(self, now: float, force: bool = False) -> None:
        if self._t0 is not None and (force or now >= self._next):
            self.samples.append((now - self._t0, self._frames(), rss_mb()))
            self._next = max(self._next + self.every_s, now)  # no burst after a stall

    def summary(self) -> dict:
        return {**rss_summary(self.samples), "every_s": self.every_s}


def check_running(streamset: StreamSet, may_end: bool = False) -> None:
    """PipelineError naming the first stream that failed (or ended, unless ``may_end``): a
    benchmark of streams that stopped would measure nothing."""
    for stream in streamset.streams:
        status = stream.status()
        if status.state is StreamState.FAILED or (status.state is StreamState.ENDED and not may_end):
            raise PipelineError(f"stream {status.name} ({stream.source.description}) {status.state.value} "
                                f"during the benchmark: {status.error or 'its source ended'}")


def hold(streamset: StreamSet, seconds: float | None, on_tick: Callable[[float], None] | None = None,
         until_done: bool = False) -> float:
    """Let the streams run for ``seconds`` (None: until every stream ended, with
    ``until_done``), checking them and calling ``on_tick(now)`` every TICK_S. Returns the
    monotonic time it stopped holding."""
    end = None if seconds is None else time.monotonic() + seconds
    while True:
        now = time.monotonic()
        if end is not None and now >= end:
            return now
        if until_done and streamset.done:
            check_running(streamset, may_end=True)
            return now
        time.sleep(TICK_S if end is None else min(TICK_S, end - now))
        check_running(streamset, may_end=until_done)
        if on_tick is not None:
            on_tick(time.monotonic())


def warm_up(streamset: StreamSet, seconds: float, may_end: bool = False) -> float:
    """Hold for ``seconds`` and, past them, until every stream has scored its first window
    (or ended, with ``may_end``), at most FIRST_WINDOW_CAP_S more. Returns when it stopped."""
    now = hold(streamset, seconds, until_done=may_end)
    deadline = now + FIRST_WINDOW_CAP_S
    while now < deadline and not all(s.latest is not None or s.done for s in streamset.streams):
        now = hold(streamset, TICK_S, until_done=may_end)
    return now
