"""ui.views, ui.grid, ui.webcam and ui.plots without a browser: a stream's view encodes each
frame once however many ask, throttles its thumbnail, stops waiting when closed; the grid and
the status line show each stream's state and error (escaped); the webcam source is
newest-wins."""

from __future__ import annotations

import time

import numpy as np
import pytest

from engines.torch_backend import TorchBackend
from realtime.pipeline import PipelineSettings
from realtime.sources import ArraySource, VideoFileSource
from realtime.streams import Stream, StreamState
from twostream.errors import SourceDisconnected, SourceError
from ui.grid import grid_html, status_html
from ui.plots import latency_histogram_svg, probability_svg
from ui.views import StreamView, ViewSettings
from ui.webcam import BrowserWebcamSource

SETTINGS = PipelineSettings(join_timeout_s=5.0)


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def stream_of(ui_model_path):
    """Streams started on a source, stopped at the end of the test."""
    streams = []

    def start(source, name="clip"):
        stream = Stream(name, source, TorchBackend.from_checkpoint(ui_model_path), SETTINGS).start()
        streams.append(stream)
        return stream

    yield start
    for stream in streams:
        assert stream.stop() == ()


def test_each_frame_is_encoded_once_and_the_thumbnail_is_throttled(stream_of, gesture_clip):
    stream = stream_of(VideoFileSource(gesture_clip))
    view = StreamView(stream, ViewSettings(thumb_every_s=3600.0))
    seq, jpeg = view.frame_jpeg(0, timeout=30)
    assert seq >= 1 and jpeg[:2] == b"\xff\xd8"
    assert _wait(lambda: stream.status().state is StreamState.ENDED)
    view.frame_jpeg(0, timeout=0.01)  # catch up with the file's last frame
    last = view.jpeg_seq
    assert view.frame_jpeg(last, timeout=0.05) is None  # no new frame: nothing to send
    assert view.jpeg_seq == last, "an unchanged frame was encoded twice"
    thumb_seq, thumb = view.thumbnail(0)
    assert thumb_seq == 1 and thumb[:2] == b"\xff\xd8" and len(thumb) < len(jpeg)
    assert view.thumbnail(thumb_seq) is None  # nothing newer, and not due for an hour
    assert view.thumbnail(0) == (thumb_seq, thumb)  # a new viewer gets the current one
    assert len(stream.history()) > 0
    # The view's stats are at most stats_refresh_s (0.5 s) old: they catch up with the stream.
    assert _wait(lambda: view.stats().predictions == len(stream.history()), 5.0)


def test_a_closed_view_stops_waiting(stream_of):
    frames = [np.zeros((120, 160, 3), np.uint8)] * 500
    view = StreamView(stream_of(ArraySource(frames, fps=25.0, live=True, name="camera 3")))
    assert view.frame_jpeg(0, timeout=30) is not None
    view.close()
    started = time.monotonic()
    assert view.frame_jpeg(10**9, timeout=30) is None and time.monotonic() - started < 5.0


def test_grid_and_status_line_show_states_and_errors_escaped(stream_of, tmp_path):
    garbage = tmp_path / "<i>broken.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(20_000))
    failed = StreamView(stream_of(VideoFileSource(garbage), "bad"))
    assert _wait(lambda: failed.status().state is StreamState.FAILED)
    live = StreamView(stream_of(ArraySource([np.zeros((120, 160, 3), np.uint8)] * 500, fps=25.0, live=True,
                                            name="camera 3"), "door"))
    assert _wait(lambda: live.status().state is StreamState.LIVE)
    grid = grid_html((live, failed), watching="door")
    assert "data-stream='door' data-state='live' data-selected" in grid
    assert "data-stream='bad' data-state='failed'>" in grid
    assert "&lt;i&gt;broken.mp4" in grid and "<i>" not in grid
    assert f"data-token='{live.token}'" in grid and f"data-token='{failed.token}'" in grid
    line = status_html(failed, None)
    assert "data-state='failed'" in line and "cannot open video file" in line
    refused = status_html(live, "refused: 2 of 2 own-source sessions are in use (--max-sessions 2)")
    assert "data-state='error'" in refused and "--max-sessions 2" in refused


def test_webcam_source_is_newest_wins_and_times_out():
    source = BrowserWebcamSource(read_timeout_s=0.2)
    source.open()
    source.push(np.zeros((4, 4, 3), np.uint8))
    source.push(np.full((4, 4, 3), 9, np.uint8))
    frame, _ = source.read()
    assert frame[0, 0, 0] == 9
    with pytest.raises(SourceDisconnected):
        source.read()
    with pytest.raises(SourceError):
        source.push(np.zeros((4, 4), np.float32))
    source.finish()
    assert source.read() is None


def test_plots_render_svg(stream_of, gesture_clip):
    assert "no predictions yet" in probability_svg((), now=0.0)
    assert "no predictions yet" in latency_histogram_svg(())
    stream = stream_of(VideoFileSource(gesture_clip))
    assert _wait(lambda: stream.status().state is StreamState.ENDED)
    history = stream.history()
    svg = probability_svg(history, now=history[-1].t_scored)
    assert svg.count("<polyline") == len(history[0].classes)
    assert "p95" in latency_histogram_svg([p.latency_ms for p in history])
