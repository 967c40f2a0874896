"""Overload must not hide lag: a file played with --realtime whose reads are slower than its
fps. Glass-to-label latency counts from when each frame was due on the file's clock, lag_ms
says how late the capture read it, and the capture skips to stay on the clock (skips counted
as drops, gaps in the frame numbers) instead of drifting further behind with every frame."""

from __future__ import annotations

import time

import cv2
import pytest

from engines.torch_backend import TorchBackend
from realtime.capture import CaptureSettings
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.records import prediction_record
from realtime.sources import VideoFileSource
from twostream.gestures import GestureStream

FPS = 100.0
READ_S = 0.015  # each read 5 ms over the 10 ms frame interval
FRAMES = 400  # 4 s of clip: unskipped, the last frame would be read 2 s late


@pytest.fixture(scope="module")
def clip_100fps(tmp_path_factory):
    path = tmp_path_factory.mktemp("lag") / "clip-100fps.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (160, 120))
    for item, _ in zip(GestureStream(5, (160, 120), FPS), range(FRAMES)):
        writer.write(item.bgr)
    writer.release()
    return path


class SlowDecodeFile(VideoFileSource):
    """A video file whose reads take READ_S longer (a decoder slower than the file's fps);
    ``skip`` (grab) keeps its real cost. Counts the skips."""

    def __init__(self, path):
        super().__init__(path)
        self.skips = 0

    def read(self):
        time.sleep(READ_S)
        return super().read()

    def skip(self) -> bool:
        skipped = super().skip()
        self.skips += skipped
        return skipped


@pytest.fixture(scope="module")
def backend(random_model):
    return TorchBackend(random_model)


def _run(path, backend, realtime: bool):
    """Score the whole clip; (source, every prediction, final stats)."""
    source = SlowDecodeFile(path)
    predictions = []
    settings = PipelineSettings(capture=CaptureSettings(realtime=realtime))
    with Pipeline(source, backend, settings, on_prediction=predictions.append) as pipeline:
        assert pipeline.wait(timeout=120)
    return source, predictions, pipeline.stats()


def test_a_realtime_file_read_too_slowly_skips_and_its_latency_counts_the_lag(clip_100fps, backend):
    source, predictions, stats = _run(clip_100fps, backend, realtime=True)
    assert len(predictions) >= 5
    for p in predictions:
        # Due before its read began, read READ_S later: every frame is at least READ_S late,
        # and glass to label counts that lag (the old measurement, from t_capture, did not).
        assert p.lag_ms >= READ_S * 1000 * 0.99
        assert p.latency_ms == pytest.approx((p.t_scored - p.t_capture) * 1000 + p.lag_ms, abs=1e-6)
        record = prediction_record(p, [0, 0])
        assert record["lag_ms"] == round(p.lag_ms, 3) and record["latency_ms"]["total"] == round(p.latency_ms, 3)
    indices = [p.index for p in predictions]
    assert indices == sorted(set(indices)) and indices[-1] < FRAMES
    assert max(b - a for a, b in zip(indices, indices[1:])) > 1  # gaps: frames skipped or dropped
    assert source.skips > 0  # it caught up by skipping, and the skips are counted as drops
    assert predictions[-1].dropped > 0 and stats.dropped >= source.skips
    # Bounded: without skipping, the lag grows 5 ms a frame (2 s by the last frame).
    assert predictions[-1].lag_ms < 500
    assert stats.stage("lag").p50 >= READ_S * 1000 * 0.99 and stats.stage("total").p50 >= stats.stage("lag").p50


def test_a_file_read_with_back_pressure_never_skips(clip_100fps, backend):
    source, predictions, stats = _run(clip_100fps, backend, realtime=False)
    assert source.skips == 0 and stats.dropped == 0
    assert [p.index for p in predictions] == list(range(FRAMES - len(predictions), FRAMES))
    assert all(p.lag_ms == 0 for p in predictions)  # no clock to fall behind
