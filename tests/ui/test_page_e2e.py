"""The live page end to end, in a real browser: `python app.py --source lobby=demo --source
clip=FILE --port N` as a subprocess, driven by Playwright with Debian's chromium.

Every tab watches the server's two streams (the grid shows both; the live view the one it
selects); a tab's own source (upload, URL, webcam) is a session stream, capped by
--max-sessions and freed when the tab closes.

Frames are counted in the browser: a requestAnimationFrame loop draws the live <img> (whose
picture ui/live_view.js replaces with each JPEG it fetches) into a small canvas and counts
changes of a pixel hash (every demo frame differs: sensor noise and the frame number on the
overlay), so a frame the server sent twice or the browser never painted does not count.
Screenshots go to artifacts/ui/.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.ui.conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.is_file():
    pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)", allow_module_level=True)

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "artifacts" / "ui"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run",
                 # Chromium's built-in test camera (a moving pattern), granted without a prompt.
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
COUNT_FRAMES_JS = """() => {
  const img = document.getElementById('live-img');
  const canvas = document.createElement('canvas');
  canvas.width = 160; canvas.height = 120;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  window.__frames = 0;
  let last = null;
  const tick = () => {
    if (img.complete && img.naturalWidth > 0) {
      ctx.drawImage(img, 0, 0, 160, 120);
      const d = ctx.getImageData(0, 0, 160, 120).data;
      let h = 0;
      for (let i = 0; i < d.length; i += 3) h = (h * 31 + d[i]) | 0;
      if (h !== last) { last = h; window.__frames += 1; }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""


# Counts object URLs alive in the page: the live view must revoke each frame's after use.
COUNT_OBJECT_URLS_JS = """
window.__objectUrls = 0;
const create = URL.createObjectURL, revoke = URL.revokeObjectURL;
URL.createObjectURL = (obj) => { window.__objectUrls += 1; return create.call(URL, obj); };
URL.revokeObjectURL = (url) => { window.__objectUrls -= 1; return revoke.call(URL, url); };
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """app.py serving the page; its output is kept for failure messages."""

    def __init__(self, model: Path, port: int, *options: str):
        self.url = f"http://127.0.0.1:{port}/"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", str(model), *options],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def counts(self) -> dict:
        with urllib.request.urlopen(self.url + "debug/sessions", timeout=5) as reply:
            return json.loads(reply.read())

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "server exited:\n" + "".join(self.lines)
            if any(line.startswith("serving on http://127.0.0.1:") for line in self.lines):
                return
            time.sleep(0.2)
        raise AssertionError("server not ready:\n" + "".join(self.lines))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _wait_until(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


# A URL the page may open (nothing listens on port 9): its refusal and its connection error differ.
ALLOWED_URL_PREFIX = "http://127.0.0.1:9/allowed"
# The status line of a tab that watches the server's demo stream.
WATCHING_LOBBY = "live: lobby: demo gesture stream"


@pytest.fixture(scope="module")
def server(ui_model_path, gesture_clip):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # --session-idle-s 30: a closed tab's unload can be lost on a loaded machine; the reaper then
    # closes its stream after the idle time, which must stay inside the tests' waits (45-60 s).
    srv = Server(ui_model_path, _free_port(), "--source", "lobby=demo", "--source", f"clip={gesture_clip}",
                 "--allow-url", ALLOWED_URL_PREFIX, "--max-sessions", "2", "--session-idle-s", "30")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
    assert srv.proc.returncode == 0, "server did not stop cleanly:\n" + "".join(srv.lines)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _open(browser, server):
    """A new tab (its own context, so its own Gradio session) with the live view running."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, permissions=["camera"])
    context.add_init_script(COUNT_OBJECT_URLS_JS)
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#live-img", timeout=60_000)
    page.wait_for_selector("#status-line[data-state='live']", timeout=60_000)
    return context, page


def _status(page) -> tuple[str, str]:
    line = page.locator("#status-line")
    return line.get_attribute("data-state"), line.inner_text()


def _wait_status(page, pattern: str, timeout: float = 60_000) -> tuple[str, str]:
    """Wait until the status line matches the regular expression ``pattern``."""
    page.wait_for_function(
        "(want) => new RegExp(want).test(document.querySelector('#status-line')?.innerText || '')",
        arg=pattern, timeout=timeout)
    return _status(page)


def _start(page, kind: str, text: str = "") -> None:
    """Ask for an own source from the controls."""
    page.get_by_label(kind).check()
    page.locator("#source-text textarea, #source-text input").first.fill(text)
    page.locator("#start-source").click()


def test_the_grid_shows_both_streams_and_a_tab_picks_one(browser, server):
    context, page = _open(browser, server)
    try:
        cards = page.locator("#stream-grid .stream-card")
        assert cards.count() == 2
        assert [cards.nth(i).get_attribute("data-stream") for i in range(2)] == ["lobby", "clip"]
        assert cards.nth(0).get_attribute("data-state") == "live"
        page.wait_for_selector(".stream-card[data-stream='clip'][data-state='ended']", timeout=60_000)
        assert "predictions" in cards.nth(1).inner_text() and "video file" in cards.nth(1).inner_text()
        # Both thumbnails are painted, and stay painted across the grid's refreshes.
        page.wait_for_function(
            "() => [...document.querySelectorAll('img.thumb')].every(i => i.complete && i.naturalWidth > 0)",
            timeout=30_000)
        time.sleep(2.5)
        assert page.evaluate("() => [...document.querySelectorAll('img.thumb')].every(i => i.naturalWidth > 0)")
        token = page.locator("#live-img").get_attribute("data-token")
        page.locator("#watch").get_by_label("clip").check()
        state, line = _wait_status(page, "^ended: clip: video file .* after [1-9]")
        assert state == "ended", line
        assert page.locator("#live-img").get_attribute("data-token") != token
        page.wait_for_selector(".stream-card[data-stream='clip'][data-selected]")
        page.screenshot(path=str(ARTIFACTS / "grid_clip.png"))
        counts = server.counts()
        assert counts["process_streams"] == 2 and counts["tabs"] >= 1
    finally:
        context.close()


def test_live_view_fps_stats_and_plots(browser, server):
    context, page = _open(browser, server)
    try:
        page.wait_for_function("() => document.querySelector('#probs-plot polyline') !== null", timeout=60_000)
        page.evaluate(COUNT_FRAMES_JS)
        time.sleep(1.0)  # past the first frames' warm-up
        stats_before = page.locator("#stats").inner_text()
        plot_before = page.locator("#probs-plot").inner_html()
        # Best of up to five 5-s windows: on a shared 2-core CI machine a burst of other work
        # (load averages of 8 come and go here) can starve the server and the browser for a
        # while. The live view must keep up with its source: 20 frames/s, or 85% of what the
        # source delivered when load slowed the source itself below that (the view can show no
        # more frames than there are).
        windows = []
        for _ in range(5):
            start = page.evaluate("() => window.__frames")
            time.sleep(5.0)
            rate = (page.evaluate("() => window.__frames") - start) / 5.0
            windows.append((rate, float(page.locator("#input-fps").inner_text())))
            if rate >= min(20.0, 0.85 * windows[-1][1]):
                break
        fps, input_fps = max(windows)
        print(f"browser received {fps:.1f} distinct annotated frames/s over 5 s (windows, browser and "
              f"source fps: {windows})")
        (ARTIFACTS / "fps.txt").write_text(f"{fps:.2f} (windows, browser and source fps: {windows})\n")
        assert fps >= min(20.0, 0.85 * input_fps), f"the browser fell behind the source: {windows}"
        # Read once a frame is loaded: while the next frame's src loads, Chrome reports
        # naturalWidth 0 for a moment (it keeps painting the previous picture), and a single
        # sample can land there (it did once in CI).
        page.wait_for_function("() => document.getElementById('live-img').naturalWidth > 0", timeout=10_000)
        assert page.evaluate("() => document.getElementById('live-img').naturalWidth") == 640
        # Hundreds of frames came as object URLs; all but the one on screen (and one decoding)
        # are revoked, and the same for each of the two thumbnails.
        assert page.evaluate("() => window.__objectUrls") <= 2 + 2 * 2
        stats_after = page.locator("#stats").inner_text()
        assert stats_after != stats_before, "stats panel did not update"
        for needle in ("decode", "flow", "spatial tower", "temporal tower", "fusion head", "end to end",
                       "input fps", "scored fps", "dropped frames", "engine", "shared by 2 streams"):
            assert needle in stats_after
        assert page.locator("#probs-plot").inner_html() != plot_before, "probability plot did not update"
        assert page.locator("#latency-plot rect").count() > 1, "latency histogram has no bars"
        page.screenshot(path=str(ARTIFACTS / "live_demo.png"))
        page.locator("#live-img").screenshot(path=str(ARTIFACTS / "live_view.png"))
    finally:
        context.close()


def test_uploaded_clip_gets_predictions(browser, server, gesture_clip):
    context, page = _open(browser, server)
    try:
        page.locator("#upload input[type=file]").set_input_files(str(gesture_clip))
        state, text = _wait_status(page, "^ended: your source: video file .* after [1-9]", 90_000)
        assert state == "ended", text
        assert int(re.search(r"after (\d+) predictions", text).group(1)) > 0
        assert page.locator("#stream-grid .stream-card").count() == 3  # the server's two, and its own
        page.screenshot(path=str(ARTIFACTS / "uploaded_clip.png"))
    finally:
        context.close()


def test_bad_inputs_show_errors_and_server_lives(browser, server, tmp_path):
    garbage_clip = tmp_path / "broken.mp4"
    garbage_clip.write_bytes(bytes(range(256)) * 200)
    context, page = _open(browser, server)
    try:
        cases = (("RTSP/HTTP URL", "http://127.0.0.1:9/nothing", "error",
                  "refused stream 'http://127.0.0.1:9/nothing': not under an --allow-url prefix"),
                 ("RTSP/HTTP URL", "http://127.0.0.1.evil.com:9/allowed", "error", "refused stream"),
                 ("RTSP/HTTP URL", f"{ALLOWED_URL_PREFIX}/cam", "failed", f"stream '{ALLOWED_URL_PREFIX}/cam'"),
                 ("server path (--allow-dir)", "/etc/passwd", "error", "refused '/etc/passwd'"),
                 ("RTSP/HTTP URL", "file:///etc/passwd", "error", "not a stream URL"))
        for kind, text, want_state, expected in cases:
            _start(page, kind, text)
            page.wait_for_function(
                "([state, text]) => { const line = document.querySelector('#status-line');"
                " return line?.dataset.state === state && line.innerText.includes(text); }",
                arg=[want_state, expected], timeout=60_000)
            state, line = _status(page)
            if text.startswith(ALLOWED_URL_PREFIX):
                # Allowed: it tried as the tab's own stream, and the connection failed.
                assert "refused stream" not in line and "connection refused by 127.0.0.1:9" in line, line
            if "refused" in expected:
                time.sleep(2.5)  # two refreshes of the status line: the refusal stays
                assert expected in _status(page)[1]
        page.screenshot(path=str(ARTIFACTS / "bad_url.png"))
        page.locator("#upload input[type=file]").set_input_files(str(garbage_clip))
        state, _ = _wait_status(page, "cannot open video file")
        assert state == "failed"
        assert server.alive()
        assert server.counts()["tabs"] >= 1
        # The page still works after the errors: back to the server's stream.
        page.locator("#stop-source").click()
        _wait_status(page, f"^{WATCHING_LOBBY}")
    finally:
        context.close()


def test_browser_webcam_is_scored_as_the_tabs_own_source(browser, server):
    context, page = _open(browser, server)
    other_context, other = _open(browser, server)
    try:
        page.get_by_text("Click to Access Webcam").click()
        page.locator("#webcam button", has_text="Record").click()
        _wait_status(page, "^live: your source: browser webcam")
        page.wait_for_function(
            "() => { const m = /(\\d+) \\/ (\\d+)/.exec(document.querySelector('#counts')?.innerText || '');"
            " return m && Number(m[2]) > 5; }", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "webcam.png"))
        # Tabs are isolated: the other tab still watches the server's stream, and has no card of it.
        assert WATCHING_LOBBY in _status(other)[1]
        assert other.locator("#stream-grid .stream-card").count() == 2
    finally:
        context.close()
        other_context.close()


def test_closed_tabs_free_their_session_streams(browser, server, gesture_clip):
    _wait_until(lambda: server.counts()["session_streams"] == 0, 60, "earlier tabs' session streams to close")
    baseline = server.counts()
    tabs = [_open(browser, server) for _ in range(3)]
    for _, page in tabs[:2]:
        _start(page, "demo")
        _wait_status(page, "^live: your source: demo gesture stream")
    opened = server.counts()
    assert opened["session_streams"] == 2 and opened["tabs"] >= 3
    _start(tabs[2][1], "demo")  # past --max-sessions 2: refused, and told why
    state, line = _wait_status(tabs[2][1], "--max-sessions 2")
    assert state == "error" and "refused: 2 of 2 own-source sessions are in use" in line
    for context, _ in tabs:
        context.close()
    # Idle request-pool threads of the web server linger a few seconds after use, hence polling.
    after = _wait_until(lambda: (c := server.counts())["session_streams"] == 0
                        and c["sessions_closed"] >= baseline["sessions_closed"] + 2
                        and c["threads"] <= baseline["threads"] and c,
                        45, f"session streams and threads back to baseline {baseline} (now {server.counts()})")
    assert after["unjoined_threads"] == 0 and after["process_streams"] == 2
    assert server.alive()


@pytest.mark.slow
def test_four_tabs_of_one_browser_all_get_frames_and_predictions(browser, server):
    """The tabs of one browser share its connections to the server (six per host over
    HTTP/1.1); the live view and the thumbnails must leave enough free that a fourth tab still
    gets its frames and its predictions (Gradio's events). With an endless MJPEG response per
    tab the third never got a prediction. Watching costs the server no stream of its own."""
    _wait_until(lambda: server.counts()["session_streams"] == 0, 60, "earlier tabs' session streams to close")
    before = server.counts()
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    try:
        tabs = []
        for _ in range(4):
            tab = context.new_page()
            tab.goto(server.url)
            tabs.append(tab)
        for tab in tabs:
            tab.wait_for_selector("#live-img", timeout=90_000)
            tab.evaluate(COUNT_FRAMES_JS)
        last = tabs[-1]
        last.wait_for_function("() => window.__frames >= 10", timeout=90_000)
        last.wait_for_function(
            "() => { const m = /(\\d+) \\/ (\\d+)/.exec(document.querySelector('#counts')?.innerText || '');"
            " return m && Number(m[2]) > 0; }", timeout=90_000)
        last.wait_for_function("() => document.querySelector('#probs-plot polyline') !== null", timeout=60_000)
        for tab in tabs:  # every tab, each given time of its own: a loaded machine paints slowly
            tab.wait_for_function("() => window.__frames > 0", timeout=60_000)
        counts = server.counts()
        # The four are known to the server; earlier tests' tabs may have been reaped meanwhile
        # (after --session-idle-s), so the count is not compared with the one before.
        assert counts["tabs"] >= 4 and counts["session_streams"] == before["session_streams"]
        assert counts["process_streams"] == 2
        last.screenshot(path=str(ARTIFACTS / "fourth_tab.png"))
    finally:
        context.close()


@pytest.fixture(scope="module")
def auth_server(ui_model_path):
    srv = Server(ui_model_path, _free_port(), "--source", "demo", "--auth", "me:a secret")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.mark.slow
def test_with_auth_the_live_view_needs_the_login_and_then_works(browser, auth_server):
    for path in ("debug/sessions", "live/anything.jpg", "thumb/anything.jpg"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(auth_server.url + path, timeout=10)
        assert refused.value.code == 401
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    try:
        page = context.new_page()
        page.goto(auth_server.url)
        page.locator("input[type=text]").first.fill("me")
        page.locator("input[type=password]").fill("a secret")
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#live-img", timeout=60_000)
        page.evaluate(COUNT_FRAMES_JS)
        page.wait_for_function("() => window.__frames >= 10", timeout=60_000)  # the fetches carry the login
        page.wait_for_function("() => document.querySelector('img.thumb')?.naturalWidth > 0", timeout=30_000)
        token = page.locator("#live-img").get_attribute("data-token")
        with pytest.raises(urllib.error.HTTPError) as refused:  # the token alone is not enough
            urllib.request.urlopen(f"{auth_server.url}live/{token}.jpg", timeout=10)
        assert refused.value.code == 401
    finally:
        context.close()
