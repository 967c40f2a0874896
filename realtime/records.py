"""The JSON-ready forms of what the runtime reports, for the command-line edges (app.py's
headless lines): a prediction, a stream's status change, a stream's summary.
"""

from __future__ import annotations

from realtime.messages import Prediction
from realtime.stats import StatsSnapshot
from realtime.streams import StreamStatus


def prediction_record(prediction: Prediction, judged: list[int], stream: str = "0") -> dict:
    """The JSON line for one prediction of ``stream``. ``judged`` = [correct, total] so far
    over windows wholly inside one gesture (updated here for sources that know the truth)."""
    times = prediction.times
    record = {
        "stream": stream,
        "frame": prediction.index,
        "window_start": prediction.window_start,
        "t_capture": round(prediction.t_capture, 6),
        "t_scored": round(prediction.t_scored, 6),
        "label": prediction.label,
        "score": round(prediction.score, 5),
        "topk": [[label, round(p, 5)] for label, p in prediction.topk],
        "latency_ms": {name: round(getattr(times, name), 3) for name in times.LATENCY},
        "lag_ms": round(times.lag, 3),
        "dropped": prediction.dropped,
        "active": prediction.active,
    }
    event = prediction.event
    if event is not None:
        record["event"] = {"type": event.kind, "label": event.label, "start_frame": event.start_frame,
                           "end_frame": event.end_frame, "peak_score": round(event.peak_score, 5)}
    if prediction.true_label is not None:
        record["true_label"] = prediction.true_label
        record["window_pure"] = prediction.window_pure
        if prediction.window_pure:
            judged[0] += prediction.label == prediction.true_label
            judged[1] += 1
        record["accuracy"] = round(judged[0] / judged[1], 4) if judged[1] else None
    return record


def status_record(status: StreamStatus) -> dict:
    """The JSON line of a stream's state change; ``t`` is when it began (time.monotonic())."""
    return {"stream": status.name, "status": status.state.value, "error": status.error,
            "reconnects": status.reconnects, "t": round(status.since, 6)}


def summary_record(status: StreamStatus, stats: StatsSnapshot, **fields) -> dict:
    """A stream's summary: who it is and how it ended, its statistics, then ``fields``."""
    record = {"stream": status.name, "state": status.state.value, "error": status.error,
              "reconnects": status.reconnects}
    record.update(stats.to_record())
    record.update(fields)
    return record
