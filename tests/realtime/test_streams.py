"""Live network sources on loopback: an MJPEG-over-HTTP server in a thread, and a real RTSP
server (GStreamer's gst-rtsp-server, run by the system Python) read through the app, and
stopped and restarted under a running stream to see it reconnect."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest

from engines.torch_backend import TorchBackend
from realtime.capture import CaptureSettings
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import DemoSource, SourceSettings, StreamUrlSource
from realtime.streams import StreamState
from realtime.streamset import StreamSet
from twostream.gestures import GestureStream

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"



class _MjpegHandler(BaseHTTPRequestHandler):
    """multipart/x-mixed-replace JPEG frames at ~25 fps, as IP cameras serve them."""

    frames: list[bytes] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        try:
            for i in range(10_000):
                jpeg = self.frames[i % len(self.frames)]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                 + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                time.sleep(0.04)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up: the normal end

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mjpeg_url():
    frames = [cv2.imencode(".jpg", item.bgr)[1].tobytes()
              for item, _ in zip(GestureStream(5, (160, 120)), range(50))]
    handler = type("Handler", (_MjpegHandler,), {"frames": frames})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_mjpeg_http_stream_is_read_and_scored(random_model, mjpeg_url):
    source = StreamUrlSource(mjpeg_url, SourceSettings(open_timeout_s=5, read_timeout_s=5))
    settings = PipelineSettings(capture=CaptureSettings(max_frames=40))
    with Pipeline(source, TorchBackend(random_model), settings) as pipeline:
        assert pipeline.wait(timeout=60)
    stats = pipeline.stats()
    assert stats.frames == 40
    assert source.live
    # A live source may drop under load; every frame it kept past the first window is scored.
    assert stats.predictions == 40 - stats.dropped - pipeline.plan.first_end
    assert stats.predictions > 0


def _has_rtsp_server() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "import sys; sys.exit(0 if Gst.ElementFactory.find('x264enc') else 1)")
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30).returncode == 0


@pytest.fixture
def rtsp_url():
    if not _has_rtsp_server():
        pytest.skip("no GStreamer RTSP server here (apt: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 "
                    "gstreamer1.0-plugins-ugly ...)")
    server = subprocess.Popen([SYSTEM_PYTHON, str(ROOT / "tests" / "rtsp_server.py"), "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # the server prints READY once it listens
        if not line.startswith("READY "):
            server.kill()
            pytest.fail(f"RTSP server did not start: {line!r} {server.stderr.read()!r}")
        yield line.split()[1]
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_app_reads_and_scores_a_real_rtsp_stream(model_path, rtsp_url):
    env = dict(os.environ)
    # No transport option at all: OpenCV's FFmpeg backend reads RTSP over TCP by default.
    env.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
    done = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--source", rtsp_url, "--no-ui", "--backend", "torch",
         "--model", str(model_path),
         "--max-frames", "50"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = [r for r in map(json.loads, done.stdout.splitlines()) if "status" not in r]  # predictions
    assert lines, done.stderr
    assert {"frame", "t_capture", "label", "score", "topk", "latency_ms", "dropped"} <= set(lines[0])
    summary = json.loads(done.stderr.strip().splitlines()[-1].removeprefix("summary: "))
    assert summary["frames"] == 50
    assert summary["predictions"] == len(lines) == 50 - summary["dropped"] - 22
    assert summary["threads_not_joined"] == []


class _RtspServer:
    """tests/rtsp_server.py on one fixed port, so it can be killed and started again on the
    same URL."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"rtsp://127.0.0.1:{self.port}/test"
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it; the monotonic time its READY line came (it listens from then on)."""
        self.process = subprocess.Popen([SYSTEM_PYTHON, str(ROOT / "tests" / "rtsp_server.py"), str(self.port)],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        ready = time.monotonic()
        if line.strip() != f"READY {self.url}":
            self.kill()
            pytest.fail(f"RTSP server did not start on port {self.port}: {line!r} {self.process.stderr.read()!r}")
        return ready

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_dropped_rtsp_stream_reconnects_while_the_other_stream_goes_on(random_model, monkeypatch):
    """Kill the RTSP server mid-stream, restart it on the same port 3 s later: the stream goes
    reconnecting, then live again on fresh windows, and the demo stream beside it never stops.
    Prints the time from the server's return (READY) to the first prediction after it."""
    if not _has_rtsp_server():
        pytest.skip("no GStreamer RTSP server here (apt: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 "
                    "gstreamer1.0-plugins-ugly ...)")
    # FFmpeg's capture options as app.py sets them (no frame-rate probe: an open takes 0.44 s, not 1.25).
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|fpsprobesize;0")
    server = _RtspServer()
    server.start()
    statuses = []
    try:
        with StreamSet(TorchBackend(random_model), on_status=statuses.append) as streams:
            camera = streams.add("cam", StreamUrlSource(server.url, SourceSettings(open_timeout_s=5, read_timeout_s=2)))
            demo = streams.add("demo", DemoSource(size=(160, 120)))
            assert camera.next_prediction(timeout=60) is not None and demo.next_prediction(timeout=60) is not None
            time.sleep(1.0)
            server.kill()
            killed = time.monotonic()
            _wait_until(lambda: camera.status().state is StreamState.RECONNECTING, 30, "the drop to be noticed")
            time.sleep(max(0.0, killed + 3.0 - time.monotonic()))
            ready = server.start()
            _wait_until(lambda: len(camera.connection_starts) == 2 and camera.latest is not None
                        and camera.latest.index >= camera.connection_starts[1], 30, "a prediction after the gap")
            first_after = min((p for p in camera.history() if p.index >= camera.connection_starts[1]),
                              key=lambda p: p.index)
            during = [p for p in demo.history() if killed < p.t_scored < ready]
    finally:
        server.kill()
    back_after = first_after.t_scored - ready
    live_at = [s.since for s in statuses if s.name == "cam" and s.state is StreamState.LIVE][-1]
    print(f"\nRTSP reconnect: first prediction {back_after:.2f} s after the server's READY (live again "
          f"after {live_at - ready:.2f} s, then a full window); reconnects {camera.status().reconnects}; "
          f"demo predictions during the {ready - killed:.1f} s outage: {len(during)}")
    states = [s.state for s in statuses if s.name == "cam"]
    live_again = states.index(StreamState.RECONNECTING) + 1
    assert states[live_again] is StreamState.LIVE and camera.status().reconnects >= 1
    assert first_after.window_start >= camera.connection_starts[1]  # no window spans the gap
    assert len(during) >= 10, "the demo stream stopped while the camera was away"
    assert StreamState.FAILED not in [s.state for s in statuses]
    assert back_after < 10.0
