"""The calibration set sees exactly what inference sees: the runtime's own sources, and frames,
flow fields and 2L stacks bit-equal to what the flow stage writes into its rings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.dataset import CalibrationSettings, build_calibration_set, expand_source, read_clip
from realtime.channel import Channel
from realtime.flowstage import FlowStage
from realtime.messages import Frame
from realtime.rings import FlowRing, FrameRing
from realtime.sources import DemoSource, ImageFolderSource, VideoFileSource
from realtime.stage import Control
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import DataError, SourceError
from twostream.gestures import GestureStream
from twostream.preprocess import FlowSpec, WindowPlan

CONTRACT = ModelContract(classes=GESTURE_CLASSES, input_size=(64, 64), stack_length=3, num_segments=3, stride=2)


def _frames(count: int, seed: int = 5, size=(160, 120)) -> list[np.ndarray]:
    return [item.bgr for item, _ in zip(GestureStream(seed, size), range(count))]


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return _write_video(tmp_path_factory.mktemp("video") / "clip.mp4", _frames(30))


def _through_the_flow_stage(frames: list[np.ndarray]) -> tuple[FrameRing, FlowRing]:
    """What the running pipeline stores for these decoded frames."""
    size = CONTRACT.input_size
    inbox, outbox = Channel(len(frames)), Channel(len(frames))
    for i, bgr in enumerate(frames):
        inbox.put(Frame(i, float(i), float(i), bgr, 0.0), 0.1)
    inbox.close()
    frame_ring, flow_ring = FrameRing(len(frames), size), FlowRing(len(frames), size)
    FlowStage(Control(), inbox, outbox, frame_ring, flow_ring, FlowSpec.of(CONTRACT)).loop()
    return frame_ring, flow_ring


def test_frames_fields_and_stacks_equal_the_runtimes(video):
    calibration = build_calibration_set([str(video)], CONTRACT, CalibrationSettings(frames_per_source=30))
    decoded = []
    source = VideoFileSource(video)
    source.open()
    while (item := source.read()) is not None:
        decoded.append(item[0])
    source.close()
    frame_ring, flow_ring = _through_the_flow_stage(decoded)
    clip = calibration.clips.clips[0]
    assert len(clip.rgb) == len(decoded) == 30
    np.testing.assert_array_equal(clip.rgb, frame_ring.window(29, 30))
    np.testing.assert_array_equal(clip.flow, flow_ring.window(29, 30))
    length = CONTRACT.stack_length
    rgb, stacks = calibration.tower_inputs(length)
    for row, (_, frame) in enumerate(calibration.tower_frames):
        np.testing.assert_array_equal(stacks[row], flow_ring.stack(frame, length))
        np.testing.assert_array_equal(rgb[row], frame_ring.rgb(frame))
    assert rgb.dtype == stacks.dtype == np.float32


def test_samples_are_spread_and_need_full_stacks_and_windows(video):
    settings = CalibrationSettings(frames_per_source=30, tower_samples=10, head_windows=5)
    calibration = build_calibration_set([str(video)], CONTRACT, settings)
    frames = [f for _, f in calibration.tower_frames]
    ends = [e for _, e in calibration.windows]
    assert len(frames) == 10 and min(frames) == CONTRACT.stack_length and max(frames) == 29
    assert len(ends) == 5 and min(ends) == WindowPlan.of(CONTRACT).first_end and max(ends) == 29


def test_sources_are_the_runtimes_own(video, tmp_path):
    videos = tmp_path / "videos"
    (videos / "a").mkdir(parents=True)
    (videos / "b").mkdir()
    _write_video(videos / "a" / "1.mp4", _frames(12))
    _write_video(videos / "b" / "2.avi", _frames(12, seed=6))
    images = tmp_path / "images"
    images.mkdir()
    for i, frame in enumerate(_frames(12)):
        cv2.imwrite(str(images / f"f{i}.png"), frame)
    settings = CalibrationSettings()
    assert [type(s) for s in expand_source(str(videos), settings)] == [VideoFileSource, VideoFileSource]
    assert [type(s) for s in expand_source(str(images), settings)] == [ImageFolderSource]
    assert [type(s) for s in expand_source(str(video), settings)] == [VideoFileSource]
    (demo,) = expand_source("demo", settings)
    # Neither the training seed (0) nor the held-out parity seed (1000).
    assert isinstance(demo, DemoSource) and demo.seed == 2000
    calibration = build_calibration_set([str(videos), str(images)], CONTRACT)
    assert len(calibration.clips) == 3 and "2.avi" in calibration.description


def test_the_demo_stream_calibrates(tmp_path):
    clip = read_clip(expand_source("demo", CalibrationSettings())[0], CONTRACT, 12)
    assert clip.rgb.shape == (12, 3, 64, 64) and clip.flow.shape == (12, 2, 64, 64)


@pytest.mark.parametrize("make, error, words", [
    (lambda tmp: tmp, SourceError, "no images"),  # an empty folder
    (lambda tmp: tmp / "missing.mp4", SourceError, "no such file"),
    (lambda tmp: _write_video(tmp / "short.mp4", _frames(5)), DataError, "no usable window"),
])
def test_empty_or_short_sources_fail_clearly(tmp_path, make, error, words):
    with pytest.raises(error, match=words):
        build_calibration_set([str(make(tmp_path))], CONTRACT)


def test_no_source_at_all():
    with pytest.raises(DataError, match="no calibration source"):
        build_calibration_set([], CONTRACT)
