"""A temporal tower with a backbone of its own (the concatenation baseline: a ResNet spatial net
and a small flow net, logits concatenated and classified by "late-concat"): its features have
another shape than the spatial ones, and the runtime, the shared engine and the ONNX export carry
both shapes, giving the logits of the offline forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from building.export import check_export, export_parts
from engines.onnx_parts import PartShape, check_part_shapes
from engines.torch_backend import TorchBackend
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sharedengine import SharedEngine
from realtime.sources import ArraySource
from tests.realtime.test_streaming_parity import offline_logits
from twostream.checkpoint import load_model, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import EngineError
from twostream.model import TwoStreamNet
from twostream.preprocess import WindowPlan


@pytest.fixture(scope="module")
def baseline(make_perturbed_model):
    contract = ModelContract(classes=GESTURE_CLASSES, backbone="resnet18", temporal_backbone="tiny",
                             fusion="late-concat", input_size=(64, 64), stack_length=4, num_segments=3, stride=2)
    return make_perturbed_model(contract)


def test_the_towers_have_their_own_feature_shapes(baseline):
    backend = TorchBackend(baseline)
    assert backend.feature_shape == (512, 2, 2) and backend.temporal_feature_shape == (96, 4, 4)
    s = np.zeros((1, 3, 512, 2, 2), np.float32)
    with pytest.raises(EngineError, match=r"head temporal features: expected shape \('N', 3, 96, 4, 4\), got \(1, 3, 512, 2, 2\)"):
        backend.head(s, s)


def _streamed(backend, frames) -> tuple[list[int], np.ndarray]:
    with Pipeline(ArraySource(frames), backend, PipelineSettings()) as pipeline:
        assert pipeline.wait(timeout=120)
    predictions = pipeline.history()
    return [p.index for p in predictions], np.stack([p.logits for p in predictions])


@pytest.mark.slow
def test_live_logits_equal_the_offline_forward_pass_alone_and_on_a_shared_engine(baseline, short_clip, tmp_path):
    frames = short_clip[0][:24]
    path = tmp_path / "baseline.pt"
    save_checkpoint(path, baseline)
    model, _ = load_model(path)
    assert model.contract.temporal_backbone == "tiny"
    ends, streamed = _streamed(TorchBackend(model), frames)
    plan = WindowPlan.of(model.contract)
    assert ends == list(range(plan.first_end, len(frames)))
    reference = offline_logits(model, frames, ends)
    assert np.ptp(reference, axis=0).max() > 1e-4  # distinct windows, distinct logits
    np.testing.assert_allclose(streamed, reference, rtol=0, atol=1e-4 * max(1.0, float(np.abs(reference).max())))
    with SharedEngine(TorchBackend(model)) as engine:
        client = engine.client()
        assert client.temporal_feature_shape == (96, 4, 4)
        _, shared = _streamed(client, frames)
        client.close()
    np.testing.assert_allclose(shared, streamed, rtol=0, atol=1e-5 * max(1.0, float(np.abs(streamed).max())))


def test_the_parts_export_exactly(baseline, tmp_path):
    errors = check_export(baseline, export_parts(baseline, tmp_path), tolerance=1e-4)
    assert set(errors) == {"spatial", "temporal", "head"} and max(errors.values()) <= 1e-4


def test_late_concat_starts_as_the_late_average(baseline):
    contract = baseline.contract
    torch.manual_seed(1)
    model = TwoStreamNet(contract).eval()
    s, t = torch.randn(2, 3, 512, 2, 2), torch.randn(2, 3, 96, 4, 4)
    spatial, temporal = model.head.tower_logits(s, t)
    torch.testing.assert_close(model.head(s, t), (spatial + temporal) / 2)


def test_an_engine_directory_matches_each_tower_with_its_own_head_input(baseline):
    contract = baseline.contract
    spatial = PartShape(Path("/e/spatial.onnx"), ((None, 3, 64, 64),), (None, 512, 2, 2))
    temporal = PartShape(Path("/e/temporal.onnx"), ((None, 8, 64, 64),), (None, 96, 4, 4))
    head = PartShape(Path("/e/head.onnx"), ((None, 3, 512, 2, 2), (None, 3, 96, 4, 4)), (None, 10))
    check_part_shapes(contract, contract.input_size, spatial, temporal, head)
    crossed = PartShape(Path("/e/head.onnx"), ((None, 3, 96, 4, 4), (None, 3, 512, 2, 2)), (None, 10))
    with pytest.raises(EngineError, match=r"spatial.onnx gives features \[512, 2, 2\], head.onnx takes \[96, 4, 4\]"):
        check_part_shapes(contract, contract.input_size, spatial, temporal, crossed)
