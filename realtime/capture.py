"""The capture stage: reads a source in its own thread, stamps each frame with its capture
index and monotonic capture time, and applies the drop policy.

    live sources (camera, URL, demo): the output channel is newest-wins, so the reader never
        waits on the pipeline and a camera's driver buffer never fills with stale frames;
        frames the pipeline had no time for are dropped and counted.
    files and folders: back-pressure, nothing dropped; with ``realtime`` they are paced at
        their own frame rate, as if live (and then drop like a live source).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from realtime.channel import Channel
from realtime.messages import Frame
from realtime.sources import Source
from realtime.stage import Control, Stage


@dataclass(frozen=True)
class CaptureSettings:
    """``max_frames``: stop after this many frames (None: until the source ends).
    ``realtime``: pace a file at its own fps (``fallback_fps`` when it has none)."""

    max_frames: int | None = None
    realtime: bool = False
    fallback_fps: float = 25.0
    file_queue: int = 4  # frames decoded ahead of the flow stage
    live_queue: int = 1  # newest wins: one waiting frame is the freshest possible

    def paced_like_live(self, source: Source) -> bool:
        return source.live or self.realtime


def capture_channel(source: Source, settings: CaptureSettings) -> Channel[Frame]:
    """The channel out of the capture stage, with the policy the source calls for."""
    if settings.paced_like_live(source):
        return Channel(settings.live_queue, drop_oldest=True)
    return Channel(settings.file_queue)


class CaptureStage(Stage):
    """Source -> Frame(index, t_capture, bgr, decode_ms, truth) into ``outbox``; indices count
    from ``first_index`` (a reconnected stream continues its numbering, so an index names one
    frame for the whole life of the stream)."""

    def __init__(self, control: Control, source: Source, outbox: Channel[Frame],
                 settings: CaptureSettings, on_capture: Callable[[Frame], None], first_index: int = 0):
        super().__init__("capture", control, outbox)
        self.source = source
        self.settings = settings
        self._on_capture = on_capture
        self.first_index = first_index
        self.captured = 0

    def _pace_interval(self) -> float | None:
        """Seconds between reads for a source that does not pace itself: a generator, or a
        file played as if live. Cameras and streams deliver at their own rate."""
        if self.source.paced or (self.settings.realtime and not self.source.live):
            return 1.0 / (self.source.fps or self.settings.fallback_fps)
        return None

    def loop(self) -> None:
        interval = self._pace_interval()
        newest_wins = self.settings.paced_like_live(self.source)
        limit = self.settings.max_frames
        next_due = time.monotonic()
        while not self.control.stop.is_set() and (limit is None or self.captured < limit):
            if interval is not None:
                # Wait for the frame's due time, so t_capture is when a camera would have shot it.
                delay = next_due - time.monotonic()
                if delay > 0 and self.control.stop.wait(delay):
                    return
                next_due = max(next_due, time.monotonic()) + interval
            started = time.perf_counter()
            got = self.source.read()
            if got is None:
                return  # end of a finite source
            decode_ms = (time.perf_counter() - started) * 1000.0
            t_capture = time.monotonic()
            bgr, truth = got
            frame = Frame(self.first_index + self.captured, t_capture, bgr, decode_ms, truth)
            self.captured += 1
            self._on_capture(frame)
            if newest_wins:
                self.outbox.put(frame, 0.0)  # never waits: drops (and counts) the oldest
            elif not self.emit(frame):
                return

    def finish(self) -> None:
        self.source.close()
