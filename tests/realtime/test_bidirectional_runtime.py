"""Bidirectional stacks in the live runtime: the device flow stage (tvl1-torch on "cpu", the code
CUDA runs) and the shared flow worker compute both directions of each pair into 4-channel ring
slots, equal to the FlowTracker's; a flow spec of the other direction is refused; and a model
fitted with ``train.py fit --flow-direction bidirectional`` runs in app.py.

The host flow stage (OpenCV methods) is checked bit for bit against training and calibration in
tests/test_preprocess_consumers.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import build_engine
import train
from engines.enginedir import read_engine
from engines.torch_backend import TorchBackend
from realtime.channel import Channel
from realtime.deviceflow import DeviceFlowStage, own_fields
from realtime.errors import PipelineError
from realtime.flowbatch import SharedFlow
from realtime.messages import Frame
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.rings import FlowRing, FrameRing
from realtime.sources import ArraySource
from realtime.stage import Control
from twostream.checkpoint import read_checkpoint
from twostream.contract import ModelContract
from twostream.preprocess import NO_MOTION, FlowSpec, FlowTracker, stack_fields

ROOT = Path(__file__).resolve().parents[2]
SIZE = (64, 64)
CONTRACT = ModelContract(classes=("still", "left", "right"), input_size=SIZE, flow_method="tvl1-torch",
                         flow_direction="bidirectional", stack_length=2, num_segments=2, stride=2)
SPEC = FlowSpec.of(CONTRACT, device="cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def frames(make_stream):
    return make_stream(8, seed=5)[0]  # 160 x 120 generated gestures: a hand moving


def run_stage(frames: np.ndarray, fields_fn) -> FlowRing:
    inbox, outbox = Channel(len(frames)), Channel(len(frames))
    for i, bgr in enumerate(frames):
        inbox.put(Frame(i, float(i), float(i), bgr, 0.0), 0.1)
    inbox.close()
    flow_ring = FlowRing(len(frames), SIZE, "cpu", SPEC.channels)
    DeviceFlowStage(Control(), inbox, outbox, FrameRing(len(frames), SIZE, "cpu"), flow_ring, SPEC, fields_fn).loop()
    return flow_ring


def test_the_device_stage_writes_both_directions_as_the_tracker_does(frames):
    ring = run_stage(frames, own_fields(SPEC)).window(len(frames) - 1, len(frames)).numpy()
    tracker = FlowTracker(SPEC)
    expected = np.stack([tracker.push(bgr)[1] for bgr in frames])
    assert ring.shape == expected.shape == (len(frames), 4, *SIZE)
    # torchprep's resize equals OpenCV's on these frames (tests/realtime/test_device_flow.py), so
    # the fields are bit-equal here
    np.testing.assert_array_equal(ring, expected)
    assert (ring[0] == NO_MOTION).all() and (ring[1:] != NO_MOTION).mean() > 0.01
    stack = FlowRing(len(frames), SIZE, "cpu", 4)
    for seq, field in enumerate(ring):
        stack.write(seq, torch.from_numpy(field))
    np.testing.assert_array_equal(stack.stack(5, 2).numpy(), stack_fields(expected[4:6]))


def test_the_shared_flow_worker_batches_both_directions(frames):
    with SharedFlow(SPEC) as shared:
        client = shared.client()
        try:
            ring = run_stage(frames[:4], client.fields).window(3, 4).numpy()
        finally:
            client.close()
    np.testing.assert_array_equal(ring, run_stage(frames[:4], own_fields(SPEC)).window(3, 4).numpy())


def test_a_flow_spec_of_the_other_direction_is_refused(frames, make_perturbed_model):
    backend = TorchBackend(make_perturbed_model(CONTRACT))
    forward = FlowSpec("tvl1-torch", SIZE, CONTRACT.flow_bound, device="cpu")
    with pytest.raises(PipelineError, match="forward fields but the model's stacks are bidirectional"):
        Pipeline(ArraySource(frames), backend, PipelineSettings(), flow_spec=forward)


def test_a_fitted_bidirectional_model_runs_live(tmp_path, frames):
    """train.py fit --flow-direction bidirectional (tiny, 1 epoch each), its card, an ONNX Runtime
engine built from it (parity on bidirectional windows), then app.py on a clip with each."""
    model = tmp_path / "bidir.pt"
    argv = ["fit", "--out", str(model), "--flow-direction", "bidirectional", "--flow-compensation", "mean",
            "--input-size", "48", "--stack-length", "2", "--segments", "2", "--stride", "2", "--frames", "12",
            "--batch", "8", "--samples-per-clip", "2", "--per-clip", "2", "--workers", "1", "--no-real",
            "--head-clips-per-class", "1", "--clips-per-class", "1", "--val-clips-per-class", "1",
            "--tower-epochs", "1", "--head-epochs", "1"]
    assert train.main(argv) == 0
    contract = read_checkpoint(model).contract
    assert (contract.flow_direction, contract.flow_compensation) == ("bidirectional", "mean")
    assert train.main(["card", "--model", str(model)]) == 0
    assert "pairs 1..L/2 flow(frame i -> frame i-1)" in model.with_suffix(".md").read_text()
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, frames.shape[2:0:-1])
    for bgr in frames:
        writer.write(bgr)
    writer.release()
    engine = tmp_path / "ort"  # parity windows built from the contract: bidirectional stacks
    assert build_engine.main(["--model", str(model), "--backend", "onnxruntime", "--precision", "fp32",
                              "--out", str(engine), "--heldout-clips-per-class", "1", "--per-clip", "2",
                              "--quiet"]) == 0
    assert read_engine(engine).contract == contract
    for backend, path in (("torch", model), ("onnxruntime", engine)):
        done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--no-ui", "--backend", backend, "--source",
                               str(video), "--model", str(path)], capture_output=True, text=True, timeout=180,
                              cwd=ROOT)
        assert done.returncode == 0, done.stderr
        lines = [r for r in map(json.loads, done.stdout.splitlines()) if "status" not in r]
        assert [r["frame"] for r in lines] == [4, 5, 6, 7]  # first window ends at (T-1) tau + L = 4
