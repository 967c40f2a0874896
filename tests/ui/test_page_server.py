"""The page's server without a browser: the page launched in this process over its streams and
spoken to over HTTP as a browser (or a hostile client) would. Page loads with fresh session
hashes and no heartbeat make records, never streams or threads; own sources past
--max-sessions are refused and quiet ones reaped. With --auth, the live-view, thumbnail and
debug routes refuse a request that has not logged in, exactly as Gradio's own routes do, and
answer once the client has logged in through Gradio's login form; uploads above
--max-upload-mb are refused; frames come one JPEG per request, each sent once, 204 when none
is new."""

from __future__ import annotations

import socket
import time
import uuid

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from engines.torch_backend import TorchBackend
from realtime.pipeline import PipelineSettings
from realtime.sources import ArraySource, DemoSource, SourceSettings
from realtime.streams import StreamState
from realtime.streamset import SourceSpec
from ui.page import LivePage
from ui.routes import LiveRoutes
from ui.serve import start_streams
from ui.settings import PageSettings
from ui.sources import DEMO
from ui.tabs import SessionLimits

USER, PASSWORD = "me", "secret word"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page(ui_model_path):
    """Two process streams, 'demo' (live) and 'clip' (30 frames in memory: it ends); at most
    two own sources, closed 2 s after their tab went quiet."""
    settings = PageSettings(model_path=ui_model_path, port=_free_port(), auth=(USER, PASSWORD), max_upload_mb=1,
                            source=SourceSettings(demo_size=(160, 120)),
                            limits=SessionLimits(max_sessions=2, idle_s=2.0, reap_every_s=0.2))
    sources = [(SourceSpec("demo", "demo", True, "test"), DemoSource(3, (160, 120))),
               (SourceSpec("clip", "clip", True, "test"), ArraySource([np.zeros((120, 160, 3), np.uint8)] * 30))]
    streamset, tabs = start_streams(TorchBackend.from_checkpoint(ui_model_path), sources, settings,
                                    PipelineSettings(join_timeout_s=5.0))
    live_page = LivePage(settings, tabs, "torch fp32")
    try:
        url = live_page.launch()
        yield live_page, url.rstrip("/") + "/"
    finally:
        live_page.close()
        streamset.close()


def _login(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    """Post Gradio's login form; the client keeps the cookies it sets, as a browser does."""
    return client.post("login", data={"username": USER, "password": password})


def _frame(client: httpx.Client, token: str, after, rounds: int = 120) -> httpx.Response:
    """GET one live frame as ui/live_view.js does: ask again on 204 (nothing new yet)."""
    for _ in range(rounds):
        reply = client.get(f"live/{token}.jpg", params={"after": after})
        if reply.status_code != 204:
            return reply
    raise AssertionError(f"no frame after {rounds} requests")


def _view(live_page: LivePage, name: str):
    return next(v for v in live_page.tabs.process if v.name == name)


def _join(client: httpx.Client, event: str, session_hash: str, data: list) -> None:
    """Call one of the page's events as a scripted client would: POST /gradio_api/queue/join
    with the event's fn_index and a session hash; no browser, no heartbeat, nothing read back."""
    config = client.get("config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if any(t[1] == event for t in d["targets"]))
    reply = client.post("gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session_hash,
                                                       "event_data": None, "trigger_id": None})
    assert reply.status_code == 200, reply.text


def _until(client: httpx.Client, predicate, what: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = client.get("debug/sessions").json()
        if predicate(counts):
            return counts
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {client.get('debug/sessions').json()}")


def test_routes_refuse_requests_without_the_login(page):
    live_page, url = page
    token = _view(live_page, "demo").token
    for path in ("debug/sessions", f"live/{token}.jpg", f"live/{token}.jpg?after=0", f"thumb/{token}.jpg",
                 "live/unknown.jpg"):
        reply = httpx.get(url + path, timeout=30)
        assert reply.status_code == 401, (path, reply.status_code, reply.text)
        assert "login required" in reply.text and "image" not in reply.headers.get("content-type", "")
    with httpx.Client(base_url=url, timeout=30) as client:
        assert _login(client, password="wrong").status_code == 400
        assert client.get("debug/sessions").status_code == 401
    # Gradio's own routes refuse the same requests (the page's and ours agree).
    assert httpx.get(url + "config", timeout=30).status_code == 401
    assert httpx.post(url + "gradio_api/upload", files={"files": ("a.mp4", b"x")}, timeout=30).status_code == 401


def test_routes_answer_after_logging_in(page):
    live_page, url = page
    token = _view(live_page, "demo").token
    with httpx.Client(base_url=url, timeout=30) as client:
        reply = _login(client)
        assert reply.status_code == 200, reply.text
        counts = client.get("debug/sessions").json()
        assert counts["process_streams"] == 2 and counts["max_sessions"] == 2 and counts["threads"] > 0
        reply = _frame(client, token, 0)
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
        assert reply.content[:2] == b"\xff\xd8" and reply.headers["cache-control"] == "no-store"
        first = int(reply.headers["x-frame-seq"])
        assert first >= 1
        # The next request gets a newer frame (the demo stream runs at 25 frames/s), never the same.
        reply = _frame(client, token, first)
        assert reply.status_code == 200 and int(reply.headers["x-frame-seq"]) > first
        # A seq the server never sent (say, from before a restart) still gets the next frame.
        assert _frame(client, token, 10**9).status_code == 200
        thumb = client.get(f"thumb/{token}.jpg", params={"after": 0})
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        assert client.get(f"thumb/{token}.jpg", params={"after": thumb.headers["x-frame-seq"]}).status_code == 204
        assert client.get("live/unknown.jpg").status_code == 404
        assert client.get(f"live/{token}.jpg", params={"after": "x"}).status_code == 400


def test_a_stream_with_no_new_frame_answers_204(page):
    live_page, url = page
    view = _view(live_page, "clip")
    deadline = time.monotonic() + 60
    while view.status().state is not StreamState.ENDED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert view.status().state is StreamState.ENDED, view.status()
    with httpx.Client(base_url=url, timeout=30) as client:
        assert _login(client).status_code == 200
        reply = client.get(f"live/{view.token}.jpg", params={"after": 0})
        assert reply.status_code == 200
        last = int(reply.headers["x-frame-seq"])
        reply = client.get(f"live/{view.token}.jpg", params={"after": last})
        assert reply.status_code == 204 and reply.content == b""
    assert view.jpeg_seq == last, "an unchanged frame was encoded again"


def test_page_loads_without_a_browser_start_nothing(page):
    """The probe's attack: the load event called with fresh session hashes and no heartbeat
    (so no unload ever comes). Each is a record; no stream, no pipeline thread."""
    live_page, url = page
    with httpx.Client(base_url=url, timeout=30) as client:
        assert _login(client).status_code == 200
        before = _until(client, lambda c: c["session_streams"] == 0, "earlier sessions to close")
        loads = 12
        for n in range(loads):
            _join(client, "load", uuid.uuid4().hex[:11], [])
            _until(client, lambda c: c["tabs"] >= before["tabs"] + n + 1, f"load {n + 1} to be served")
        after = client.get("debug/sessions").json()
    assert after["session_streams"] == 0 and after["process_streams"] == 2
    assert len(live_page.tabs.streamset.streams) == 2
    # Gradio's request pool may start a thread or two; a pipeline per load would be 5 threads each.
    assert after["threads"] <= before["threads"] + 3, (before, after)


def test_own_sources_past_the_cap_are_refused_and_quiet_ones_reaped(page):
    """Three scripted clients start the demo as their own source: two run, the third is
    refused with the cap in its status; none of them ticks, so both are closed 2 s later."""
    live_page, url = page
    hashes = [uuid.uuid4().hex[:11] for _ in range(3)]
    with httpx.Client(base_url=url, timeout=30) as client:
        assert _login(client).status_code == 200
        before = _until(client, lambda c: c["session_streams"] == 0, "earlier sessions to close")
        for key in hashes:
            _join(client, "click", key, [DEMO, "", None, None])  # the 'Start my source' button
            _until(client, lambda c: c["sessions_refused"] + c["sessions_closed"] + c["session_streams"]
                   > before["sessions_refused"] + before["sessions_closed"] + hashes.index(key),
                   "the start to be served")
        refused = live_page.tabs.visit(hashes[2])
        assert refused.own is None and "(--max-sessions 2)" in refused.note
        counts = client.get("debug/sessions").json()
        assert counts["sessions_refused"] == before["sessions_refused"] + 1
        assert counts["session_streams"] in (1, 2)  # (a slow machine may have reaped one already)
        after = _until(client, lambda c: c["sessions_closed"] == before["sessions_closed"] + 2,
                       "quiet sessions to be reaped", 30)
    assert after["session_streams"] == 0
    assert len(live_page.tabs.streamset.streams) == 2


def test_uploads_above_the_limit_are_refused(page):
    _, url = page
    with httpx.Client(base_url=url, timeout=30) as client:
        assert _login(client).status_code == 200
        small = client.post("gradio_api/upload", files={"files": ("small.mp4", b"\0" * 100_000)})
        assert small.status_code == 200, small.text
        big = client.post("gradio_api/upload", files={"files": ("big.mp4", b"\0" * (2 * 1024 * 1024))})
        assert big.status_code == 413, big.text
        assert "maximum allowed size" in big.text


def test_login_check_fails_closed_without_gradio():
    """On an app that has no Gradio login-check route, the routes let nobody in."""
    routes = LiveRoutes(lambda token: None, lambda: {"tabs": 0})
    with TestClient(Starlette(routes=routes.routes())) as client:
        reply = client.get("/debug/sessions")
    assert reply.status_code == 503 and "cannot check the login" in reply.text
