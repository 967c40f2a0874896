"""Bi-directional flow stacks (Simonyan and Zisserman 2014; contract.flow_direction): the contract
option, the order and sign of the fields in a stack, backward fields computed by the flow method
(not negated forward ones), the torch path and the flow cache, mirroring, and train.py's flag.

The synthetic clip is a blurred random texture whose crop window slides right by DX px a frame,
so the content moves left: every forward field is about -DX (scaled to the model input), every
backward field about +DX, and y about zero. Consumer-by-consumer bit equality (runtime,
calibration, training) is in tests/test_preprocess_consumers.py, which runs a bidirectional
contract beside the forward ones.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

import train
from twostream.contract import FlowSource, ModelContract
from twostream.data import Clip
from twostream.errors import ContractMismatch
from twostream.flowcache import FlowCache, spec_record
from twostream.preprocess import (NO_MOTION, FlowSpec, FlowTracker, OpticalFlow, compensate, field_channels,
                                  preprocess_clip, quantise_flow, resize_frame, stack_fields, tower_inputs)
from twostream.protocols import mirror
from twostream.torchprep import flow_fields

SIZE = (48, 48)
DX = 3  # px a frame at 160 x 120: 0.9 px at 48 x 48, 5.76 quantisation steps at bound 20
CLASSES = ("a", "b")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """8 BGR frames (120, 160, 3): a texture whose content moves DX px left each frame."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((200, 260, 3)) * 255).astype(np.uint8), (9, 9), 3)
    return np.stack([texture[20:140, 20 + DX * i:180 + DX * i] for i in range(8)])


def _mean_motion(stack: np.ndarray) -> np.ndarray:
    """(2L, H, W) quantised -> (2L,) mean displacement in quantisation steps, borders left out."""
    return (stack[:, 8:-8, 8:-8].astype(np.float64) - NO_MOTION).mean(axis=(1, 2))


# --- the contract ------------------------------------------------------------------------------

def test_the_contract_defaults_to_forward_and_compares_the_direction():
    forward = ModelContract(classes=CLASSES)
    assert forward.flow_direction == "forward"
    bidirectional = ModelContract(classes=CLASSES, flow_direction="bidirectional")
    assert bidirectional != forward  # another temporal-tower input
    assert ModelContract.from_json(bidirectional.to_json()) == bidirectional


def test_a_contract_written_before_flow_direction_loads_as_forward():
    old = ModelContract(classes=CLASSES).to_dict()
    del old["flow_direction"]
    assert ModelContract.from_dict(old).flow_direction == "forward"


@pytest.mark.parametrize("kwargs, message", [
    (dict(flow_direction="bidirectional", stack_length=5), "needs an even stack_length"),
    (dict(flow_direction="backward"), "flow_direction 'backward' is not one of"),
    (dict(flow_direction="bidirectional", flow_method="tvl1", flow_source=FlowSource("tvl1", 20.0)),
     "pre-extracted JPEG flow"),
])
def test_a_bad_bidirectional_contract_is_one_clear_error(kwargs, message):
    with pytest.raises(ContractMismatch, match=message):
        ModelContract(classes=CLASSES, **kwargs)


# --- order and sign ----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["dis-medium", "tvl1-torch"])
def test_older_half_backward_newer_half_forward(frames, method):
    """L = 4 over frames e-4..e: pairs 0, 1 backward (+dx), pairs 2, 3 forward (-dx), y ~ 0."""
    spec = FlowSpec(method, SIZE, 20.0, direction="bidirectional")
    rgb, flow = preprocess_clip(frames, spec)
    assert flow.shape == (len(frames), 4, *SIZE) and field_channels("bidirectional") == 4
    _, stacks = tower_inputs(rgb, flow, [6], 4)
    motion = _mean_motion(stacks[0])
    assert (motion[[0, 2]] > 4).all(), motion  # backward x: the content moves right from frame k to k-1
    assert (motion[[4, 6]] < -4).all(), motion  # forward x: left
    assert (np.abs(motion[1::2]) < 1).all(), motion  # y


def test_the_stack_holds_the_methods_own_backward_fields_and_the_forward_stacks_newer_half(frames):
    """Bit for bit: pair k < L/2 is flow(frame k+1 -> frame k) by the flow method, compensated
    and quantised (not a negated forward field); pairs from L/2 are the forward contract's."""
    length, end = 4, 7
    bidirectional = FlowSpec("dis-medium", SIZE, 20.0, "mean", direction="bidirectional")
    _, flow = preprocess_clip(frames, bidirectional)
    stack = stack_fields(flow[end - length + 1:end + 1])
    greys = [resize_frame(f, SIZE)[1] for f in frames]
    method = OpticalFlow("dis-medium")
    for pair in range(length // 2):
        later = end - length + 1 + pair  # the pair (later - 1, later)
        backward = quantise_flow(compensate(method(greys[later], greys[later - 1]), "mean"), 20.0)
        np.testing.assert_array_equal(stack[2 * pair:2 * pair + 2], backward)
        negated = quantise_flow(-compensate(method(greys[later - 1], greys[later]), "mean"), 20.0)
        assert not np.array_equal(backward, negated)  # the two differ: the check above means something
    _, forward = preprocess_clip(frames, FlowSpec("dis-medium", SIZE, 20.0, "mean"))
    np.testing.assert_array_equal(stack[length:], stack_fields(forward[end - length + 1:end + 1])[length:])
    np.testing.assert_array_equal(flow[:, :2], forward)  # the forward half of every slot is the forward field


def test_mean_subtraction_applies_to_each_field(frames):
    """A pure pan: mean subtraction leaves each field, backward ones too, near zero motion."""
    _, flow = preprocess_clip(frames, FlowSpec("dis-medium", SIZE, 20.0, "mean", direction="bidirectional"))
    assert np.abs(flow[1:, :, 8:-8, 8:-8].astype(np.float64) - NO_MOTION).mean() < 1.0


def test_stack_fields_on_numpy_and_torch_alike():
    fields = np.arange(4 * 4 * 2 * 2, dtype=np.uint8).reshape(4, 4, 2, 2)  # L 4, slots of 4 channels
    expected = np.concatenate((fields[:2, 2:], fields[2:, :2])).reshape(8, 2, 2)
    np.testing.assert_array_equal(stack_fields(fields), expected)
    np.testing.assert_array_equal(stack_fields(torch.from_numpy(fields)).numpy(), expected)
    with pytest.raises(ContractMismatch, match="cannot stack 3 fields of 4 channels"):
        stack_fields(fields[:3])


# --- the torch path ----------------------------------------------------------------------------

def test_torch_flow_batched_equals_the_tracker_bit_for_bit(frames):
    """preprocess_clip's batched tvl1-torch (both directions of all pairs in one call) and the
    tracker's one pair at a time give the same fields."""
    spec = FlowSpec("tvl1-torch", SIZE, 20.0, "mean", direction="bidirectional")
    rgb, flow = preprocess_clip(frames[:5], spec)
    tracker = FlowTracker(spec)
    pushed = [tracker.push(f) for f in frames[:5]]
    np.testing.assert_array_equal(np.stack([p[1] for p in pushed]), flow)
    assert (flow[0] == NO_MOTION).all()
    greys = torch.from_numpy(np.stack([resize_frame(f, SIZE)[1] for f in frames[:3]]))
    both = flow_fields(greys[:2], greys[1:], spec)
    assert both.shape == (2, 4, *SIZE)
    np.testing.assert_array_equal(both.numpy(), flow[1:3])


# --- cache, mirror -----------------------------------------------------------------------------

def test_the_flow_cache_keys_the_direction_and_keeps_forward_entries(tmp_path, frames):
    forward, bidirectional = FlowSpec("dis-medium", SIZE, 20.0), FlowSpec("dis-medium", SIZE, 20.0,
                                                                         direction="bidirectional")
    assert "direction" not in spec_record(forward)  # entries written before the option stay valid
    cache = FlowCache(tmp_path)
    assert cache.key(frames, forward) != cache.key(frames, bidirectional)
    rgb, flow = preprocess_clip(frames, bidirectional)
    key = cache.key(frames, bidirectional)
    cache.store(key, bidirectional, rgb, flow)
    loaded = cache.load(key, bidirectional, len(frames))
    assert loaded is not None and np.array_equal(loaded[1], flow)
    cache.store(key, bidirectional, rgb, flow[:, :2])  # an entry of the wrong shape is recomputed
    assert cache.load(key, bidirectional, len(frames)) is None


def test_mirroring_negates_both_x_channels():
    flow = np.full((1, 4, 2, 2), NO_MOTION, np.uint8)
    flow[0, 0], flow[0, 2], flow[0, 1], flow[0, 3] = 138, 118, 140, 116  # forward x, backward x, y, y
    mirrored = mirror(Clip(np.zeros((1, 3, 2, 2), np.uint8), flow, 0)).flow
    assert mirrored[0, :, 0, 0].tolist() == [118, 140, 138, 116]


# --- train.py ----------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--stack-length", "3"], "needs an even stack_length"),
    (["--dataset", "ucf101", "--root", "nowhere", "--jpegs", "nowhere"], "JPEG flow holds forward fields only"),
])
def test_fit_refuses_a_bad_bidirectional_recipe_in_one_line(tmp_path, capsys, extra, message):
    argv = ["fit", "--out", str(tmp_path / "m.pt"), "--flow-direction", "bidirectional", "--no-real", *extra]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
