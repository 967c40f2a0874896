"""The capture stage: reads a source in its own thread, stamps each frame with its source frame
number, when it was due and when it was read, and applies the drop policy.

    live sources (camera, URL, demo): the output channel is newest-wins, so the reader never
        waits on the pipeline and a camera's driver buffer never fills with stale frames;
        frames the pipeline had no time for are dropped and counted.
    files and folders: back-pressure, nothing dropped; with ``realtime`` they are paced at
        their own frame rate, as if live (and then drop like a live source).

A paced source (a file or folder with ``realtime``, a generator such as the demo) keeps a fixed
schedule: frame k is due at t0 + k / fps, t0 being when frame 0 was due. A read that returns
late does not move the schedule (re-basing it on every late read let a file decoded at 110 fps
of its 120 drift 5 s behind the clock in a minute while its latency looked like 25 ms). When the
capture is more than one frame interval behind, a source that skips cheaply skips the frames
whose time has passed, counted as drops, and is back on schedule; ``Frame.index`` stays the
source's frame number, so the skipped ones are gaps. A generator that cannot skip cheaply (the
demo) is a simulated camera: when it falls behind, its schedule moves to when it can render,
as a real camera that is too slow sends fewer frames (the input fps shows it), so its lag
stays under one interval.
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
    """``max_frames``: stop after this many source frames, read or skipped (None: until the
    source ends). ``realtime``: pace a file at its own fps (``fallback_fps`` when it has none)."""

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
    """Source -> Frame(index, t_capture, t_due, bgr, decode_ms, truth) into ``outbox``; indices
    count from ``first_index`` (a reconnected stream continues its numbering, so an index names
    one frame for the whole life of the stream).

    ``captured``: source frames taken so far, read or skipped (``first_index + captured`` is the
    next frame's index); ``skipped``: those passed over to catch up, also counted in
    ``outbox.dropped``."""

    def __init__(self, control: Control, source: Source, outbox: Channel[Frame],
                 settings: CaptureSettings, on_capture: Callable[[Frame], None], first_index: int = 0):
        super().__init__("capture", control, outbox)
        self.source = source
        self.settings = settings
        self._on_capture = on_capture
        self.first_index = first_index
        self.captured = 0
        self.skipped = 0

    def _pace_interval(self) -> float | None:
        """Seconds between reads for a source that does not pace itself: a generator, or a
        file played as if live. Cameras and streams deliver at their own rate."""
        if self.source.paced or (self.settings.realtime and not self.source.live):
            return 1.0 / (self.source.fps or self.settings.fallback_fps)
        return None

    def loop(self) -> None:
        interval = self._pace_interval()
        # Never for a file read with back-pressure (interval None): it must not lose a frame.
        catch_up = interval is not None and self.source.skips_cheaply
        newest_wins = self.settings.paced_like_live(self.source)
        limit = self.settings.max_frames
        t0 = time.monotonic()  # when frame 0 is due
        while not self.control.stop.is_set() and (limit is None or self.captured < limit):
            t_due = None
            if interval is not None:
                t_due = t0 + self.captured * interval
                behind = time.monotonic() - t_due
                if behind < 0 and self.control.stop.wait(-behind):
                    return
                if behind > interval and catch_up:
                    if not self._skip(int(behind / interval), limit):
                        return  # the source ended among the skipped frames
                    t_due = t0 + self.captured * interval
                elif behind > interval:
                    # A generator that renders slower than its fps is a camera that delivers
                    # fewer frames, not a backlog: its frame is due when it can be made. Held to
                    # the old schedule, a demo on a starved machine ended a 30-min run 527 s
                    # "behind" with every frame fresh. The input fps shows the slower camera.
                    t0 += behind
                    t_due = t0 + self.captured * interval
            started = time.perf_counter()
            got = self.source.read()
            if got is None:
                return  # end of a finite source
            decode_ms = (time.perf_counter() - started) * 1000.0
            t_capture = time.monotonic()
            bgr, truth = got
            # A live source's frame is due when it arrives: only a paced one has a schedule.
            frame = Frame(self.first_index + self.captured, t_capture, t_capture if t_due is None else t_due,
                          bgr, decode_ms, truth)
            self.captured += 1
            self._on_capture(frame)
            if newest_wins:
                self.outbox.put(frame, 0.0)  # never waits: drops (and counts) the oldest
            elif not self.emit(frame):
                return

    def _skip(self, count: int, limit: int | None) -> bool:
        """Pass over ``count`` frames (fewer if ``limit`` is near: the last one is read). Then
        the next read is the frame due at most one interval ago, or later if skipping itself
        was slow; the next round's check catches that, and a read always follows a round, so
        even a source that skips slower than its fps still delivers frames. False: the source
        ended."""
        if limit is not None:
            count = min(count, limit - self.captured - 1)
        for _ in range(count):
            if not self.source.skip():
                return False
            self.captured += 1
            self.skipped += 1
            self.outbox.count_dropped(1)
        return True

    def finish(self) -> None:
        self.source.close()
