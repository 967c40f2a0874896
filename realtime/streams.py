"""A named, supervised stream: one source scored by pipelines, reopened when a live source drops.

    CONNECTING ──open──▶ LIVE ──file or folder ends, --max-frames, stop()──▶ ENDED
        │                  │ a live source (camera, URL) drops or stalls
        │                  ▼
        │            RECONNECTING ──reopened (backoff: RetryPolicy)──▶ LIVE, on a NEW pipeline
        │                  │ max_retries reopen attempts failed
        ▼                  ▼
      FAILED ◀── the FIRST open fails (bad input: reported, never retried), or any other error

Each connection runs its own Pipeline (realtime.pipeline), so the frame and flow rings, the flow
tracker, the feature cache and the event detector start afresh after a gap: no window spans a
reconnect, and the first prediction after one comes when a full window has been seen again.
Capture indices continue across connections, and the statistics (frames, drops, latencies) and
results (history, events) accumulate in one PipelineStats and one ResultStore for the stream.

One supervisor thread per stream opens, runs, watches and reopens; every read below (latest
frame, latest prediction, history, events, stats, status) may come from any thread.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, replace
from enum import Enum
from typing import Callable

from engines.base import Backend
from realtime.errors import PipelineError
from realtime.flowbatch import FlowClient
from realtime.messages import Frame, Prediction
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.results import ResultStore
from realtime.sources import Source
from realtime.stats import PipelineStats, StatsSnapshot
from realtime.threads import DaemonThread
from twostream.errors import SourceError
from twostream.events import Event
from twostream.preprocess import FlowSpec


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between reopen attempts of a dropped live source: attempt n (0 first) waits
    ``min(max_s, initial_s * factor**n)`` times a random factor in [1 - jitter, 1]; after
    ``max_retries`` failed attempts (None: never) the stream fails.

    Why a 1 s cap: a viewer wants predictions back within 2 s of a camera's return, and after
    the reopen one window (23 frames, 0.92 s at 25 fps) must be seen before the first
    prediction, so a reopen must come within about 1 s of the return; one TCP connection
    attempt a second per camera is negligible load on any server. The jitter spreads the
    attempts of many cameras behind one recovering server so they do not arrive in step.
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 1.0
    jitter: float = 0.25
    max_retries: int | None = None

    def __post_init__(self) -> None:
        if not (self.initial_s > 0 and self.max_s >= self.initial_s and self.factor >= 1):
            raise PipelineError(f"retry delays need 0 < initial_s <= max_s and factor >= 1, got {self}")
        if not 0 <= self.jitter < 1:
            raise PipelineError(f"retry jitter must be in [0, 1), got {self.jitter}")
        if self.max_retries is not None and self.max_retries < 0:
            raise PipelineError(f"max_retries must be >= 0 or None, got {self.max_retries}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before reopen attempt ``attempt`` (0, 1, ...)."""
        # The exponent stops where the cap is reached: factor**n overflows a float for large n,
        # and a stream retrying forever reaches any n.
        steps = math.ceil(math.log(self.max_s / self.initial_s, self.factor)) if self.factor > 1 else 0
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, steps))
        return base * rng.uniform(1.0 - self.jitter, 1.0)

    def gives_up(self, failed_attempts: int) -> bool:
        return self.max_retries is not None and failed_attempts >= self.max_retries


class StreamState(Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True)
class StreamStatus:
    """``error``: the last error line (why it is reconnecting or failed; None otherwise);
    ``reconnects``: times the source was reopened after a drop; ``since``: monotonic seconds
    when ``state`` began."""

    name: str
    state: StreamState
    error: str | None
    reconnects: int
    since: float

    @property
    def finished(self) -> bool:
        return self.state in (StreamState.ENDED, StreamState.FAILED)


def one_line(error: BaseException) -> str:
    """An error as one line: its message's first line, or its type's name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Stream:
    """``source`` scored under ``name`` on ``engine_client`` (a Backend; the stream closes it
    when it finishes, e.g. a realtime.sharedengine.EngineClient). ``on_prediction(name,
    prediction)`` runs in the stream's head thread, ``on_status(status)`` in its supervisor
    thread at every state change. ``settings.capture.max_frames`` counts over all connections.
    ``flow_client``: torch flow's shared, batching worker (realtime.flowbatch; closed with the
    stream too), None: the stream's own calls.
    Raises ContractMismatch at construction (unless ``flow_spec`` was resolved already)."""

    def __init__(self, name: str, source: Source, engine_client: Backend,
                 settings: PipelineSettings = PipelineSettings(), retry: RetryPolicy = RetryPolicy(),
                 on_prediction: Callable[[str, Prediction], None] | None = None,
                 on_status: Callable[[StreamStatus], None] | None = None, *,
                 rng: random.Random | None = None, flow_spec: FlowSpec | None = None,
                 flow_client: FlowClient | None = None):
        self.name, self.source, self.backend, self.flow_client = name, source, engine_client, flow_client
        self.settings, self.retry = settings, retry
        self.flow_spec = flow_spec if flow_spec is not None else settings.flow.resolve(engine_client.contract)
        self.stats_collector = PipelineStats(settings.stats_window)
        self.results = ResultStore(settings.history, settings.events)
        self._on_prediction, self._on_status = on_prediction, on_status
        self._rng = rng if rng is not None else random.Random()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._status = StreamStatus(name, StreamState.CONNECTING, None, 0, time.monotonic())
        self._pipeline: Pipeline | None = None
        self._captured_before = 0  # frames of the connections that ended
        self._starts: list[int] = []
        self._thread = DaemonThread(self._main, f"stream {name}")
        self.unjoined_threads: tuple[str, ...] = ()

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Stream":
        if self._thread.started:
            raise PipelineError(f"stream {self.name} already started")
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the stream to stop without waiting (``stop`` waits)."""
        self._stop.set()

    def stop(self, timeout: float | None = None) -> tuple[str, ...]:
        """Stop capturing, let queued frames drain, join every thread. Returns the names of
        threads that did not end in time (empty when all joined). Idempotent."""
        self._stop.set()
        if not self._thread.started:
            self._set(StreamState.ENDED, None)
            self.backend.close()
            return ()
        if not self._thread.join(self.settings.join_timeout_s + 5.0 if timeout is None else timeout):
            return (*self.unjoined_threads, self._thread.name)
        return self.unjoined_threads

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the stream ended or failed. True when it has."""
        self._thread.join(timeout)
        return self.done

    @property
    def done(self) -> bool:
        return self._status.finished and not self._thread.alive

    # ---- the supervisor --------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._supervise()
        except BaseException as exc:  # noqa: BLE001 - whatever ends a stream becomes its status
            self._set(StreamState.FAILED, one_line(exc))
        finally:
            if not self.unjoined_threads:
                self.backend.close()  # a thread still inside a call would lose its engine
                if self.flow_client is not None:
                    self.flow_client.close()

    def _supervise(self) -> None:
        self._set(StreamState.CONNECTING, None)  # announced: a viewer sees the stream from its start
        try:
            self.source.open()
        except Exception as exc:  # noqa: BLE001 - bad input (a typo'd URL, no camera): report it
            self._set(StreamState.FAILED, one_line(exc))
            return
        while True:
            if self._stop.is_set():  # asked to stop while it was opening
                self.source.close()
                self._set(StreamState.ENDED, None)
                return
            error = self._run_connection()
            if self.unjoined_threads:
                # A stage thread is stuck (in a driver read?): the source cannot be reopened safely.
                self._set(StreamState.FAILED, f"threads did not stop: {', '.join(self.unjoined_threads)}"
                             + (f" (after: {one_line(error)})" if error is not None else ""))
                return
            if self._stop.is_set() or error is None or self._frames_left() == 0:
                self._set(StreamState.ENDED, None)
                return
            if not (isinstance(error, SourceError) and self.source.live and not self.source.paced):
                self._set(StreamState.FAILED, one_line(error))
                return
            self._set(StreamState.RECONNECTING, one_line(error))
            if not self._reopen():
                return

    def _run_connection(self) -> BaseException | None:
        """Run one pipeline on the open source until it ends; the error that ended it, if any."""
        settings = self.settings
        left = self._frames_left()
        if left is not None:
            settings = replace(settings, capture=replace(settings.capture, max_frames=left))
        try:
            pipeline = Pipeline(self.source, self.backend, settings, on_prediction=self._publish,
                                stats=self.stats_collector, results=self.results,
                                first_index=self._captured_before, flow_spec=self.flow_spec,
                                flow_client=self.flow_client)
        except BaseException:
            self.source.close()
            raise
        pipeline.start()
        self._starts.append(self._captured_before)
        self._pipeline = pipeline
        with self._lock:
            reconnects = self._status.reconnects + (self._status.state is StreamState.RECONNECTING)
        self._set(StreamState.LIVE, None, reconnects)
        error: BaseException | None = None
        try:
            while not pipeline.wait(timeout=self.settings.poll_s * 2) and not self._stop.is_set():
                pass
        except BaseException as exc:  # noqa: BLE001 - what ended this connection
            error = exc
        self.unjoined_threads = pipeline.stop()
        if error is None:
            try:
                pipeline.wait(timeout=0)  # an error that raced the stop
            except BaseException as exc:  # noqa: BLE001
                error = exc
        self._pipeline = None  # before the drops are retired, so stats() never counts them twice
        self._captured_before += pipeline.frames_captured
        self.stats_collector.retire_drops(pipeline.dropped)
        return error

    def _reopen(self) -> bool:
        """Reopen the source with the retry policy. True once open; False when stopped
        (ENDED) or out of retries (FAILED)."""
        failed = 0
        last = self._status.error
        while not self.retry.gives_up(failed):
            if self._stop.wait(self.retry.delay(failed, self._rng)):
                self._set(StreamState.ENDED, None)
                return False
            self.source.close()  # idempotent: the capture stage closed it already
            try:
                self.source.open()
                return True
            except SourceError as exc:
                failed += 1
                last = one_line(exc)
                with self._lock:  # the reason is news; the state is not: no status callback
                    self._status = replace(self._status, error=last)
        self._set(StreamState.FAILED, f"gave up after {failed} reconnect attempts: {last}")
        return False

    def _frames_left(self) -> int | None:
        limit = self.settings.capture.max_frames
        return None if limit is None else max(0, limit - self._captured_before)

    def _publish(self, prediction: Prediction) -> None:
        if self._on_prediction is not None:
            self._on_prediction(self.name, prediction)

    def _set(self, state: StreamState, error: str | None, reconnects: int | None = None) -> None:
        with self._lock:
            old = self._status
            if old.finished:
                return  # ENDED and FAILED are final
            status = StreamStatus(self.name, state, error, old.reconnects if reconnects is None else reconnects,
                                  time.monotonic())
            self._status = status
        if self._on_status is not None:
            self._on_status(status)

    # ---- what a viewer reads ---------------------------------------------------------------
    def status(self) -> StreamStatus:
        return self._status

    @property
    def latest(self) -> Prediction | None:
        return self.results.latest

    @property
    def latest_frame(self) -> Frame | None:
        return self.results.latest_frame

    def next_prediction(self, after_index: int = -1, timeout: float = 1.0) -> Prediction | None:
        """The newest prediction whose frame index is above ``after_index``, waiting up to
        ``timeout`` s for one."""
        return self.results.wait_for(lambda p: p.index > after_index, timeout)

    def history(self) -> tuple[Prediction, ...]:
        return self.results.history()

    def events(self) -> tuple[Event, ...]:
        return self.results.events()

    def stats(self) -> StatsSnapshot:
        """Over every connection so far (drops included)."""
        pipeline = self._pipeline
        return self.stats_collector.snapshot(pipeline.dropped if pipeline is not None else 0)

    @property
    def frames_captured(self) -> int:
        pipeline = self._pipeline
        return self._captured_before + (pipeline.frames_captured if pipeline is not None else 0)

    @property
    def connection_starts(self) -> tuple[int, ...]:
        """The capture index of each connection's first frame (0, then one per reconnect)."""
        return tuple(self._starts)

    @property
    def flow_method(self) -> str:
        return self.flow_spec.method
