"""The page's server without a browser: LivePage launched in this process and spoken to over
HTTP as a browser (or a hostile client) would. With --auth, the live-view and debug routes
refuse a request that has not logged in, exactly as Gradio's own routes do, and answer once the
client has logged in through Gradio's login form; uploads above --max-upload-mb are refused;
frames come one JPEG per request, each sent once, 204 when none is new."""

from __future__ import annotations

import socket
import time

import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from engines.torch_backend import TorchBackend
from realtime.pipeline import PipelineSettings
from realtime.sources import ArraySource
from ui.page import LivePage
from ui.routes import LiveRoutes
from ui.session import ENDED, SessionSettings
from ui.settings import PageSettings

USER, PASSWORD = "me", "secret word"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page(ui_model_path):
    settings = PageSettings(model_path=ui_model_path, port=_free_port(), auth=(USER, PASSWORD), max_upload_mb=1,
                            session=SessionSettings(pipeline=PipelineSettings(join_timeout_s=5.0)))
    live_page = LivePage(settings, lambda: TorchBackend.from_checkpoint(ui_model_path))
    url = live_page.launch()
    try:
        yield live_page, url.rstrip("/") + "/"
    finally:
        live_page.close()


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


def test_routes_refuse_requests_without_the_login(page):
    live_page, url = page
    session, _ = live_page.open_session("test-no-login")
    for path in ("debug/sessions", f"live/{session.token}.jpg", f"live/{session.token}.jpg?after=0",
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
    session, _ = live_page.open_session("test-login")
    with httpx.Client(base_url=url, timeout=30) as client:
        reply = _login(client)
        assert reply.status_code == 200, reply.text
        counts = client.get("debug/sessions").json()
        assert counts["sessions"] >= 1 and counts["pipelines"] >= 1
        reply = _frame(client, session.token, 0)
        assert reply.status_code == 200 and reply.headers["content-type"] == "image/jpeg"
        assert reply.content[:2] == b"\xff\xd8" and reply.headers["cache-control"] == "no-store"
        first = int(reply.headers["x-frame-seq"])
        assert first >= 1
        # The next request gets a newer frame (the demo stream runs at 25 frames/s), never the same.
        reply = _frame(client, session.token, first)
        assert reply.status_code == 200 and int(reply.headers["x-frame-seq"]) > first
        # A seq the server never sent (say, from before a restart) still gets the next frame.
        assert _frame(client, session.token, 10**9).status_code == 200
        assert client.get("live/unknown.jpg").status_code == 404
        assert client.get(f"live/{session.token}.jpg", params={"after": "x"}).status_code == 400


def test_a_session_with_no_new_frame_answers_204(page):
    live_page, url = page
    session, _ = live_page.open_session("test-ended")
    session.switch(ArraySource([np.zeros((120, 160, 3), np.uint8)] * 30))
    deadline = time.monotonic() + 60
    while session.status().state != ENDED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.status().state == ENDED, session.status()
    with httpx.Client(base_url=url, timeout=30) as client:
        assert _login(client).status_code == 200
        reply = client.get(f"live/{session.token}.jpg", params={"after": 0})
        assert reply.status_code == 200
        last = int(reply.headers["x-frame-seq"])
        reply = client.get(f"live/{session.token}.jpg", params={"after": last})
        assert reply.status_code == 204 and reply.content == b""
    assert session.jpeg_seq == last, "an unchanged frame was encoded again"


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
    routes = LiveRoutes(lambda token: None, lambda: {"sessions": 0})
    with TestClient(Starlette(routes=routes.routes())) as client:
        reply = client.get("/debug/sessions")
    assert reply.status_code == 503 and "cannot check the login" in reply.text
