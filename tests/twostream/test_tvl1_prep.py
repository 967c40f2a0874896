"""The torch half of preprocessing against the numpy/OpenCV half: resize and grey within one
level of cv2 (INTER_AREA, BGR2RGB, BGR2GRAY), compensation and quantisation bit-equal, devices."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from twostream import preprocess, torchprep
from twostream.devices import resolve_device
from twostream.errors import ContractMismatch
from twostream.flowpairs import motion_pairs

VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "data" / "videos"

# (source h, w) -> (H, W): integer and non-integer shrink factors, one axis equal, mixed and growing
SIZES = [((224, 224), (112, 112)), ((240, 320), (112, 112)), ((480, 640), (224, 224)),
         ((100, 130), (64, 96)), ((97, 61), (64, 48)), ((120, 160), (112, 112)),
         ((64, 80), (112, 112)), ((90, 200), (112, 112)), ((112, 112), (112, 112))]


def _smooth_frames(count: int, height: int, width: int, seed: int) -> np.ndarray:
    """Random BGR frames with both fine noise and smooth structure (uint8 (N, h, w, 3))."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
    return np.stack([cv2.addWeighted(f, 0.5, cv2.GaussianBlur(f, (0, 0), 2), 0.5, 0) for f in noise])


def _check_resize(frames: np.ndarray, size: tuple[int, int]) -> None:
    rgb, grey = torchprep.resize_frames(torch.from_numpy(frames), size)
    assert rgb.dtype == torch.uint8 and rgb.shape == (len(frames), 3, *size)
    assert grey.dtype == torch.uint8 and grey.shape == (len(frames), *size)
    for frame, rgb_t, grey_t in zip(frames, rgb.numpy(), grey.numpy()):
        rgb_cv, grey_cv = preprocess.resize_frame(frame, size)
        assert np.abs(rgb_t.astype(int) - rgb_cv).max() <= 1
        assert np.abs(grey_t.astype(int) - grey_cv).max() <= 1
        # off by one where cv2's fixed-point rounding differs: rare when shrinking (the usual
        # case); growing goes through cv2's SIMD fixed-point path, which drops low bits
        shrinking = frame.shape[0] >= size[0] and frame.shape[1] >= size[1]
        assert (rgb_t != rgb_cv).mean() < (0.02 if shrinking else 0.15)


@pytest.mark.parametrize("source, size", SIZES)
def test_resize_matches_opencv_on_random_frames(source, size):
    _check_resize(_smooth_frames(2, *source, seed=sum(source)), size)


def test_a_frame_resizer_follows_a_change_of_source_size():
    """The device flow stage keeps one FrameResizer per stream; a reconnected camera may come
    back at another resolution, and its frames must not go through the old weights."""
    resizer = torchprep.FrameResizer((64, 64))
    for source in ((120, 160), (120, 160), (240, 320), (48, 48)):
        frames = torch.from_numpy(_smooth_frames(1, *source, seed=source[1]))
        for got, want in zip(resizer(frames), torchprep.resize_frames(frames, (64, 64))):
            assert torch.equal(got, want)


def test_grey_is_opencv_bgr2gray_exactly_at_equal_size():
    frames = _smooth_frames(1, 48, 64, seed=3)
    _, grey = torchprep.resize_frames(torch.from_numpy(frames), (48, 64))
    np.testing.assert_array_equal(grey[0].numpy(), cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY))


def test_resize_matches_opencv_on_real_frames():
    videos = sorted(VIDEOS.glob("*.avi")) + sorted(VIDEOS.glob("*.mp4"))
    if not videos:
        pytest.skip(f"no videos in {VIDEOS}")
    capture = cv2.VideoCapture(str(videos[0]))
    frames = [capture.read()[1] for _ in range(3)]
    capture.release()
    frames = np.stack([f for f in frames if f is not None])
    for size in ((112, 112), (224, 224), (100, 150)):
        _check_resize(frames, size)


def test_resize_refuses_bad_input():
    with pytest.raises(ContractMismatch, match="BGR uint8"):
        torchprep.resize_frames(torch.zeros(2, 8, 8), (4, 4))


@pytest.mark.parametrize("compensation", ["none", "mean", "median", "affine"])
@pytest.mark.parametrize("shape", [(40, 50), (33, 31)])  # even and odd pixel counts (median)
def test_compensate_and_quantise_are_bit_equal_to_numpy(compensation, shape):
    rng = np.random.default_rng(7)
    fields = (rng.normal(0, 9, (3, *shape, 2)) + rng.normal(0, 3, (3, 1, 1, 2))).astype(np.float32)
    fields[0, :5, :5] = 64.0 / 128.0 * 20 * np.array([0.5, -1.5], np.float32)  # exact rounding ties
    torch_fields = torch.from_numpy(fields).permute(0, 3, 1, 2)
    compensated = torchprep.compensate(torch_fields, compensation)
    quantised = torchprep.quantise_flow(compensated, 20.0)
    for i, field in enumerate(fields):
        expected = preprocess.compensate(field, compensation)
        np.testing.assert_array_equal(compensated[i].permute(1, 2, 0).numpy(), expected)
        np.testing.assert_array_equal(quantised[i].numpy(), preprocess.quantise_flow(expected, 20.0))


def test_compensate_refuses_unknown():
    with pytest.raises(ContractMismatch, match="unknown flow compensation"):
        torchprep.compensate(torch.zeros(1, 2, 4, 4), "mode")


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ContractMismatch, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ContractMismatch, match="CUDA requested but not available"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_cuda_resize_and_fields_match_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    frames = torch.from_numpy(_smooth_frames(3, 240, 320, seed=11))
    rgb, grey = torchprep.resize_frames(frames, (112, 112))
    rgb_cuda, grey_cuda = torchprep.resize_frames(frames.cuda(), (112, 112))
    assert rgb_cuda.is_cuda and grey_cuda.is_cuda
    assert (rgb_cuda.cpu().int() - rgb.int()).abs().max() <= 1
    assert (grey_cuda.cpu().int() - grey.int()).abs().max() <= 1
    pairs = motion_pairs((112, 112))
    prev = torch.from_numpy(np.stack([p.prev for p in pairs]))
    cur = torch.from_numpy(np.stack([p.cur for p in pairs]))
    spec = preprocess.FlowSpec("tvl1-torch", (112, 112), 5.0, "mean", device="cuda")
    fields = torchprep.flow_fields(prev.cuda(), cur.cuda(), spec)
    assert fields.is_cuda and fields.dtype == torch.uint8 and fields.shape == (len(pairs), 2, 112, 112)
    # the same algorithm in another float order: a level is 0.04 px here
    cpu_fields = torchprep.flow_fields(prev, cur, spec)
    assert (fields.cpu().int() - cpu_fields.int()).abs().float().mean() < 1.0
