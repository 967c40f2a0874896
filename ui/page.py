"""The Gradio page: live annotated video, status line, stats panel, gesture event log, plots and
source controls.

Live video: an ``<img id='live-img' data-token=...>`` in a gr.HTML, whose picture a small
script (ui/live_view.js, given to ``Blocks.launch(js=...)``) replaces with each new annotated
frame, fetched one JPEG per short request from ui.routes (``/live/{token}.jpg?after=SEQ``,
answered as soon as a newer frame exists, else 204 within half a second): no per-frame Gradio
event, and no request held open for good. Stats and plots refresh on a gr.Timer, once a second.

Sessions: each browser session (Gradio's session hash) gets its own LiveSession, made on page
load and closed on unload (tab closed or reloaded), so a closed tab frees its pipeline and
threads. ``/debug/sessions`` reports the live counts as JSON (tests use it). With --auth,
those routes and Gradio's own (uploads included) need the page's login.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Callable

import gradio as gr
from gradio.utils import get_upload_folder

from engines.base import Backend
from realtime.sources import open_source
from ui.eventlog import event_log_html
from ui.panel import model_summary, stats_html
from ui.plots import latency_histogram_svg, probability_svg
from ui.routes import LiveRoutes
from ui.session import ERROR, EXPECTED_ERRORS, LiveSession, SessionStatus
from ui.settings import PageSettings
from ui.sources import DEMO, SOURCE_KINDS, UPLOAD, WEBCAM, SourcePolicy, source_from_controls

LIVE_VIEW_JS = (Path(__file__).with_name("live_view.js")).read_text(encoding="utf-8")
CSS = ("#live-view img {width: 640px; max-width: 100%; height: auto; background: #222}"
       " #stats td, #stats th {padding: 1px 8px !important; font-size: 12px}")


def _status_markdown(status: SessionStatus) -> str:
    """One status line; ``data-state`` lets a test (or a user style) read the state."""
    color = {"error": "#c62828", "running": "#2e7d32", "ended": "#555", "idle": "#555"}[status.state]
    prefix = "<b>error:</b> " if status.state == "error" else ""
    return (f"<span id='status-line' data-state='{status.state}' style='color:{color}'>{prefix}"
            f"{html.escape(status.message)}</span>")


class LivePage:
    """Owns every browser session's LiveSession; builds the Blocks and the extra routes."""

    def __init__(self, settings: PageSettings, open_backend: Callable[[], Backend]):
        self.settings = settings
        self._open_backend = open_backend
        self._lock = threading.Lock()
        self._sessions: dict[str, LiveSession] = {}  # by Gradio session hash
        self.summary = model_summary(settings.model_path)
        self.policy = SourcePolicy(upload_dirs=(Path(get_upload_folder()),), allow_dirs=settings.allow_dirs,
                                   allow_urls=settings.allow_urls)
        self.live_routes = LiveRoutes(self._by_token, self.counts, settings.live_wait_s)
        self._demo: gr.Blocks | None = None

    # ---- sessions --------------------------------------------------------------------------
    def _session(self, request: gr.Request) -> LiveSession | None:
        with self._lock:
            return self._sessions.get(request.session_hash)

    def _by_token(self, token: str) -> LiveSession | None:
        with self._lock:
            return next((s for s in self._sessions.values() if s.token == token), None)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()

    def counts(self) -> dict:
        """Live sessions, sessions with pipeline threads alive, and all threads of the process."""
        with self._lock:
            sessions = list(self._sessions.values())
        return {"sessions": len(sessions), "pipelines": sum(s.running for s in sessions),
                "threads": threading.active_count(),
                "unjoined_threads": sum(len(s.unjoined_threads) for s in sessions)}

    def open_session(self, session_hash: str) -> tuple[LiveSession, SessionStatus]:
        """A new session under ``session_hash`` (replacing and closing one already there),
        started on the default source."""
        session = LiveSession(self._open_backend, self.settings.session)
        with self._lock:
            old = self._sessions.pop(session_hash, None)
            # Registered before it starts, so an unload racing this load still finds it.
            self._sessions[session_hash] = session
        if old is not None:
            old.close()
        try:
            status = session.switch(open_source(self.settings.default_source, self.settings.session.source))
        except EXPECTED_ERRORS as exc:
            status = SessionStatus(ERROR, str(exc))
        return session, status

    # ---- callbacks -------------------------------------------------------------------------
    def _on_load(self, request: gr.Request):
        session, status = self.open_session(request.session_hash)
        # No src: ui/live_view.js fills it with the session's frames, found by data-token.
        live = (f"<img id='live-img' data-token='{session.token}' width='640' height='480' "
                f"alt='live annotated video'>")
        return live, _status_markdown(status)

    def _on_unload(self, request: gr.Request) -> None:
        with self._lock:
            session = self._sessions.pop(request.session_hash, None)
        if session is not None:
            session.close()

    def _on_tick(self, request: gr.Request):
        session = self._session(request)
        if session is None:
            return _status_markdown(SessionStatus(ERROR, "session expired: reload the page")), "", "", "", ""
        history = session.history()
        snapshot = session.stats()
        stats = stats_html(snapshot, f"{session.backend_name} (requested: {self.settings.backend})",
                           self.settings.precision, self.summary)
        probs = probability_svg(history, time.monotonic(), self.settings.session.plot_span_s)
        hist = latency_histogram_svg([p.latency_ms for p in history])
        events = event_log_html(session.events())
        return _status_markdown(session.status()), stats, events, probs, hist

    def _on_switch(self, kind: str, text: str, upload: str | None, request: gr.Request) -> str:
        session = self._session(request)
        if session is None:
            return _status_markdown(SessionStatus(ERROR, "session expired: reload the page"))
        if kind == WEBCAM:
            return _status_markdown(SessionStatus(
                "idle", "start the browser webcam below: its frames switch this session to it"))
        try:
            source = source_from_controls(kind, text, upload, self.policy, self.settings.session.source)
        except EXPECTED_ERRORS as exc:
            return _status_markdown(session.refuse(str(exc)))
        return _status_markdown(session.switch(source))

    def _on_upload(self, upload: str | None, request: gr.Request):
        return UPLOAD, self._on_switch(UPLOAD, "", upload, request)

    def _on_webcam(self, rgb, request: gr.Request) -> None:
        session = self._session(request)
        if session is None or rgb is None:
            return
        try:
            session.push_webcam(rgb)
        except EXPECTED_ERRORS:
            pass  # a malformed frame: the status line shows the pipeline's own state

    # ---- layout ----------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        with gr.Blocks(title="Two-stream live recognizer", analytics_enabled=False) as demo:
            gr.Markdown("## Two-stream action recognition, live")
            with gr.Row():
                with gr.Column(scale=3):
                    live = gr.HTML("<p>starting…</p>", elem_id="live-view")
                    status = gr.HTML("starting…", elem_id="status")
                    with gr.Accordion("Source", open=True):
                        kind = gr.Radio(list(SOURCE_KINDS), value=DEMO, label="source", elem_id="source-kind")
                        text = gr.Textbox(label="camera index, a URL under --allow-url, or a path under --allow-dir",
                                          elem_id="source-text")
                        go = gr.Button("Switch source", elem_id="switch-source")
                        upload = gr.File(label="upload a video (switches to it)", file_types=["video"],
                                         type="filepath", elem_id="upload")
                        # Ask for 640x480: browsers default to the camera's largest mode, and
                        # every frame is JPEG-encoded in the browser and decoded here.
                        webcam = gr.Image(sources=["webcam"], streaming=True, type="numpy",
                                          label="browser webcam (scored by this tab's own pipeline)",
                                          webcam_options=gr.WebcamOptions(mirror=False, constraints={
                                              "video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}),
                                          elem_id="webcam")
                with gr.Column(scale=2):
                    stats = gr.HTML(elem_id="stats")
                    events = gr.HTML(elem_id="events")
                    probs = gr.HTML(elem_id="probs-plot")
                    hist = gr.HTML(elem_id="latency-plot")
            timer = gr.Timer(self.settings.refresh_s)
            demo.load(self._on_load, None, [live, status], concurrency_limit=None)
            timer.tick(self._on_tick, None, [status, stats, events, probs, hist], concurrency_limit=None,
                       show_progress="hidden")
            go.click(self._on_switch, [kind, text, upload], [status], concurrency_limit=None)
            upload.upload(self._on_upload, [upload], [kind, status], concurrency_limit=None)
            webcam.stream(self._on_webcam, [webcam], None, stream_every=self.settings.webcam_every_s,
                          concurrency_limit=None, show_progress="hidden")
            demo.unload(self._on_unload)
        return demo

    def launch(self) -> str:
        """Start serving (in Gradio's server thread) and return the page's local URL, and the
        share URL after it when --share made one. ``close`` stops it."""
        s = self.settings
        demo = self.blocks()
        demo.queue(default_concurrency_limit=None)
        self._demo = demo
        _, local_url, share_url = demo.launch(
            server_name=s.host, server_port=s.port, share=s.share, auth=s.auth,
            max_file_size=f"{s.max_upload_mb}mb",  # Gradio's unit: MiB
            prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False, css=CSS, js=LIVE_VIEW_JS,
            app_kwargs={"routes": self.live_routes.routes()})
        return local_url + (f" and {share_url}" if share_url else "")

    def close(self) -> None:
        """Close every session (stop and join their threads), then stop the server."""
        try:
            self.close_all()
        finally:
            if self._demo is not None:
                self._demo.close()
                self._demo = None

    def serve(self, ready: Callable[[str], None] = print) -> None:
        """Serve until KeyboardInterrupt (Ctrl-C, or SIGTERM mapped onto it), then ``close``."""
        try:
            ready(f"serving on {self.launch()}")
            while True:
                time.sleep(0.5)
        finally:
            self.close()
