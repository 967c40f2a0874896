"""Live network sources on loopback: an MJPEG-over-HTTP server in a thread, and a real RTSP
server (GStreamer's gst-rtsp-server, run by the system Python) read through the app."""

from __future__ import annotations

import json
import os
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
from realtime.sources import SourceSettings, StreamUrlSource
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
