"""One browser session's live recognizer: its pipeline, the JPEG of its newest annotated frame,
and its status.

A session owns its backend (a backend allows one call per model part at a time, so pipelines of
different sessions must not share one) and at most one running pipeline. Switching source stops
and joins the old pipeline before the new one starts. ``close`` (the tab went away) stops and
joins everything; it is idempotent.

The live view reads ``frame_jpeg``: whoever asks first after a new frame was captured draws the
overlay and encodes it once; every viewer of the session then gets the same bytes, and nobody
gets a frame twice.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from engines.base import Backend
from realtime.messages import Frame, Prediction
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import Source, SourceSettings
from realtime.stats import StatsSnapshot
from twostream.errors import RecognizerError
from twostream.events import Event
from ui.overlay import OverlayInfo, OverlaySettings, annotate, encode_jpeg
from ui.webcam import BrowserWebcamSource

# Errors a source or a model may raise while opening or running: shown as a status line.
EXPECTED_ERRORS = (RecognizerError, OSError, ValueError)

IDLE, RUNNING, ENDED, ERROR = "idle", "running", "ended", "error"


@dataclass(frozen=True)
class SessionSettings:
    """``plot_span_s``: how far back the probability plot reaches (the pipeline's history is
    made long enough for it); ``poll_s``: how often a waiting viewer looks for a new frame."""

    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    source: SourceSettings = field(default_factory=SourceSettings)
    overlay: OverlaySettings = field(default_factory=OverlaySettings)
    jpeg_quality: int = 80
    poll_s: float = 0.005
    stats_refresh_s: float = 0.5
    plot_span_s: float = 30.0
    webcam_fps: float = 25.0


@dataclass(frozen=True)
class SessionStatus:
    """``state`` is IDLE, RUNNING, ENDED or ERROR; ``message`` one line for the page."""

    state: str
    message: str


class LiveSession:
    """A browser session's recognizer. ``token`` names its live view (unguessable, so one
    session cannot watch another's)."""

    def __init__(self, open_backend: Callable[[], Backend], settings: SessionSettings = SessionSettings()):
        self.token = secrets.token_urlsafe(16)
        self.settings = settings
        # 40 predictions/s upper bound keeps the whole plot span in the history.
        history = max(settings.pipeline.history, int(settings.plot_span_s * 40))
        self._pipeline_settings = dataclasses.replace(settings.pipeline, history=history)
        self._open_backend = open_backend
        self._backend: Backend | None = None
        self._switch_lock = threading.Lock()
        self._pipeline: Pipeline | None = None
        self._source: Source | None = None
        self._error: str | None = None
        self._refusal: str | None = None  # the page refused a source: shown until the next switch
        self._closed = threading.Event()
        self._jpeg_lock = threading.Lock()
        self._shown: Frame | None = None
        self._jpeg = b""
        self.jpeg_seq = 0  # JPEGs encoded so far: one per distinct frame shown
        self._stats: StatsSnapshot | None = None
        self._stats_at = 0.0
        self.unjoined_threads: tuple[str, ...] = ()

    # ---- lifecycle -------------------------------------------------------------------------
    def switch(self, source: Source) -> SessionStatus:
        """Stop the current pipeline, then score ``source``. Errors (bad URL, unreadable file,
        no camera, a model that does not load) become the status; nothing is raised."""
        with self._switch_lock:
            if self._closed.is_set():
                source.close()
                return SessionStatus(ERROR, "session closed")
            self._stop_pipeline()
            self._source, self._error, self._refusal = source, None, None
            try:
                if self._backend is None:
                    self._backend = self._open_backend()
                pipeline = Pipeline(source, self._backend, self._pipeline_settings)
                pipeline.start()
            except Exception as exc:  # noqa: BLE001 - the UI edge: any failure of a source or
                # backend (typed errors, but also e.g. cv2.error) becomes this session's status,
                # and the server goes on serving every session.
                source.close()
                self._error = f"{source.description}: {exc}" if source.description not in str(exc) else str(exc)
                return self.status()
            self._pipeline = pipeline
            with self._jpeg_lock:
                self._stats, self._stats_at = None, 0.0
            return self.status()

    def push_webcam(self, rgb) -> SessionStatus | None:
        """A frame from the browser's webcam. The first one (or the first after another source)
        switches the session to a webcam pipeline; returns the new status then, else None."""
        source = self._source
        if isinstance(source, BrowserWebcamSource) and self._pipeline is not None and not self._pipeline.done:
            source.push(rgb)
            return None
        webcam = BrowserWebcamSource(self.settings.webcam_fps, self.settings.source.read_timeout_s * 2)
        webcam.push(rgb)
        return self.switch(webcam)

    def _stop_pipeline(self) -> None:
        pipeline, source = self._pipeline, self._source
        self._pipeline = None
        if isinstance(source, BrowserWebcamSource):
            source.finish()  # unblock the capture thread's read now, not after its timeout
        if pipeline is not None:
            unjoined = pipeline.stop()
            if unjoined:
                # Threads that ignored stop may still call the backend: never reuse it.
                self.unjoined_threads += unjoined
                self._backend = None

    def close(self) -> None:
        """Stop and join the pipeline, release the backend. Idempotent."""
        self._closed.set()
        with self._switch_lock:
            self._stop_pipeline()
            if self._backend is not None:
                self._backend.close()
                self._backend = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def running(self) -> bool:
        """True while this session has pipeline threads alive."""
        pipeline = self._pipeline
        return pipeline is not None and not pipeline.done

    def refuse(self, message: str) -> SessionStatus:
        """The page refused a source for this session (not allowed, malformed): its status is
        that error until the next switch, so the page's refresh does not wipe it out, while the
        source that was running goes on."""
        self._refusal = message
        return self.status()

    # ---- what the page reads ---------------------------------------------------------------
    def status(self) -> SessionStatus:
        if self._refusal is not None:
            source = self._source
            still = f" (still running: {source.description})" if self.running and source is not None else ""
            return SessionStatus(ERROR, self._refusal + still)
        if self._error is not None:
            return SessionStatus(ERROR, self._error)
        pipeline, source = self._pipeline, self._source
        if pipeline is None or source is None:
            return SessionStatus(IDLE, "no source running")
        if not pipeline.done:
            return SessionStatus(RUNNING, f"running: {source.description}")
        try:
            pipeline.wait(timeout=0)  # re-raises the error that ended it, if any
        except Exception as exc:  # noqa: BLE001 - whatever stopped it is shown, never re-raised
            return SessionStatus(ERROR, f"stopped: {exc}")
        return SessionStatus(ENDED, f"finished: {source.description} ended after "
                                    f"{pipeline.stats_collector.snapshot(0).predictions} predictions")

    @property
    def backend_name(self) -> str:
        return self._backend.name if self._backend is not None else "not loaded"

    def stats(self) -> StatsSnapshot | None:
        """The running pipeline's statistics, at most ``stats_refresh_s`` old."""
        pipeline = self._pipeline
        if pipeline is None:
            return None
        now = time.monotonic()
        if self._stats is None or now - self._stats_at >= self.settings.stats_refresh_s:
            self._stats, self._stats_at = pipeline.stats(), now
        return self._stats

    def history(self) -> tuple[Prediction, ...]:
        pipeline = self._pipeline
        return pipeline.history() if pipeline is not None else ()

    def events(self) -> tuple[Event, ...]:
        """The running pipeline's recent gesture events, oldest first."""
        pipeline = self._pipeline
        return pipeline.events() if pipeline is not None else ()

    def latest(self) -> Prediction | None:
        pipeline = self._pipeline
        return pipeline.latest if pipeline is not None else None

    def frame_pending(self) -> bool:
        """True when a frame newer than the last one encoded was captured. Cheap (no lock, no
        copy), so a viewer can wait in its event loop and spend a thread only on encoding."""
        pipeline = self._pipeline
        frame = pipeline.latest_frame if pipeline is not None else None
        return frame is not None and frame is not self._shown

    def frame_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest annotated frame as (seq, JPEG) once its seq is above ``after``; None if
        no new frame came within ``timeout`` s or the session closed."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            pipeline = self._pipeline
            frame = pipeline.latest_frame if pipeline is not None else None
            if frame is not None and frame is not self._shown:
                self._encode(pipeline, frame)
            if self.jpeg_seq > after:
                return self.jpeg_seq, self._jpeg
            if time.monotonic() >= deadline:
                return None
            # Polling, because the pipeline publishes frames by reference, not by event:
            # 5 ms is well under a frame period and costs nothing measurable.
            self._closed.wait(self.settings.poll_s)
        return None

    def _encode(self, pipeline: Pipeline, frame: Frame) -> None:
        with self._jpeg_lock:
            if frame is self._shown:
                return  # another viewer encoded it while we waited for the lock
            snapshot = self.stats()
            info = OverlayInfo(fps=snapshot.input_fps if snapshot else 0.0,
                               accuracy=snapshot.accuracy if snapshot else None, frame_index=frame.index)
            image = annotate(frame.bgr, pipeline.latest, info, self.settings.overlay)
            self._jpeg = encode_jpeg(image, self.settings.jpeg_quality)
            self._shown = frame
            self.jpeg_seq += 1
