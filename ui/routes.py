"""The page's own HTTP routes, served beside Gradio's on the same app, and the login they share
with the page.

    GET /live/{token}.jpg?after=SEQ   the stream's newest annotated frame, one JPEG, as soon as
                                      its sequence number (header X-Frame-Seq) is above SEQ; 204
                                      when none came within ``wait_s``; 404 for an unknown token
    GET /thumb/{token}.jpg?after=SEQ  the stream's grid thumbnail, at once: 200 when one newer
                                      than SEQ exists (X-Frame-Seq), else 204
    GET /debug/sessions               tabs, session and process streams, threads: ui.tabs.Tabs.counts

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

from ui.views import StreamView

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


async def next_jpeg(view: StreamView, after: int, wait_s: float) -> tuple[int, bytes] | None:
    """(seq, JPEG) of the stream's newest annotated frame once seq > ``after``; None when no
    new frame came within ``wait_s`` or the view closed. Waiting happens in the event loop;
    only the encode (once per frame, whoever asks first: StreamView.frame_jpeg) takes a worker
    thread, because that pool is shared with Gradio's callbacks and idle viewers must not hold
    its threads."""
    # A seq from before the view restarted its count would wait for ever; any new frame will do.
    after = min(after, view.jpeg_seq)
    deadline = time.monotonic() + wait_s
    while not view.closed:
        if view.frame_pending() or view.jpeg_seq > after:
            got = await anyio.to_thread.run_sync(view.frame_jpeg, after, 0.0)
            if got is not None:
                return got
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(view.settings.poll_s)
    return None


class LiveRoutes:
    """The routes above. ``by_token`` finds a stream's view by its token; ``counts`` gives
    the /debug/sessions JSON; ``wait_s``: how long a frame request waits before its 204."""

    def __init__(self, by_token: Callable[[str], StreamView | None], counts: Callable[[], dict],
                 wait_s: float = 0.5):
        self._by_token = by_token
        self._counts = counts
        self.wait_s = wait_s

    async def _view(self, request: Request) -> tuple[StreamView | None, int, Response | None]:
        """The view and the ``after`` a frame request names, or the response refusing it."""
        refused = await login_refusal(request)
        if refused is not None:
            return None, 0, refused
        view = self._by_token(request.path_params["token"])
        if view is None:
            return None, 0, PlainTextResponse("no such live view (stream closed?)", status_code=404)
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return None, 0, PlainTextResponse("after must be a whole number (the last X-Frame-Seq seen)",
                                              status_code=400)
        view.last_request = time.monotonic()  # a sign of the tab that watches it
        return view, after, None

    @staticmethod
    def _jpeg(got: tuple[int, bytes] | None) -> Response:
        if got is None:
            return Response(status_code=204, headers=NO_STORE)
        seq, jpeg = got
        return Response(jpeg, media_type="image/jpeg", headers={**NO_STORE, "X-Frame-Seq": str(seq)})

    async def frame(self, request: Request) -> Response:
        view, after, refused = await self._view(request)
        if refused is not None:
            return refused
        return self._jpeg(await next_jpeg(view, after, self.wait_s))

    async def thumb(self, request: Request) -> Response:
        view, after, refused = await self._view(request)
        if refused is not None:
            return refused
        return self._jpeg(await anyio.to_thread.run_sync(view.thumbnail, after))

    async def debug(self, request: Request) -> Response:
        refused = await login_refusal(request)
        if refused is not None:
            return refused
        return JSONResponse(self._counts())

    def routes(self) -> list[Route]:
        return [Route("/live/{token}.jpg", self.frame), Route("/thumb/{token}.jpg", self.thumb),
                Route("/debug/sessions", self.debug)]
