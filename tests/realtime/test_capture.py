"""The capture stage's policies: files never drop, live sources drop the oldest and count it,
--realtime paces files at their fps on a fixed schedule and skips to catch up with it (counted
as drops), --max-frames and stop end the stream."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from realtime.capture import CaptureSettings, CaptureStage, capture_channel
from realtime.channel import EndOfStream
from realtime.sources import ArraySource
from realtime.stage import Control


def _frames(count: int | None):
    frame = np.zeros((8, 8, 3), np.uint8)
    return itertools.repeat(frame, count) if count is not None else itertools.repeat(frame)


def _run(source, settings: CaptureSettings, consume_s: float = 0.0, take: int | None = None):
    """Start a capture stage, take frames (sleeping ``consume_s`` per frame, like a slow
    pipeline) until the stream ends or ``take`` frames; returns (frames, stage, channel)."""
    control = Control(poll_s=0.01)
    channel = capture_channel(source, settings)
    source.open()
    stage = CaptureStage(control, source, channel, settings, on_capture=lambda frame: None)
    stage.start()
    got = []
    try:
        while take is None or len(got) < take:
            try:
                frame = channel.get(2.0)
            except EndOfStream:
                break
            assert frame is not None, "capture stalled"
            got.append(frame)
            time.sleep(consume_s)
    finally:
        control.stop.set()
        while True:  # drain, so the stage's last put never waits on us
            try:
                channel.get(0.05)
            except EndOfStream:
                break
        assert stage.join(5.0)
    assert control.error is None
    return got, stage, channel


def test_files_apply_back_pressure_and_drop_nothing():
    got, stage, channel = _run(ArraySource(_frames(30)), CaptureSettings(file_queue=2), consume_s=0.005)
    assert [f.index for f in got] == list(range(30))
    assert channel.dropped == 0 and stage.captured == 30
    times = [f.t_capture for f in got]
    assert times == sorted(times)


def test_live_sources_keep_the_newest_frame_and_count_drops():
    source = ArraySource(_frames(60), live=True, fps=200)
    got, stage, channel = _run(source, CaptureSettings(), consume_s=0.03)
    indices = [f.index for f in got]
    assert indices == sorted(indices)
    # The newest always arrives, unless the capture itself was over a frame behind at the end
    # and skipped it (a hiccup of this noisy machine): then it is counted like any other drop.
    assert indices[-1] == 59 or stage.skipped > 0
    assert channel.dropped > 0
    assert len(got) + channel.dropped == stage.captured == 60


def test_realtime_paces_a_file_at_its_fps():
    settings = CaptureSettings(realtime=True)
    started = time.monotonic()
    got, stage, channel = _run(ArraySource(_frames(11), fps=50), settings)
    assert time.monotonic() - started >= 10 / 50 * 0.9
    gaps = np.diff([f.t_capture for f in got])
    assert np.median(gaps) == pytest.approx(1 / 50, abs=0.008)
    # Reads are instant, so drops come only from a hiccup of this noisy machine, and add up.
    assert len(got) + channel.dropped == stage.captured == 11 and channel.dropped == stage.skipped
    due = np.array([f.t_due for f in got]) - got[0].t_due
    np.testing.assert_allclose(due, [f.index / 50 for f in got], atol=1e-6)  # a fixed schedule


def test_max_frames_ends_the_stream():
    got, stage, _ = _run(ArraySource(_frames(None)), CaptureSettings(max_frames=7))
    assert len(got) == stage.captured == 7


def test_stop_ends_an_endless_live_source():
    got, stage, _ = _run(ArraySource(_frames(None), live=True, fps=100), CaptureSettings(), take=5)
    assert len(got) == 5 and not stage.alive


class _SlowRead(ArraySource):
    """A source whose reads take ``read_s`` (a decoder slower than the file's fps)."""

    def __init__(self, count: int, fps: float, read_s: float, *, cheap_skip: bool = True, live: bool = False):
        super().__init__(_frames(count), fps=fps, live=live)
        self.read_s, self.skips_cheaply = read_s, cheap_skip

    def read(self):
        time.sleep(self.read_s)
        return super().read()

    def skip(self) -> bool:
        # Skipping costs nothing here (as cap.grab() costs less than a read); without cheap
        # skips it is a read, the default.
        return super().read() is not None if self.skips_cheaply else super().skip()


FPS, READ_S = 100.0, 0.015  # 10 ms a frame, 15 ms a read: 5 ms later every frame


def test_a_realtime_file_read_slower_than_its_fps_skips_to_stay_on_its_clock():
    got, stage, channel = _run(_SlowRead(150, FPS, READ_S), CaptureSettings(realtime=True))
    indices = [f.index for f in got]
    assert stage.captured == 150 and stage.skipped > 0
    assert len(got) + channel.dropped == 150 and channel.dropped >= stage.skipped  # skips are drops
    assert indices == sorted(set(indices)) and max(np.diff(indices)) > 1  # gaps where it skipped
    t0 = got[0].t_due - got[0].index / FPS
    np.testing.assert_allclose([f.t_due - t0 for f in got], [f.index / FPS for f in got], atol=1e-6)
    lags = [f.t_capture - f.t_due for f in got]
    assert min(lags) >= READ_S * 0.99  # due before the read began, read ended after READ_S
    # Without skipping, frame k would be read at least 5 ms x k late: 0.75 s by the end.
    assert lags[-1] < 0.5


def test_a_back_pressured_file_never_skips():
    got, stage, channel = _run(_SlowRead(30, FPS, READ_S), CaptureSettings(realtime=False))
    assert [f.index for f in got] == list(range(30))
    assert stage.skipped == 0 and channel.dropped == 0
    assert all(f.t_due == f.t_capture for f in got)  # no clock: due when read


def test_a_paced_source_that_cannot_skip_cheaply_delivers_fewer_frames_without_a_backlog():
    """The demo's case: a skip would cost a render, so a generator slower than its fps is a
    slower camera: its schedule moves, its lag stays under an interval, frames have no gaps."""
    got, stage, channel = _run(_SlowRead(80, FPS, READ_S, cheap_skip=False, live=True), CaptureSettings())
    assert stage.skipped == 0 and len(got) + channel.dropped == 80
    # Held to the old schedule the last frame would be >= 5 ms x 79 = 0.4 s late; now each
    # frame's lag is its own read (15 ms) plus whatever the scheduler adds.
    assert got[-1].t_capture - got[-1].t_due < 0.2
    frames_per_s = (len(got) + channel.dropped - 1) / (got[-1].t_capture - got[0].t_capture)
    assert frames_per_s < FPS  # the slower camera shows in the input rate