"""The page's own HTTP routes, served beside Gradio's on the same app, and the login they share
with the page.

    GET /live/{token}.jpg?after=SEQ   the session's newest annotated frame, one JPEG, as soon as
                                      its sequence number (header X-Frame-Seq) is above SEQ; 204
                                      when none came within ``wait_s``; 404 for an unknown token
    GET /debug/sessions               the live counts of ui.page.LivePage.counts, as JSON

The live view is short requests, one at a time per tab (ui/live_view.js loops over them), so a
tab holds no connection open between frames; an endless MJPEG response per tab exhausted the
browser's six connections per host.

With ``--auth``, each route answers 401 unless Gradio's own login check passes for the request:
the check is Gradio's ``/gradio_api/login_check`` route, run in-process with the request's
headers (cookies), so these routes accept exactly the logins the page accepts, and nothing
here knows how Gradio stores them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import anyio
from gradio.route_utils import API_PREFIX
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ui.session import LiveSession

LOGIN_CHECK_PATH = API_PREFIX + "/login_check"
NO_STORE = {"Cache-Control": "no-store"}
# The keys of an ASGI HTTP scope (the spec's, and the lifespan state): the login check gets a
# fresh scope with these, none of the routing state this request picked up on its way here.
_SCOPE_KEYS = ("type", "asgi", "http_version", "scheme", "server", "client", "root_path", "headers",
               "extensions", "state")


async def login_refusal(request: Request) -> Response | None:
    """None when Gradio lets this request in (logged in, or no login configured); otherwise
    the response to send: 401 with a one-line text, or 503 when the check itself failed."""
    scope = {key: request.scope[key] for key in _SCOPE_KEYS if key in request.scope}
    path = scope.get("root_path", "") + LOGIN_CHECK_PATH
    scope.update(method="GET", path=path, raw_path=path.encode(), query_string=b"",
                 state=dict(scope.get("state", {})))
    statuses: list[int] = []
    sent_request = False

    async def receive() -> dict:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await request.app(scope, receive, send)
    if statuses == [200]:
        return None
    if statuses == [401]:
        return PlainTextResponse("login required: log in on the page first", status_code=401)
    # Fail closed: a Gradio without this route, or an error in it, lets nobody in.
    return PlainTextResponse(f"cannot check the login ({LOGIN_CHECK_PATH} answered {statuses})",
                             status_code=503)


async def next_jpeg(session: LiveSession, after: int, wait_s: float) -> tuple[int, bytes] | None:
    """(seq, JPEG) of the session's newest annotated frame once seq > ``after``; None when no
    new frame came within ``wait_s`` or the session closed. Waiting happens in the event loop;
    only the encode (once per frame, whoever asks first: LiveSession.frame_jpeg) takes a worker
    thread, because that pool is shared with Gradio's callbacks and idle viewers must not hold
    its threads."""
    # A seq from before the session restarted its count would wait for ever; any new frame will do.
    after = min(after, session.jpeg_seq)
    deadline = time.monotonic() + wait_s
    while not session.closed:
        if session.frame_pending() or session.jpeg_seq > after:
            got = await anyio.to_thread.run_sync(session.frame_jpeg, after, 0.0)
            if got is not None:
                return got
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(session.settings.poll_s)
    return None


class LiveRoutes:
    """The routes above. ``by_token`` finds a session by its live-view token; ``counts`` gives
    the /debug/sessions JSON; ``wait_s``: how long a frame request waits before its 204."""

    def __init__(self, by_token: Callable[[str], LiveSession | None], counts: Callable[[], dict],
                 wait_s: float = 0.5):
        self._by_token = by_token
        self._counts = counts
        self.wait_s = wait_s

    async def frame(self, request: Request) -> Response:
        refused = await login_refusal(request)
        if refused is not None:
            return refused
        session = self._by_token(request.path_params["token"])
        if session is None:
            return PlainTextResponse("no such live view (session closed?)", status_code=404)
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return PlainTextResponse("after must be a whole number (the last X-Frame-Seq seen)", status_code=400)
        got = await next_jpeg(session, after, self.wait_s)
        if got is None:
            return Response(status_code=204, headers=NO_STORE)
        seq, jpeg = got
        return Response(jpeg, media_type="image/jpeg", headers={**NO_STORE, "X-Frame-Seq": str(seq)})

    async def debug(self, request: Request) -> Response:
        refused = await login_refusal(request)
        if refused is not None:
            return refused
        return JSONResponse(self._counts())

    def routes(self) -> list[Route]:
        return [Route("/live/{token}.jpg", self.frame), Route("/debug/sessions", self.debug)]
