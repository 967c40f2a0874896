"""Every consumer of the preprocessing contract feeds the towers bit-equal inputs for the same
frames: the runtime's flow and tower stages, the naive baseline, calibration, parity scoring,
training (tower batches and cached features) and evaluation all go through twostream.preprocess.

The reference is twostream.preprocess itself over the whole clip: rgb (F, 3, H, W), flow
(F, C, H, W) (C = 2, or 4 bidirectional), and each frame's tower inputs (tower_inputs). Each
consumer is run with a backend or model that records what it is given instead of computing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calibration.dataset import CalibrationSet, read_clip
from calibration.scoring import WindowSet, tower_features
from engines.base import Backend
from realtime.naive import NaiveScorer
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import ArraySource, VideoFileSource
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.data import Clip, ClipSet
from twostream.gestures import GestureStream
from twostream.preprocess import FlowSpec, WindowPlan, preprocess_clip, tower_inputs
from twostream.training import _tower_batch, clip_features

SMALL = dict(classes=GESTURE_CLASSES, input_size=(64, 64), stack_length=4, num_segments=3, stride=2)
FEATURES = (4, 2, 2)  # what the recorders answer: (C, h, w) zeros
REAL_CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "real" / "asl_again.mkv"


class RecordingBackend(Backend):
    """Keeps every tower input it is called with (all-zero warm-up probes left out)."""

    name = "recorder"

    def __init__(self, contract: ModelContract):
        super().__init__(contract)
        self.rgb: list[np.ndarray] = []
        self.flow: list[np.ndarray] = []

    def _spatial(self, rgb):
        if rgb.any():
            self.rgb.extend(rgb.copy())
        return np.zeros((len(rgb), *FEATURES), np.float32)

    def _temporal(self, flow):
        if flow.any():
            self.flow.extend(flow.copy())
        return np.zeros((len(flow), *FEATURES), np.float32)

    def _head(self, s, t):
        return np.zeros((len(s), self.contract.num_classes), np.float32)


class RecordingNet:
    """Stands in for a TwoStreamNet in training code: records the towers' torch inputs."""

    def __init__(self, contract: ModelContract):
        self.contract = contract
        self.rgb: list[np.ndarray] = []
        self.flow: list[np.ndarray] = []

    def eval(self):
        return self

    def spatial(self, rgb: torch.Tensor) -> torch.Tensor:
        self.rgb.extend(rgb.numpy().copy())
        return torch.zeros((len(rgb), *FEATURES))

    def temporal(self, flow: torch.Tensor) -> torch.Tensor:
        self.flow.extend(flow.numpy().copy())
        return torch.zeros((len(flow), *FEATURES))


def _generated_frames() -> np.ndarray:
    return np.stack([item.bgr for item, _ in zip(GestureStream(7, (160, 120)), range(24))])


def _real_frames() -> np.ndarray:
    if not REAL_CLIP.is_file():
        pytest.skip(f"{REAL_CLIP} is absent (../shared/data)")
    source = VideoFileSource(REAL_CLIP)
    source.open()
    frames = [item[0] for item, _ in zip(iter(source.read, None), range(24))]
    source.close()
    return np.stack(frames)


@pytest.fixture(scope="module", params=["generated", "real"])
def frames(request) -> np.ndarray:
    """24 BGR frames: a generated gesture stream, and a real webcam clip when shared data is here."""
    return _generated_frames() if request.param == "generated" else _real_frames()


@pytest.fixture(scope="module", params=["none", "mean", "median", "affine", "mean bidirectional", "mean frames 48x80"])
def contract(request) -> ModelContract:
    """A small contract, with each camera-motion compensation (flow_compensation), mean
    subtraction with bidirectional stacks (flow_direction: slots of 4 channels), and flow on
    frames of their own size resized to the model's (flow_frame_size)."""
    compensation, _, rest = request.param.partition(" ")
    if rest.startswith("frames "):
        height, width = (int(n) for n in rest.split()[1].split("x"))
        return ModelContract(**SMALL, flow_compensation=compensation, flow_frame_size=(height, width))
    return ModelContract(**SMALL, flow_compensation=compensation, flow_direction=rest or "forward")


@pytest.fixture(scope="module")
def reference(frames, contract):
    """(rgb (F, 3, H, W), flow (F, C, H, W), tower inputs of frames L..F-1)."""
    rgb, flow = preprocess_clip(frames, FlowSpec.of(contract))
    length = contract.stack_length
    return rgb, flow, tower_inputs(rgb, flow, range(length, len(frames)), length)


def _assert_inputs(rgb, flow, expected) -> None:
    np.testing.assert_array_equal(np.stack(rgb), expected[0])
    np.testing.assert_array_equal(np.stack(flow), expected[1])
    assert np.stack(rgb).dtype == np.stack(flow).dtype == np.float32


def test_the_runtime_pipeline(frames, reference, contract):
    recorder = RecordingBackend(contract)
    with Pipeline(ArraySource(frames), recorder, PipelineSettings()) as pipeline:
        assert pipeline.wait(timeout=60)
    _assert_inputs(recorder.rgb, recorder.flow, reference[2])  # hop 1: every frame from L on, once


def test_the_naive_baseline(frames, reference, contract):
    recorder = RecordingBackend(contract)
    scorer = NaiveScorer(recorder)
    plan = WindowPlan.of(contract)
    ends = [end for end, frame in enumerate(frames) if scorer.push(frame) is not None]
    assert ends == list(range(plan.first_end, len(frames)))
    rgb, flow, _ = reference
    expected = [tower_inputs(rgb, flow, plan.sampled(end), contract.stack_length) for end in ends]
    _assert_inputs(recorder.rgb, recorder.flow, tuple(np.concatenate(part) for part in zip(*expected)))


def test_calibration_and_parity_scoring(frames, reference, contract):
    clip = read_clip(ArraySource(frames), contract, max_frames=len(frames))
    np.testing.assert_array_equal(clip.rgb, reference[0])
    np.testing.assert_array_equal(clip.flow, reference[1])
    length = contract.stack_length
    clips = ClipSet((clip,), GESTURE_CLASSES)
    calibration = CalibrationSet(clips, tuple((0, f) for f in range(length, len(frames))), (), "test")
    _assert_inputs(*calibration.tower_inputs(length), reference[2])
    recorder = RecordingBackend(contract)
    tower_features(recorder, WindowSet(clips, (), False, "test"), batch=5)
    _assert_inputs(recorder.rgb, recorder.flow, reference[2])


def test_training_and_evaluation(reference, contract):
    rgb, flow, expected = reference
    clips = ClipSet((Clip(rgb, flow, 3),), GESTURE_CLASSES)
    net = RecordingNet(contract)
    clip_features(net, clips, batch=5)  # the head's cached features, and evaluation's
    _assert_inputs(net.rgb, net.flow, expected)
    batch_rgb, batch_flow, labels = _tower_batch(clips, contract, np.random.default_rng(0), 16)
    assert labels.tolist() == [3] * 16
    for r, f in zip(batch_rgb.numpy(), batch_flow.numpy()):  # each row is some frame's exact inputs
        row = next(i for i in range(len(expected[0])) if np.array_equal(expected[0][i], r))
        np.testing.assert_array_equal(expected[1][row], f)


def test_compensation_removes_a_uniform_camera_pan():
    """A scene that only pans: mean and median subtraction leave (almost) no motion; without
    compensation every field shows the pan."""
    rng = np.random.default_rng(0)
    import cv2

    texture = cv2.GaussianBlur((rng.random((200, 240, 3)) * 255).astype(np.uint8), (9, 9), 3)
    frames = np.stack([texture[20:140, 20 + 2 * i:180 + 2 * i] for i in range(6)])  # 2 px right per frame: 0.8 px = 5.1 q at 64 px
    for compensation, lo, hi in (("none", 4, 40), ("mean", 0, 1.0), ("median", 0, 1.0), ("affine", 0, 1.0)):
        spec = FlowSpec("dis-medium", (64, 64), 20.0, compensation)
        _, flow = preprocess_clip(frames, spec)
        shift = np.abs(flow[2:, 0, 8:-8, 8:-8].astype(float) - 128).mean()  # x, in quantised units
        assert lo <= shift <= hi, (compensation, shift)


def test_affine_compensation_removes_a_camera_zoom_that_mean_subtraction_leaves():
    """A scene the camera zooms into (4% a frame): its field points away from the middle and
    has zero mean, so mean subtraction leaves it; the fitted affine field takes it out."""
    import cv2

    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur((rng.random((240, 240, 3)) * 255).astype(np.uint8), (9, 9), 3)
    frames = []
    for i in range(6):
        half = int(round(100 / 1.04 ** i))
        frames.append(cv2.resize(texture[120 - half:120 + half, 120 - half:120 + half], (96, 96),
                                 interpolation=cv2.INTER_AREA))
    residual = {}
    for compensation in ("mean", "affine"):
        _, flow = preprocess_clip(np.stack(frames), FlowSpec("dis-medium", (64, 64), 20.0, compensation))
        residual[compensation] = np.abs(flow[2:, :, 8:-8, 8:-8].astype(float) - 128).mean()
    assert residual["mean"] > 3.0 and residual["affine"] < 0.35 * residual["mean"], residual
