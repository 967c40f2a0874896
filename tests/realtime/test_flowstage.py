"""The flow stage computes exactly training's flow, once per frame pair, and the run-time flow
method and resolution are checked against the model's contract."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from realtime.channel import Channel
from realtime.flowstage import FlowSettings, FlowStage
from realtime.messages import Frame
from realtime.rings import FlowRing, FrameRing
from realtime.stage import Control
from twostream.errors import ContractMismatch
from twostream.preprocess import FlowSpec, available_flow_methods, preprocess_clip


def test_defaults_come_from_the_contract(contract):
    assert FlowSettings().resolve(contract) == FlowSpec.of(contract)


@pytest.mark.parametrize("settings, problem", [
    (FlowSettings(method="farneback"), "flow method 'farneback'"),
    (FlowSettings(input_size=(96, 96)), r"input size \(96, 96\)"),
])
def test_a_mismatch_is_refused_without_the_flag(contract, settings, problem):
    with pytest.raises(ContractMismatch, match=problem) as caught:
        settings.resolve(contract)
    assert "--allow-contract-mismatch" in str(caught.value)


def test_an_allowed_mismatch_warns_loudly(contract, caplog):
    settings = FlowSettings(method="dis-fast", allow_contract_mismatch=True)
    with caplog.at_level(logging.WARNING, logger="twostream.contract"):
        assert settings.resolve(contract) == FlowSpec("dis-fast", contract.input_size, contract.flow_bound)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING") and "dis-fast" in warnings[0]


def test_tvl1_is_offered_with_opencv_contrib(contract):
    assert "tvl1" in available_flow_methods()
    assert FlowSettings("tvl1", allow_contract_mismatch=True).resolve(contract).method == "tvl1"


def test_fields_in_the_ring_are_bit_equal_to_training_flow(contract, short_clip):
    frames = short_clip[0][:20]
    size = contract.input_size
    inbox, outbox = Channel(len(frames)), Channel(len(frames))
    for i, bgr in enumerate(frames):
        inbox.put(Frame(i, float(i), float(i), bgr, 0.0), 0.1)
    inbox.close()
    frame_ring, flow_ring = FrameRing(len(frames), size), FlowRing(len(frames), size)
    stage = FlowStage(Control(), inbox, outbox, frame_ring, flow_ring, FlowSpec.of(contract))
    stage.loop()  # in this thread: runs until the inbox is drained

    rgb, flow = preprocess_clip(frames, FlowSpec.of(contract))
    np.testing.assert_array_equal(flow_ring.window(len(frames) - 1, len(frames)), flow)
    np.testing.assert_array_equal(frame_ring.window(len(frames) - 1, len(frames)), rgb)
    assert [outbox.get(0.1).seq for _ in frames] == list(range(len(frames)))
