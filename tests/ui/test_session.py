"""ui.session, ui.sources, ui.webcam and ui.plots without a browser: a session's pipeline
starts, shows frames once each, turns errors into a status, frees its threads on close; the
webcam source is newest-wins. What the page may open: test_page_sources.py."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engines.torch_backend import TorchBackend
from realtime.pipeline import PipelineSettings
from realtime.sources import ArraySource, VideoFileSource
from twostream.errors import SourceDisconnected, SourceError
from ui.plots import latency_histogram_svg, probability_svg
from ui.session import ENDED, ERROR, RUNNING, LiveSession, SessionSettings
from ui.webcam import BrowserWebcamSource


@pytest.fixture()
def session(ui_model_path):
    s = LiveSession(lambda: TorchBackend.from_checkpoint(ui_model_path),
                    SessionSettings(pipeline=PipelineSettings(join_timeout_s=5.0)))
    yield s
    s.close()


def _wait(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_file_runs_to_the_end_and_each_frame_is_encoded_once(session, gesture_clip):
    threads_before = threading.active_count()
    assert session.switch(VideoFileSource(gesture_clip)).state in (RUNNING, ENDED)
    seq, jpeg = session.frame_jpeg(0, timeout=30)
    assert seq >= 1 and jpeg[:2] == b"\xff\xd8"
    assert _wait(lambda: session.status().state == ENDED)
    assert "ended after" in session.status().message and len(session.history()) > 0
    session.frame_jpeg(0, timeout=0.01)  # catch up with the file's last frame
    last = session.jpeg_seq
    assert session.frame_jpeg(last, timeout=0.05) is None  # no new frame: nothing to send
    assert session.jpeg_seq == last, "an unchanged frame was encoded twice"
    session.close()
    assert not session.running and threading.active_count() <= threads_before


def test_bad_sources_become_an_error_status(session, tmp_path):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(20_000))
    status = session.switch(VideoFileSource(garbage))
    assert status.state == ERROR and "broken.mp4" in status.message
    ok = session.switch(ArraySource([np.zeros((120, 160, 3), np.uint8)] * 40))
    assert ok.state in (RUNNING, ENDED), ok.message  # the session recovers after an error


class _VanishingCamera(ArraySource):
    """A live source that delivers a few frames, then disconnects, as an unplugged camera."""

    def __init__(self):
        super().__init__([np.zeros((120, 160, 3), np.uint8)] * 5, fps=25.0, live=True, name="camera 7")

    def read(self):
        got = super().read()
        if got is None:
            raise SourceDisconnected("camera 7 stopped delivering frames")
        return got


def test_a_source_that_fails_while_running_becomes_an_error_status(session):
    assert session.switch(_VanishingCamera()).state in (RUNNING, ERROR)
    assert _wait(lambda: session.status().state == ERROR)
    assert "camera 7 stopped delivering frames" in session.status().message
    assert not session.running


def test_webcam_pushes_switch_to_a_webcam_pipeline_and_close_unblocks_it(session):
    rng = np.random.default_rng(0)
    session.push_webcam(rng.integers(0, 255, (240, 320, 3), np.uint8))
    for _ in range(40):
        session.push_webcam(rng.integers(0, 255, (240, 320, 3), np.uint8))
        time.sleep(0.02)
    assert session.status().state == RUNNING and "webcam" in session.status().message
    started = time.monotonic()
    session.close()
    assert time.monotonic() - started < 5.0 and not session.running


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


def test_plots_render_svg(session, gesture_clip):
    assert "no predictions yet" in probability_svg((), now=0.0)
    assert "no predictions yet" in latency_histogram_svg(())
    session.switch(VideoFileSource(gesture_clip))
    assert _wait(lambda: session.status().state == ENDED)
    history = session.history()
    svg = probability_svg(history, now=history[-1].t_scored)
    assert svg.count("<polyline") == len(history[0].classes)
    assert "p95" in latency_histogram_svg([p.latency_ms for p in history])


def test_a_refused_source_stays_the_status_until_the_next_switch(session):
    """The page's refresh shows ``status()`` every second: a refusal must not vanish with it."""
    frames = [np.zeros((120, 160, 3), np.uint8)] * 500  # 20 s at 25 frames/s, paced as live
    assert session.switch(ArraySource(frames, fps=25.0, live=True, name="camera 3")).state == RUNNING
    refused = session.refuse("refused stream 'rtsp://x/': start it with --allow-url PREFIX")
    assert refused.state == ERROR and "--allow-url" in refused.message
    assert "still running: camera 3" in refused.message
    time.sleep(0.2)
    assert session.status() == refused and session.running  # the old source goes on
    assert session.switch(ArraySource(frames[:40])).state in (RUNNING, ENDED)
    assert "refused" not in session.status().message
