"""What the page shows of one running stream (realtime.streams.Stream): its newest annotated
frame as a JPEG, a small thumbnail for the grid, and its statistics.

One StreamView per stream, shared by every tab that watches it. Whoever asks first after a new
frame was captured draws the overlay and encodes it once; every viewer then gets the same bytes,
and nobody gets a frame twice. Thumbnails are drawn the same way at most once per
``thumb_every_s`` however many tabs show the grid, so a tab costs the process no per-frame work
of its own.

``token`` names the view in the live-view routes (ui.routes). It is unguessable, so a tab can
watch only the views the page gave it: every process stream, and its own.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

import cv2

from realtime.messages import Frame
from realtime.stats import StatsSnapshot
from realtime.streams import Stream, StreamStatus
from ui.overlay import OverlayInfo, OverlaySettings, annotate, encode_jpeg


@dataclass(frozen=True)
class ViewSettings:
    """``poll_s``: how often a waiting viewer looks for a new frame; ``stats_refresh_s``: how
    old the statistics a viewer gets may be; ``thumb_size`` (W, H) and ``thumb_every_s``: the
    grid's thumbnails, redrawn at most that often."""

    overlay: OverlaySettings = field(default_factory=OverlaySettings)
    jpeg_quality: int = 80
    poll_s: float = 0.005
    stats_refresh_s: float = 0.5
    thumb_size: tuple[int, int] = (320, 240)
    thumb_quality: int = 70
    thumb_every_s: float = 1.0


class StreamView:
    """The page's handle on ``stream``. ``owner``: the tab (Gradio session hash) whose own
    source it is, None for a process stream; ``label`` what the grid calls it."""

    def __init__(self, stream: Stream, settings: ViewSettings = ViewSettings(), *,
                 owner: str | None = None, label: str | None = None):
        self.stream = stream
        self.settings = settings
        self.owner = owner
        self.label = label if label is not None else stream.name
        self.token = secrets.token_urlsafe(16)
        self.last_request = time.monotonic()  # a frame request counts as a sign of its tab
        self._closed = threading.Event()
        self._lock = threading.Lock()  # stats and thumbnail bookkeeping
        self._encode_lock = threading.Lock()
        self._shown: Frame | None = None
        self._jpeg = b""
        self.jpeg_seq = 0  # JPEGs encoded so far: one per distinct frame shown
        self._thumb = b""
        self._thumb_frame: Frame | None = None
        self._thumb_at = 0.0
        self.thumb_seq = 0
        self._stats: StatsSnapshot | None = None
        self._stats_at = 0.0

    @property
    def name(self) -> str:
        return self.stream.name

    def status(self) -> StreamStatus:
        return self.stream.status()

    def close(self) -> None:
        """No more frames for anybody (the stream was removed): waiting viewers return now."""
        self._closed.set()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def stats(self) -> StatsSnapshot:
        """The stream's statistics, at most ``stats_refresh_s`` old (a snapshot sorts the
        latency window: not something every tab should redo every second)."""
        now = time.monotonic()
        with self._lock:
            if self._stats is None or now - self._stats_at >= self.settings.stats_refresh_s:
                self._stats, self._stats_at = self.stream.stats(), now
            return self._stats

    # ---- the live view ---------------------------------------------------------------------
    def frame_pending(self) -> bool:
        """True when a frame newer than the last one encoded was captured. Cheap (no lock, no
        copy), so a viewer can wait in its event loop and spend a thread only on encoding."""
        frame = self.stream.latest_frame
        return frame is not None and frame is not self._shown

    def frame_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest annotated frame as (seq, JPEG) once its seq is above ``after``; None if
        no new frame came within ``timeout`` s or the view closed."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            frame = self.stream.latest_frame
            if frame is not None and frame is not self._shown:
                self._encode(frame)
            if self.jpeg_seq > after:
                return self.jpeg_seq, self._jpeg
            if time.monotonic() >= deadline:
                return None
            # Polling, because a stream publishes frames by reference, not by event: 5 ms is
            # well under a frame period and costs nothing measurable.
            self._closed.wait(self.settings.poll_s)
        return None

    def _annotated(self, frame: Frame):
        snapshot = self.stats()
        info = OverlayInfo(fps=snapshot.input_fps, accuracy=snapshot.accuracy, frame_index=frame.index)
        return annotate(frame.bgr, self.stream.latest, info, self.settings.overlay)

    def _encode(self, frame: Frame) -> None:
        with self._encode_lock:  # one encode per frame: the others wait for its bytes
            if frame is self._shown:
                return  # another viewer encoded it while we waited for the lock
            self._jpeg = encode_jpeg(self._annotated(frame), self.settings.jpeg_quality)
            self._shown = frame
            self.jpeg_seq += 1

    # ---- the grid's thumbnail --------------------------------------------------------------
    def thumbnail(self, after: int) -> tuple[int, bytes] | None:
        """(seq, small annotated JPEG) when one newer than ``after`` exists; None when there
        is no frame yet or nothing newer. Redrawn at most every ``thumb_every_s``."""
        now = time.monotonic()
        frame = self.stream.latest_frame
        with self._lock:
            stale = frame is not None and frame is not self._thumb_frame
            due = stale and now - self._thumb_at >= self.settings.thumb_every_s
            if due:
                self._thumb_at = now  # claimed: concurrent askers get the current one
        if due:
            small = cv2.resize(self._annotated(frame), self.settings.thumb_size, interpolation=cv2.INTER_AREA)
            jpeg = encode_jpeg(small, self.settings.thumb_quality)
            with self._lock:
                self._thumb, self._thumb_frame = jpeg, frame
                self.thumb_seq += 1
        with self._lock:
            if self.thumb_seq > after:
                return self.thumb_seq, self._thumb
        return None
