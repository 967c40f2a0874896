"""The capture stage's policies: files never drop, live sources drop the oldest and count it,
--realtime paces files at their fps, --max-frames and stop end the stream."""

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
    assert indices == sorted(indices) and indices[-1] == 59  # the newest always arrives
    assert channel.dropped > 0
    assert len(got) + channel.dropped == stage.captured == 60


def test_realtime_paces_a_file_at_its_fps():
    settings = CaptureSettings(realtime=True)
    started = time.monotonic()
    got, _, channel = _run(ArraySource(_frames(11), fps=50), settings)
    assert time.monotonic() - started >= 10 / 50 * 0.9
    gaps = np.diff([f.t_capture for f in got])
    assert np.median(gaps) == pytest.approx(1 / 50, abs=0.008)
    assert channel.dropped == 0


def test_max_frames_ends_the_stream():
    got, stage, _ = _run(ArraySource(_frames(None)), CaptureSettings(max_frames=7))
    assert len(got) == stage.captured == 7


def test_stop_ends_an_endless_live_source():
    got, stage, _ = _run(ArraySource(_frames(None), live=True, fps=100), CaptureSettings(), take=5)
    assert len(got) == 5 and not stage.alive
