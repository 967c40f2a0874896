"""What a viewer reads of a running recognizer: the newest captured frame, the newest
prediction, the recent predictions and the recent gesture events.

Written by the capture and head threads, read from any thread (the app, the page). A Pipeline
makes its own; a supervised stream (realtime.streams) hands the same store to every pipeline
it builds across reconnects, so what a viewer sees does not reset when a camera drops.
Bounded: ``history`` predictions and ``events`` events, nothing grows with a run's length.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable

from realtime.messages import Frame, Prediction
from twostream.events import Event


class ResultStore:
    """The newest frame and prediction, and the last ``history`` predictions and ``events``
    gesture events, oldest first."""

    def __init__(self, history: int = 256, events: int = 32):
        self._cond = threading.Condition()
        self._latest: Prediction | None = None
        self._latest_frame: Frame | None = None
        self._history: deque[Prediction] = deque(maxlen=history)
        self._events: deque[Event] = deque(maxlen=events)

    def on_capture(self, frame: Frame) -> None:
        self._latest_frame = frame  # one reference assignment: atomic, no lock needed

    def publish(self, prediction: Prediction) -> None:
        with self._cond:
            self._latest = prediction
            self._history.append(prediction)
            if prediction.event is not None:
                self._log_event(prediction.event)
            self._cond.notify_all()

    def _log_event(self, event: Event) -> None:
        """An end replaces its own start in the log (one entry per gesture)."""
        last = self._events[-1] if self._events else None
        if (event.end_frame is not None and last is not None and last.end_frame is None
                and (last.label, last.start_frame) == (event.label, event.start_frame)):
            self._events[-1] = event
        else:
            self._events.append(event)

    @property
    def latest(self) -> Prediction | None:
        """The newest prediction (None before the first complete window)."""
        return self._latest

    @property
    def latest_frame(self) -> Frame | None:
        """The newest captured frame (for a live view; it may be newer than ``latest``)."""
        return self._latest_frame

    def wait_for(self, newer: Callable[[Prediction], bool], timeout: float) -> Prediction | None:
        """The newest prediction once ``newer(it)`` holds, waiting up to ``timeout`` s; else None.
        (A Pipeline asks for a higher ``seq``; a supervised stream for a higher ``index``, because
        ``seq`` restarts with each pipeline and capture indices continue across reconnects.)"""
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None and newer(self._latest), timeout)
            latest = self._latest
        return latest if latest is not None and newer(latest) else None

    def history(self) -> tuple[Prediction, ...]:
        with self._cond:
            return tuple(self._history)

    def events(self) -> tuple[Event, ...]:
        """The recent gesture events, oldest first; the open one (if any) has end_frame None."""
        with self._cond:
            return tuple(self._events)
