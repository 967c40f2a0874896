"""The streaming scorer (cached tower features, one head call per window) must give the same
logits as the offline forward pass over the same frames: the whole point of caching is that
it changes nothing but the cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.torch_backend import TorchBackend
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.scorer import ScorerSettings
from realtime.sources import ArraySource
from twostream.preprocess import FlowSpec, WindowPlan, preprocess_clip, tower_inputs


def offline_logits(model, frames: np.ndarray, ends: list[int]) -> np.ndarray:
    """Reference: for each window end e, build the window the way training does (the whole clip
    preprocessed at once, each sampled frame's tower inputs) and run the full model. -> (len(ends), K)."""
    contract = model.contract
    rgb, fields = preprocess_clip(frames, FlowSpec.of(contract))
    plan = WindowPlan.of(contract)
    out = []
    for end in ends:
        rgb_window, flow_window = tower_inputs(rgb, fields, plan.sampled(end), contract.stack_length)
        with torch.inference_mode():
            logits = model(torch.from_numpy(rgb_window[None]), torch.from_numpy(flow_window[None]))
        out.append(logits[0].numpy())
    return np.stack(out)


@pytest.mark.parametrize("hop_name", ["1", "tau"])
def test_streaming_logits_equal_offline_forward(random_model, short_clip, hop_name):
    frames, _, _ = short_clip
    contract = random_model.contract
    hop = 1 if hop_name == "1" else contract.stride
    backend = TorchBackend(random_model)
    settings = PipelineSettings(scorer=ScorerSettings(hop=hop))
    with Pipeline(ArraySource(frames), backend, settings) as pipeline:
        assert pipeline.wait(timeout=60)
    predictions = pipeline.history()

    plan = WindowPlan.of(contract, hop)
    expected_ends = list(range(plan.first_end, len(frames), hop))
    assert [p.index for p in predictions] == expected_ends
    streamed = np.stack([p.logits for p in predictions])
    reference = offline_logits(random_model, frames, expected_ends)
    scale = float(np.abs(reference).max())
    assert scale > 1e-3, "degenerate model: logits are all ~0"
    np.testing.assert_allclose(streamed, reference, rtol=0, atol=1e-4 * max(1.0, scale))
    # Distinct windows give distinct logits: the comparison is not trivially satisfied.
    assert np.ptp(reference, axis=0).max() > 1e-4
