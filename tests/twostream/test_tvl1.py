"""tvl1-torch against the truth and against OpenCV contrib's DualTVL1 on the same pairs, batched
against one by one, through the contract's clip and quantisation, and in the contract."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
from calibration.dataset import read_clip
from engines.enginedir import check_expected_contract
from realtime.flowstage import FlowSettings
from realtime.sources import ArraySource
from twostream import torchprep
from twostream.checkpoint import read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import ContractMismatch
from twostream.gestures import GestureStream
from twostream.flowpairs import MOTIONS, endpoint_error, motion_pairs, video_pairs
from twostream.model import TwoStreamNet
from twostream.preprocess import (FlowSpec, FlowTracker, OpticalFlow, compensate, preprocess_clip, quantise_flow,
                                  resize_frame)
from twostream.tvl1 import TVL1Params, tvl1_flow

VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos"
PRESETS = {"opencv": TVL1Params.opencv(), "fast": TVL1Params.fast()}


def _torch_flow(prev: np.ndarray, cur: np.ndarray, params: TVL1Params) -> np.ndarray:
    """grey uint8 (N, H, W) x 2 -> (N, H, W, 2) float32, the layout OpenCV returns."""
    flow = tvl1_flow(torch.from_numpy(prev).float(), torch.from_numpy(cur).float(), params)
    return flow.permute(0, 2, 3, 1).numpy()


def _contrib(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    return np.stack([tvl1.calc(a, b, None) for a, b in zip(prev, cur)])


@pytest.fixture(scope="module")
def synthetic():
    pairs = motion_pairs((96, 112), seed=3)  # not square: x and y must not be swapped anywhere
    prev, cur = np.stack([p.prev for p in pairs]), np.stack([p.cur for p in pairs])
    return pairs, prev, cur, _contrib(prev, cur)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_endpoint_error_is_close_to_opencv_contrib(synthetic, preset):
    """Both methods find every motion to a small fraction of its size; tvl1-torch's error is at
    most 1.5x OpenCV's + 0.05 px (on these pairs it is about equal: OpenCV 0.009-0.1 px; the
    bound leaves room for the fast preset and for float differences, not for a wrong sign,
    scale or axis, which cost the whole motion, 1-3 px)."""
    pairs, prev, cur, contrib = synthetic
    ours = _torch_flow(prev, cur, PRESETS[preset])
    assert [p.name for p in pairs] == list(MOTIONS)
    for pair, mine, theirs in zip(pairs, ours, contrib):
        mine_epe, their_epe = endpoint_error(mine, pair.truth), endpoint_error(theirs, pair.truth)
        assert their_epe < 0.2 * pair.magnitude, pair.name
        assert mine_epe < 0.2 * pair.magnitude, (pair.name, mine_epe)
        assert mine_epe <= 1.5 * their_epe + 0.05, (pair.name, mine_epe, their_epe)


def _real_pairs(size=(112, 112)) -> tuple[np.ndarray, np.ndarray]:
    videos = sorted(VIDEOS.glob("*.avi")) + sorted(VIDEOS.glob("*.mp4"))
    prev, cur = video_pairs(videos, size, per_video=2)
    if not len(prev):
        pytest.skip(f"no readable videos in {VIDEOS}")
    return prev, cur


@pytest.mark.parametrize("preset, bound", [("opencv", 0.15), ("fast", 0.3)])
def test_real_frames_agree_with_opencv_contrib(preset, bound):
    """Consecutive frames of the shared clips (UCF101, Kinetics), 112x112: the mean endpoint
    difference per pair is small next to the motion (measured: opencv 0.01-0.08 px, fast
    0.01-0.2 px, where OpenCV's mean motion is 0.01-1.9 px)."""
    prev, cur = _real_pairs()
    difference = np.linalg.norm(_torch_flow(prev, cur, PRESETS[preset]) - _contrib(prev, cur), axis=-1)
    assert difference.mean(axis=(1, 2)).max() < bound


def test_batched_equals_one_by_one(synthetic):
    _, prev, cur, _ = synthetic
    params = dataclasses.replace(TVL1Params.fast(), epsilon=0.05)  # pairs stop at different steps
    batched = _torch_flow(prev, cur, params)
    for i in range(len(prev)):
        np.testing.assert_allclose(_torch_flow(prev[i:i + 1], cur[i:i + 1], params)[0], batched[i], atol=1e-4)


def test_no_motion_gives_zero_flow():
    pair = motion_pairs((64, 64))[0]
    flow = _torch_flow(pair.prev[None], pair.prev[None], TVL1Params.fast())
    assert np.abs(flow).max() < 1e-3


def test_clip_fields_go_through_the_same_clip_and_quantisation():
    """preprocess_clip (one batched call), FlowTracker (pair by pair) and the numpy quantiser on
    the float field all give the same uint8 fields; strong motion saturates at 0/255."""
    pairs = motion_pairs((64, 64), seed=5)
    # a rotation (up to 1.7 px at the corners), then a cut to an unrelated frame
    frames = [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in (pairs[1].prev, pairs[1].cur, pairs[0].prev)]
    spec = FlowSpec("tvl1-torch", (64, 64), bound=1.0, compensation="median", tvl1=TVL1Params.fast())
    rgb, fields = preprocess_clip(frames, spec)
    assert rgb.shape == (3, 3, 64, 64) and fields.shape == (3, 2, 64, 64) and fields.dtype == np.uint8
    assert (fields[0] == 128).all()  # no predecessor
    tracker = FlowTracker(spec)
    for frame, field in zip(frames, fields):
        np.testing.assert_array_equal(tracker.push(frame)[1], field)
    greys = [resize_frame(f, (64, 64))[1] for f in frames]
    expected = quantise_flow(compensate(OpticalFlow("tvl1-torch", spec.tvl1)(greys[0], greys[1]), "median"), 1.0)
    np.testing.assert_array_equal(fields[1], expected)
    assert fields[1].min() == 0 and fields[1].max() == 255  # > 1 px of motion clips at bound 1
    direct = torchprep.flow_fields(torch.from_numpy(greys[0])[None], torch.from_numpy(greys[1])[None], spec)
    np.testing.assert_array_equal(direct[0].numpy(), fields[1])


def test_params_round_trip_and_refusals():
    for params in PRESETS.values():
        assert TVL1Params.from_dict(params.to_dict()) == params
    with pytest.raises(ContractMismatch, match="scale_step"):
        dataclasses.replace(TVL1Params.fast(), scale_step=1.0)
    with pytest.raises(ContractMismatch, match="median"):
        dataclasses.replace(TVL1Params.fast(), median=4)
    with pytest.raises(ContractMismatch, match="exactly"):
        TVL1Params.from_dict({"tau": 0.25})
    with pytest.raises(ContractMismatch, match="same shape"):
        tvl1_flow(torch.zeros(1, 8, 8), torch.zeros(2, 8, 8), TVL1Params.fast())
    with pytest.raises(ContractMismatch, match="needs TV-L1 parameters"):
        OpticalFlow("tvl1-torch")


def test_contract_carries_and_compares_tvl1(tmp_path):
    fast = ModelContract(classes=GESTURE_CLASSES, input_size=(64, 64), flow_method="tvl1-torch")
    assert fast.tvl1 == TVL1Params.fast()
    exact = dataclasses.replace(fast, tvl1=TVL1Params.opencv())
    assert ModelContract.from_json(exact.to_json()) == exact and exact != fast
    assert FlowSpec.of(exact, device="cpu").tvl1 == TVL1Params.opencv()
    # an engine or model built for one set of parameters is refused for the other
    with pytest.raises(ContractMismatch, match="tvl1"):
        check_expected_contract(exact, fast, tmp_path / "engine")
    with pytest.raises(ContractMismatch, match="TV-L1 parameters"):
        exact.check_runtime(flow_method="tvl1-torch", input_size=(64, 64), allow_mismatch=False,
                            tvl1=TVL1Params.fast())
    exact.check_runtime(flow_method="tvl1-torch", input_size=(64, 64), allow_mismatch=False,
                        tvl1=TVL1Params.opencv())
    with pytest.raises(ContractMismatch, match="tvl1 parameters are set"):
        ModelContract(classes=GESTURE_CLASSES, flow_method="dis-medium", tvl1=TVL1Params.fast())
    # files older than tvl1-torch have no tvl1 field: they still load
    old = ModelContract(classes=GESTURE_CLASSES).to_dict()
    del old["tvl1"]
    assert ModelContract.from_dict(old).tvl1 is None
    # and a model file keeps the parameters through torch.load(weights_only=True)
    path = tmp_path / "model.pt"
    save_checkpoint(path, TwoStreamNet(exact))
    assert read_checkpoint(path).contract.tvl1 == TVL1Params.opencv()


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pairs = motion_pairs((112, 112))
    prev = torch.from_numpy(np.stack([p.prev for p in pairs])).float()
    cur = torch.from_numpy(np.stack([p.cur for p in pairs])).float()
    cpu = tvl1_flow(prev, cur, TVL1Params.fast())
    cuda = tvl1_flow(prev.cuda(), cur.cuda(), TVL1Params.fast())
    assert cuda.device.type == "cuda" and cuda.dtype == torch.float32
    # the same algorithm in another float order: far below the methods' own error (0.01-0.1 px)
    assert (cuda.cpu() - cpu).norm(dim=1).mean() < 0.02


def test_every_consumer_gets_the_same_tvl1_fields():
    """Training's batched clip (preprocess_clip), calibration's reader and the runtime's flow
    stage (FlowTracker on FlowSettings' spec) give bit-equal fields for a tvl1-torch contract,
    with the contract's own parameters."""
    contract = ModelContract(classes=GESTURE_CLASSES, input_size=(48, 64), flow_method="tvl1-torch",
                             tvl1=dataclasses.replace(TVL1Params.fast(), warps=1), flow_compensation="median")
    frames = [f.bgr for f, _ in zip(GestureStream(3, (96, 72)), range(6))]
    rgb, fields = preprocess_clip(frames, FlowSpec.of(contract))
    calibration = read_clip(ArraySource(np.stack(frames)), contract, max_frames=len(frames))
    np.testing.assert_array_equal(calibration.rgb, rgb)
    np.testing.assert_array_equal(calibration.flow, fields)
    runtime = FlowSettings().resolve(contract)
    assert runtime.tvl1 == contract.tvl1 and runtime.method == "tvl1-torch"
    tracker = FlowTracker(runtime)
    np.testing.assert_array_equal(np.stack([tracker.push(f)[1] for f in frames]), fields)
    assert (fields[1:] != 128).any()  # the hand moves


@pytest.mark.slow
def test_train_fit_and_evaluate_with_tvl1_torch(tmp_path, capsys):
    out = tmp_path / "m.pt"
    tiny = ["--input-size", "48", "--stack-length", "2", "--segments", "2", "--stride", "2", "--frames", "12",
            "--batch", "8", "--samples-per-clip", "2", "--per-clip", "2", "--workers", "1", "--no-real",
            "--head-clips-per-class", "1", "--clips-per-class", "1", "--val-clips-per-class", "1",
            "--tower-epochs", "1", "--head-epochs", "1"]
    assert train.main(["fit", "--out", str(out), *tiny, "--flow", "tvl1-torch", "--tvl1-preset", "opencv"]) == 0
    contract = read_checkpoint(out).contract
    assert contract.flow_method == "tvl1-torch" and contract.tvl1 == TVL1Params.opencv()
    capsys.readouterr()
    assert train.main(["evaluate", "--model", str(out), "--frames", "12", "--clips-per-class", "1",
                       "--per-clip", "1", "--workers", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["confusion"]) == len(GESTURE_CLASSES)
