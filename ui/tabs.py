"""Every browser tab's record, and the streams tabs start on sources of their own.

A tab (one Gradio session) WATCHES the process's streams: its record says which stream it
shows large, when it last gave a sign of life and what it may have to be told. Loading the
page makes a record and nothing else: no pipeline, no engine, no thread.

A tab may start its OWN source (an upload, an allowed URL or path, a camera index, the demo,
the browser's webcam): a session stream, added to the process's StreamSet, so it runs on the
same SharedEngine through an engine client (no engine per session) and its engine calls batch
with everybody else's. At most ``max_sessions`` run at once; a tab past the cap is refused
with a line that names the cap. A session stream is closed

- when its tab unloads (Gradio's unload event, when the tab's heartbeat goes away);
- when its tab gave no sign for ``idle_s``: no page tick (once a second from an open tab), no
  frame request of its own view, no webcam frame. A client that calls the page's events
  without a browser has no heartbeat, so no unload ever comes for it: this is what ends it;
- ``idle_s`` after it ended or failed (a finished file, a URL that would not open), so a
  finished session does not hold a slot while its tab stays open;
- when its tab starts another source, or stops its own.

A reaper thread checks every ``reap_every_s``. Records without a stream are forgotten after
``forget_s`` without a sign, and there are at most ``max_tabs`` of them (the least recently
seen goes first), so a flood of page loads costs bounded memory and nothing else.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from realtime.sources import Source
from realtime.streamset import StreamSet
from realtime.threads import DaemonThread
from twostream.errors import RecognizerError
from ui.views import StreamView, ViewSettings
from ui.webcam import BrowserWebcamSource


def default_max_sessions() -> int:
    """One own-source session per CPU core (2 on the 2-core machines here): README, "The page",
    says what a session stream costs."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class SessionLimits:
    """``max_sessions``: own-source streams at once (--max-sessions); ``idle_s``: how long a
    session stream lives without a sign of its tab, or after it finished (--session-idle-s);
    ``stop_timeout_s``: how long closing one waits for its threads (None: the stream's own)."""

    max_sessions: int = field(default_factory=default_max_sessions)
    idle_s: float = 60.0
    reap_every_s: float = 1.0
    forget_s: float = 600.0
    max_tabs: int = 1000
    stop_timeout_s: float | None = None


class _Tab:
    """A tab's mutable record; only touched under Tabs._lock."""

    __slots__ = ("key", "seen", "watching", "own", "note")

    def __init__(self, key: str, seen: float, watching: str | None):
        self.key, self.seen, self.watching = key, seen, watching
        self.own: StreamView | None = None
        self.note: str | None = None  # shown until the tab's next start (a refusal, a closed session)


@dataclass(frozen=True)
class TabState:
    """What a tab sees now: the name of the stream it ``watching``, its ``own`` stream's view
    (None: none) and a ``note`` it must be told (None: nothing)."""

    key: str
    watching: str | None
    own: StreamView | None
    note: str | None


class Tabs:
    """The records of every tab and their own streams on ``streamset``; ``process`` are the
    views of the process's streams, which every tab may watch."""

    def __init__(self, streamset: StreamSet, process: tuple[StreamView, ...], limits: SessionLimits = SessionLimits(),
                 views: ViewSettings = ViewSettings(), *, webcam_fps: float = 25.0, webcam_timeout_s: float = 20.0):
        self.streamset, self.process, self.limits, self.views = streamset, tuple(process), limits, views
        self._webcam = (webcam_fps, webcam_timeout_s)
        self._by_token = {view.token: view for view in self.process}
        self._lock = threading.Lock()
        self._tabs: OrderedDict[str, _Tab] = OrderedDict()  # least recently seen first
        self._numbers = itertools.count(1)
        self._stop = threading.Event()
        self._reaper: DaemonThread | None = None
        self.closed_sessions = 0
        self.refused_sessions = 0
        self.unjoined_threads: tuple[str, ...] = ()

    # ---- records ---------------------------------------------------------------------------
    @property
    def default_watch(self) -> str | None:
        return self.process[0].name if self.process else None

    def _visit(self, key: str) -> _Tab:
        """The tab's record, made if need be, marked as seen now. Under the lock."""
        tab = self._tabs.get(key)
        if tab is None:
            tab = self._tabs[key] = _Tab(key, 0.0, self.default_watch)
            if len(self._tabs) > self.limits.max_tabs:
                oldest = next((k for k, t in self._tabs.items() if t.own is None and t is not tab), None)
                if oldest is not None:
                    del self._tabs[oldest]
        tab.seen = time.monotonic()
        self._tabs.move_to_end(key)
        return tab

    @staticmethod
    def _state(tab: _Tab) -> TabState:
        return TabState(tab.key, tab.watching, tab.own, tab.note)

    def visit(self, key: str) -> TabState:
        """A sign of life from tab ``key`` (its load, its tick): its record, made if need be."""
        with self._lock:
            return self._state(self._visit(key))

    def watch(self, key: str, name: str) -> TabState:
        """Tab ``key`` shows stream ``name`` large: a process stream or its own (others are
        ignored: a tab cannot watch another tab's source)."""
        with self._lock:
            tab = self._visit(key)
            if name in (v.name for v in self.views_of(tab)):
                tab.watching, tab.note = name, None  # the tab moved on from what the note said
            return self._state(tab)

    def note(self, key: str, text: str) -> TabState:
        """Tell tab ``key`` ``text`` (a refused source) until its next start or choice."""
        with self._lock:
            tab = self._visit(key)
            tab.note = text
            return self._state(tab)

    def views_of(self, tab: _Tab | TabState) -> tuple[StreamView, ...]:
        """The streams a tab may watch: the process's, then its own."""
        return self.process + ((tab.own,) if tab.own is not None else ())

    def view(self, token: str) -> StreamView | None:
        """The view a live-view request names (None: no such view, or closed)."""
        with self._lock:
            return self._by_token.get(token)

    # ---- own sources -----------------------------------------------------------------------
    def start_own(self, key: str, source: Source) -> TabState:
        """Tab ``key`` scores ``source`` in a session stream of its own (replacing its old one),
        unless ``max_sessions`` other tabs have one: then its note says so and ``source`` is
        closed. The stream opens the source in its own thread: a source that will not open
        shows as the stream's failed state."""
        old = None
        with self._lock:
            tab = self._visit(key)
            refusal = self._refusal(tab)
            if refusal is not None:
                self.refused_sessions += 1
                tab.note = refusal
                source.close()
                return self._state(tab)
            name = f"session-{next(self._numbers)}"
            try:
                stream = self.streamset.add(name, source)
            except RecognizerError as exc:  # the engine is closing: the server is stopping
                tab.note = f"cannot start {source.description}: {exc}"
                source.close()
                return self._state(tab)
            old, tab.own = tab.own, StreamView(stream, self.views, owner=key, label="your source")
            self._by_token[tab.own.token] = tab.own
            if old is not None:
                del self._by_token[old.token]
            tab.watching, tab.note = name, None
            state = self._state(tab)
        if old is not None:
            self._close_view(old)
        return state

    def _refusal(self, tab: _Tab) -> str | None:
        """Why ``tab`` may not start a source of its own now (the cap), or None. Under the lock."""
        busy = sum(1 for t in self._tabs.values() if t.own is not None and t is not tab)
        cap = self.limits.max_sessions
        if busy < cap:
            return None
        if cap == 0:
            return "refused: this server scores no source of a tab's own (--max-sessions 0)"
        return (f"refused: {busy} of {cap} own-source sessions are in use (--max-sessions {cap}); watch the "
                f"server's streams, or try again when one closes (an idle or finished one closes after "
                f"{self.limits.idle_s:g} s)")

    def push_webcam(self, key: str, rgb: np.ndarray) -> TabState | None:
        """A frame of tab ``key``'s browser webcam: fed to its webcam stream, or the first one
        (or the first after another source) starts one. The new state then, else None."""
        with self._lock:
            tab = self._visit(key)
            own = tab.own
            refusal = self._refusal(tab)
            if refusal is not None and tab.note == refusal:
                return None  # refused, and told so already: not again for every frame
        if own is not None and isinstance(own.stream.source, BrowserWebcamSource) and not own.stream.done:
            own.stream.source.push(rgb)
            return None
        webcam = BrowserWebcamSource(*self._webcam)
        webcam.push(rgb)  # a malformed frame raises here, before a session is made for it
        return self.start_own(key, webcam)

    def stop_own(self, key: str, note: str | None = None) -> TabState:
        """Close tab ``key``'s own stream (if any); it watches the default stream again."""
        with self._lock:
            tab = self._visit(key)
            view = self._detach(tab, note)
            state = self._state(tab)
        if view is not None:
            self._close_view(view)
        return state

    def close_tab(self, key: str) -> None:
        """Tab ``key`` went away (unload): forget it and close its own stream."""
        with self._lock:
            tab = self._tabs.pop(key, None)
            view = self._detach(tab, None) if tab is not None else None
        if view is not None:
            self._close_view(view)

    def _detach(self, tab: _Tab, note: str | None) -> StreamView | None:
        """Take the tab's own view off it (under the lock); the caller closes it outside."""
        view, tab.own = tab.own, None
        if view is not None:
            self._by_token.pop(view.token, None)
            if tab.watching == view.name:
                tab.watching = self.default_watch
            tab.note = note
        return view

    def _close_view(self, view: StreamView) -> None:
        """Stop and join a session stream (outside the lock: joining takes a moment)."""
        view.close()
        source = view.stream.source
        if isinstance(source, BrowserWebcamSource):
            source.finish()  # its capture thread waits for a frame: end that wait now
        try:
            unjoined = self.streamset.remove(view.name, self.limits.stop_timeout_s)
        except KeyError:
            unjoined = ()  # removed already (the server is closing)
        with self._lock:
            self.closed_sessions += 1
            self.unjoined_threads += unjoined

    # ---- the reaper ------------------------------------------------------------------------
    def reap(self) -> int:
        """Close the session streams of tabs idle for ``idle_s``, and those finished for
        ``idle_s``; forget records idle for ``forget_s``. The number of streams closed."""
        now, idle = time.monotonic(), self.limits.idle_s
        closing = []
        with self._lock:
            for key, tab in list(self._tabs.items()):
                own = tab.own
                if own is not None:
                    status = own.status()
                    quiet = now - max(tab.seen, own.last_request)
                    if quiet >= idle:
                        what = own.stream.source.description
                        closing.append(self._detach(tab, f"your source ({what}) was closed: this tab gave no sign "
                                                          f"for {quiet:.0f} s (--session-idle-s {idle:g})"))
                    elif status.finished and now - status.since >= idle:
                        closing.append(self._detach(tab, None))
                elif now - tab.seen >= self.limits.forget_s:
                    del self._tabs[key]
        for view in closing:
            self._close_view(view)
        return len(closing)

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.limits.reap_every_s):
            self.reap()

    def start(self) -> "Tabs":
        """Start the reaper thread."""
        self._reaper = DaemonThread(self._reap_loop, "session-reaper")
        self._reaper.start()
        return self

    def close(self) -> None:
        """Stop the reaper and close every session stream. Idempotent."""
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join()
        with self._lock:
            views = [self._detach(tab, None) for tab in self._tabs.values()]
            self._tabs.clear()
        for view in views:
            if view is not None:
                self._close_view(view)

    def counts(self) -> dict:
        """For /debug/sessions: tabs with a record, session streams (and how many of them are
        still running), process streams, the caps, threads of the process."""
        with self._lock:
            owns = [t.own for t in self._tabs.values() if t.own is not None]
            tabs = len(self._tabs)
            closed, refused, unjoined = self.closed_sessions, self.refused_sessions, len(self.unjoined_threads)
        return {"tabs": tabs, "session_streams": len(owns),
                "session_streams_running": sum(not v.stream.done for v in owns),
                "process_streams": len(self.process),
                "process_streams_running": sum(not v.stream.done for v in self.process),
                "max_sessions": self.limits.max_sessions, "session_idle_s": self.limits.idle_s,
                "sessions_closed": closed, "sessions_refused": refused,
                "threads": threading.active_count(), "unjoined_threads": unjoined}
