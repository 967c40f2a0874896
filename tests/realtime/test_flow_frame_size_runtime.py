"""contract.flow_frame_size in the live runtime: the device flow stage (tvl1-torch on "cpu", the
code CUDA runs) computes flow on greys of that size and writes fields of the model's size, as
the FlowTracker does; a model with it runs through the host stage in app.py's pipeline.
The host flow stage is checked bit for bit in tests/test_preprocess_consumers.py."""

from __future__ import annotations

import numpy as np
import pytest

from engines.torch_backend import TorchBackend
from realtime.channel import Channel
from realtime.deviceflow import DeviceFlowStage, own_fields
from realtime.messages import Frame
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.rings import FlowRing, FrameRing
from realtime.sources import ArraySource
from realtime.stage import Control
from twostream.contract import ModelContract
from twostream.preprocess import FlowSpec, FlowTracker

SIZE = (64, 64)
CONTRACT = ModelContract(classes=("still", "left", "right"), input_size=SIZE, flow_method="tvl1-torch",
                         flow_frame_size=(96, 128), stack_length=2, num_segments=2, stride=2)
SPEC = FlowSpec.of(CONTRACT, device="cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def frames(make_stream):
    return make_stream(8, seed=5)[0]  # 160 x 120 generated gestures: a hand moving


def test_the_device_stage_runs_flow_at_the_frame_size_and_writes_the_models(frames):
    inbox, outbox = Channel(len(frames)), Channel(len(frames))
    for i, bgr in enumerate(frames):
        inbox.put(Frame(i, float(i), float(i), bgr, 0.0), 0.1)
    inbox.close()
    ring = FlowRing(len(frames), SIZE, "cpu", SPEC.channels)
    DeviceFlowStage(Control(), inbox, outbox, FrameRing(len(frames), SIZE, "cpu"), ring, SPEC, own_fields(SPEC)).loop()
    fields = ring.window(len(frames) - 1, len(frames)).numpy()
    tracker = FlowTracker(SPEC)
    expected = np.stack([tracker.push(bgr)[1] for bgr in frames])
    assert fields.shape == expected.shape == (len(frames), 2, *SIZE)
    # The device stage resizes the greys with torch (torchprep.FrameResizer), the tracker with
    # OpenCV: equal to within one grey level at this size, so the fields agree almost everywhere.
    differ = np.abs(fields.astype(int) - expected.astype(int))
    assert (differ == 0).mean() > 0.95 and differ.mean() < 0.2, (differ == 0).mean()


def test_a_model_with_its_own_flow_frame_size_runs_in_the_pipeline(frames, make_perturbed_model):
    backend = TorchBackend(make_perturbed_model(CONTRACT))
    predictions = []
    pipeline = Pipeline(ArraySource(frames), backend, PipelineSettings(), on_prediction=predictions.append).start()
    try:
        assert pipeline.wait(120)
    finally:
        pipeline.stop()
    # windows end at (T-1) tau + L = 4 .. 7, each scored from fields of the model's 64 x 64
    assert [p.index for p in predictions] == [4, 5, 6, 7]
    assert all(np.isfinite(p.logits).all() for p in predictions)
