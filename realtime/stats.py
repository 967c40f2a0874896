"""Running statistics over a sliding window: per-stage latency and capture lag percentiles,
input and scored frame rates, drops, and live accuracy when the source knows the truth.

Fed from several stage threads and read from another (the app, the UI), so every update and
snapshot takes a lock. Storage is preallocated; nothing grows with the length of a run.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass

import numpy as np

from realtime.messages import Prediction, StageTimes


class RateMeter:
    """Events per second over the last ``window`` event times (monotonic seconds)."""

    def __init__(self, window: int):
        self._times = np.zeros(window, np.float64)
        self.count = 0

    def add(self, t: float) -> None:
        self._times[self.count % len(self._times)] = t
        self.count += 1

    def rate(self) -> float:
        held = min(self.count, len(self._times))
        if held < 2:
            return 0.0
        newest = self._times[(self.count - 1) % len(self._times)]
        oldest = self._times[(self.count - held) % len(self._times)]
        return (held - 1) / (newest - oldest) if newest > oldest else 0.0


@dataclass(frozen=True)
class StageSummary:
    """Milliseconds one stage took over the window."""

    p50: float
    p95: float
    p99: float
    mean: float


@dataclass(frozen=True)
class StatsSnapshot:
    """``stages`` pairs a stage name (StageTimes.NAMES: 'total' = glass to label, 'lag' = how
    late the capture read the frame) with its summary. ``accuracy`` is over every window wholly
    inside one gesture so far (None when the source knows no truth)."""

    stages: tuple[tuple[str, StageSummary], ...]
    input_fps: float
    scored_fps: float
    frames: int
    predictions: int
    dropped: int
    accuracy: float | None
    accuracy_windows: int

    def stage(self, name: str) -> StageSummary:
        return dict(self.stages)[name]

    def to_record(self) -> dict:
        """Plain JSON-ready form, for the command-line edges."""
        record = asdict(self)
        record["stages"] = {name: asdict(summary) for name, summary in self.stages}
        return record


class PipelineStats:
    """Collects what the stages report; ``snapshot`` summarises the last ``window`` predictions."""

    def __init__(self, window: int = 300):
        self._lock = threading.Lock()
        self._times = np.zeros((window, len(StageTimes.NAMES)), np.float64)
        self._captures = RateMeter(window)
        self._scored = RateMeter(window)
        self._correct = 0
        self._judged = 0
        self._retired_drops = 0  # drops of earlier pipelines of the same stream

    def retire_drops(self, dropped: int) -> None:
        """A pipeline that fed these stats ended with ``dropped`` frames dropped: keep them in
        the running count (a reconnected stream's next pipeline starts its own from 0)."""
        with self._lock:
            self._retired_drops += dropped

    @property
    def retired_drops(self) -> int:
        return self._retired_drops

    def on_capture(self, t_capture: float) -> None:
        with self._lock:
            self._captures.add(t_capture)

    def on_prediction(self, prediction: Prediction) -> None:
        with self._lock:
            self._times[self._scored.count % len(self._times)] = prediction.times.as_tuple()
            self._scored.add(prediction.t_scored)
            if prediction.window_pure:
                self._judged += 1
                self._correct += prediction.label == prediction.true_label

    def snapshot(self, dropped: int) -> StatsSnapshot:
        """``dropped``: the running pipeline's drops (retired ones are added here)."""
        with self._lock:
            dropped += self._retired_drops
            held = self._times[: min(self._scored.count, len(self._times))].copy()
            input_fps, scored_fps = self._captures.rate(), self._scored.rate()
            frames, predictions = self._captures.count, self._scored.count
            correct, judged = self._correct, self._judged
        stages = []
        for column, name in enumerate(StageTimes.NAMES):
            values = held[:, column]
            if len(values):
                p50, p95, p99 = np.percentile(values, (50, 95, 99))
                summary = StageSummary(float(p50), float(p95), float(p99), float(values.mean()))
            else:
                summary = StageSummary(0.0, 0.0, 0.0, 0.0)
            stages.append((name, summary))
        return StatsSnapshot(tuple(stages), input_fps, scored_fps, frames, predictions, dropped,
                             correct / judged if judged else None, judged)
