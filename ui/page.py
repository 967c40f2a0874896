"""The Gradio page: a grid of the process's streams, the one a tab watches large (live
annotated video, status line, stats panel, gesture event log, plots), and the controls that
start the tab's own source.

Every tab WATCHES the streams the process runs (ui.serve starts them once, at server start):
loading the page makes a record (ui.tabs) and starts nothing. A tab that starts its own source
gets a session stream on the same shared engine, capped and reaped by ui.tabs; only its own tab
sees it.

Live video: an ``<img id='live-img' data-token=...>`` in a gr.HTML, whose picture a small
script (ui/live_view.js, given to ``Blocks.launch(js=...)``) replaces with each new annotated
frame, fetched one JPEG per short request from ui.routes (``/live/{token}.jpg?after=SEQ``,
answered as soon as a newer frame exists, else 204 within half a second): no per-frame Gradio
event, and no request held open for good. The grid's thumbnails come the same way, about once
a second each (``/thumb/{token}.jpg``). Everything else refreshes on a gr.Timer, once a second;
that tick is also the tab's sign of life. ``/debug/sessions`` reports the counts as JSON. With
--auth, those routes and Gradio's own (uploads included) need the page's login.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import gradio as gr
from gradio.utils import get_upload_folder

from twostream.errors import RecognizerError
from ui.eventlog import event_log_html
from ui.grid import CSS as GRID_CSS
from ui.grid import grid_html, status_html
from ui.panel import model_summary, stats_html
from ui.plots import latency_histogram_svg, probability_svg
from ui.routes import LiveRoutes
from ui.settings import PageSettings
from ui.sources import DEMO, SOURCE_KINDS, UPLOAD, WEBCAM, SourcePolicy, source_from_controls
from ui.tabs import Tabs, TabState

LIVE_VIEW_JS = (Path(__file__).with_name("live_view.js")).read_text(encoding="utf-8")
CSS = ("#live-view img {width: 640px; max-width: 100%; height: auto; background: #222}"
       " #stats td, #stats th {padding: 1px 8px !important; font-size: 12px} " + GRID_CSS)
# Errors building a source from the controls (a refused path or URL, a malformed one).
EXPECTED_ERRORS = (RecognizerError, OSError, ValueError)


class LivePage:
    """The Blocks, their callbacks and the extra routes, over ``tabs`` (the tabs' records and
    the process's streams). ``engine`` describes the shared engine for the stats panel."""

    def __init__(self, settings: PageSettings, tabs: Tabs, engine: str):
        self.settings, self.tabs, self.engine = settings, tabs, engine
        self.summary = model_summary(settings.model_path)
        self.policy = SourcePolicy(upload_dirs=(Path(get_upload_folder()),), allow_dirs=settings.allow_dirs,
                                   allow_urls=settings.allow_urls)
        self.live_routes = LiveRoutes(tabs.view, tabs.counts, settings.live_wait_s)
        self._demo: gr.Blocks | None = None

    # ---- what a tab is shown ---------------------------------------------------------------
    def render(self, state: TabState, sent: tuple | None) -> tuple:
        """The outputs of every callback: grid, watch selector, live view, status, stats, event
        log, probability plot, latency histogram, and what was sent (a gr.State). The selector
        and the live view change only when the streams on offer or the watched one do, so a
        tick neither resets a choice being made nor restarts the live view."""
        views = self.tabs.views_of(state)
        watched = next((v for v in views if v.name == state.watching), None)
        choices = tuple((v.label, v.name) for v in views)
        shown = (choices, state.watching, watched.token if watched is not None else None)
        if shown != sent:
            watch = gr.update(choices=list(choices), value=state.watching)
            live = ("<p>no stream</p>" if watched is None else
                    f"<img id='live-img' data-token='{watched.token}' data-stream='{watched.name}' "
                    f"width='640' height='480' alt='live annotated video of {watched.label}'>")
        else:
            watch = live = gr.skip()
        if watched is None:
            stats, history, events = None, (), ()
        else:
            stats, history, events = watched.stats(), watched.stream.history(), watched.stream.events()
        batches = self.tabs.streamset.stats()
        engine = (f"{self.engine}, shared by {len(self.tabs.streamset.streams)} streams; mean batch "
                  + ", ".join(f"{p.part} {p.mean_batch:.1f}" for p in batches.parts) + f" (max {batches.max_batch})")
        return (grid_html(views, state.watching), watch, live, status_html(watched, state.note),
                stats_html(stats, engine, self.summary), event_log_html(events),
                probability_svg(history, time.monotonic(), self.settings.plot_span_s),
                latency_histogram_svg([p.latency_ms for p in history]), shown)

    # ---- callbacks (``request.session_hash`` names the tab) --------------------------------
    def _on_load(self, request: gr.Request):
        return self.render(self.tabs.visit(request.session_hash), None)

    def _on_tick(self, sent, request: gr.Request):
        return self.render(self.tabs.visit(request.session_hash), sent)

    def _on_watch(self, name: str, sent, request: gr.Request):
        return self.render(self.tabs.watch(request.session_hash, name), sent)

    def start(self, key: str, kind: str, text: str, upload: str | None) -> TabState:
        """Tab ``key`` asks for its own source from the controls: started, refused (the cap, a
        path or URL not allowed, bad input: the tab's note says why) or, for the webcam, left to
        its first frame."""
        if kind == WEBCAM:
            return self.tabs.visit(key)  # the webcam's first frame starts it (push_webcam)
        try:
            source = source_from_controls(kind, text, upload, self.policy, self.settings.source)
        except EXPECTED_ERRORS as exc:
            return self.tabs.note(key, str(exc))
        return self.tabs.start_own(key, source)

    def _on_start(self, kind: str, text: str, upload: str | None, sent, request: gr.Request):
        if kind == WEBCAM:
            gr.Info("start the browser webcam below: its first frame starts your source")
        return self.render(self.start(request.session_hash, kind, text, upload), sent)

    def _on_upload(self, upload: str | None, sent, request: gr.Request):
        return (UPLOAD, *self.render(self.start(request.session_hash, UPLOAD, "", upload), sent))

    def _on_stop(self, sent, request: gr.Request):
        return self.render(self.tabs.stop_own(request.session_hash), sent)

    def _on_webcam(self, rgb, request: gr.Request) -> None:
        if rgb is None:
            return
        try:
            self.tabs.push_webcam(request.session_hash, rgb)
        except EXPECTED_ERRORS:
            pass  # a malformed frame: the status line shows the stream's own state

    def _on_unload(self, request: gr.Request) -> None:
        self.tabs.close_tab(request.session_hash)

    # ---- layout ----------------------------------------------------------------------------
    def blocks(self) -> gr.Blocks:
        limits = self.settings.limits
        with gr.Blocks(title="Two-stream live recognizer", analytics_enabled=False) as demo:
            gr.Markdown("## Two-stream action recognition, live")
            grid = gr.HTML("starting…", elem_id="grid")
            with gr.Row():
                with gr.Column(scale=3):
                    watch = gr.Radio([], label="watch", elem_id="watch")
                    live = gr.HTML("<p>starting…</p>", elem_id="live-view")
                    status = gr.HTML("starting…", elem_id="status")
                    with gr.Accordion("Your own source", open=True):
                        gr.Markdown(f"Scored by this server beside its streams and seen by this tab only. At most "
                                    f"{limits.max_sessions} tabs at once; closed when the tab closes, after "
                                    f"{limits.idle_s:g} s without a sign of it, or {limits.idle_s:g} s after "
                                    f"the source ends.", elem_id="own-note")
                        kind = gr.Radio(list(SOURCE_KINDS), value=DEMO, label="source", elem_id="source-kind")
                        text = gr.Textbox(label="camera index, a URL under --allow-url, or a path under --allow-dir",
                                          elem_id="source-text")
                        with gr.Row():
                            go = gr.Button("Start my source", elem_id="start-source")
                            stop = gr.Button("Stop my source", elem_id="stop-source")
                        upload = gr.File(label="upload a video (starts it as your source)", file_types=["video"],
                                         type="filepath", elem_id="upload")
                        # Ask for 640x480: browsers default to the camera's largest mode, and
                        # every frame is JPEG-encoded in the browser and decoded here.
                        webcam = gr.Image(sources=["webcam"], streaming=True, type="numpy",
                                          label="browser webcam (its frames start your source)",
                                          webcam_options=gr.WebcamOptions(mirror=False, constraints={
                                              "video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}),
                                          elem_id="webcam")
                with gr.Column(scale=2):
                    stats = gr.HTML(elem_id="stats")
                    events = gr.HTML(elem_id="events")
                    probs = gr.HTML(elem_id="probs-plot")
                    hist = gr.HTML(elem_id="latency-plot")
            sent = gr.State(None)
            outputs = [grid, watch, live, status, stats, events, probs, hist, sent]
            timer = gr.Timer(self.settings.refresh_s)
            quiet = {"concurrency_limit": None, "show_progress": "hidden"}
            demo.load(self._on_load, None, outputs, **quiet)
            timer.tick(self._on_tick, [sent], outputs, **quiet)
            watch.input(self._on_watch, [watch, sent], outputs, **quiet)
            go.click(self._on_start, [kind, text, upload, sent], outputs, **quiet)
            stop.click(self._on_stop, [sent], outputs, **quiet)
            upload.upload(self._on_upload, [upload, sent], [kind, *outputs], **quiet)
            webcam.stream(self._on_webcam, [webcam], None, stream_every=self.settings.webcam_every_s, **quiet)
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
        """Close every tab's own stream, then stop the server (the process's streams are the
        caller's: ui.serve)."""
        try:
            self.tabs.close()
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
