"""The torch half of the one preprocessing module: the same steps as twostream.preprocess, on
tensors of any device, batched over N frames or N frame pairs.

    frames   BGR uint8 (N, h, w, 3) -> rgb uint8 (N, 3, H, W), grey uint8 (N, H, W)   resize_frames
    pairs    grey (N, H, W) x 2 -> TV-L1 displacement (N, 2, H, W) px (twostream.tvl1)
             -> compensate -> quantise_flow -> uint8 (N, 2, H, W)                     flow_fields

resize_frames matches cv2.resize(INTER_AREA) + cv2.cvtColor(BGR2RGB / BGR2GRAY) to within one
level; compensate and quantise_flow are bit-equal to their numpy twins on the same float field
(tests/twostream/test_tvl1_prep.py checks both).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch

from twostream.contract import FLOW_COMPENSATIONS, FLOW_NO_MOTION
from twostream.errors import ContractMismatch
from twostream.tvl1 import tvl1_flow

if TYPE_CHECKING:  # FlowSpec lives in twostream.preprocess, which imports this module
    from twostream.preprocess import FlowSpec

# OpenCV's fixed-point BGR2GRAY for 8-bit images: about 0.114 B + 0.587 G + 0.299 R in units of
# 2^-15, rounded half up. These integers reproduce opencv 5.0's cvtColor exactly (checked on
# 200,000 random pixels; OpenCV 4's 2^-14 set, 1868/9617/4899, differs by one on 0.1 % of them).
_GREY_B, _GREY_G, _GREY_R, _GREY_SHIFT = 3735, 19235, 9798, 15


def _area_weights(src: int, dst: int, device: torch.device) -> torch.Tensor:
    """(dst, src) float32: output pixel j averages source [j*s, (j+1)*s), s = src/dst, each
    source pixel weighted by the length of its overlap (cv2 INTER_AREA when shrinking)."""
    scale = 1.0 / (dst / src)  # as OpenCV computes it: 1 / 0.56 is not 200 / 112 to the last bit
    start = torch.arange(dst, dtype=torch.float64, device=device)[:, None] * scale
    left = torch.arange(src, dtype=torch.float64, device=device)[None, :]
    overlap = (torch.minimum(start + scale, left + 1) - torch.maximum(start, left)).clamp(min=0)
    return (overlap / scale).float()


def _area_zoom_weights(src: int, dst: int, device: torch.device) -> torch.Tensor:
    """(dst, src) float32: INTER_AREA when an axis grows (or the other one does): two taps,
    source floor(j*s) and the next, the second weighted by how far output pixel j's right edge
    reaches past the first source pixel's right edge (0 when it does not), borders replicated."""
    inv_scale = dst / src
    scale = 1.0 / inv_scale  # as OpenCV computes it: floor(70 * 200/112) is 125, with this 124
    j = torch.arange(dst, dtype=torch.float64, device=device)
    first = torch.floor(j * scale)
    reach = (j + 1) - (first + 1) * inv_scale
    frac = torch.where(reach <= 0, torch.zeros_like(reach), reach - torch.floor(reach))
    weights = torch.zeros(dst, src, dtype=torch.float64, device=device)
    rows = j.long()
    weights.index_put_((rows, first.long().clamp(max=src - 1)), 1 - frac, accumulate=True)
    weights.index_put_((rows, (first.long() + 1).clamp(max=src - 1)), frac, accumulate=True)
    # 8-bit images take this path in 11-bit fixed point: the same rounded weights
    return (torch.round(weights * 2048) / 2048).float()


class FrameResizer:
    """``resize_frames`` for a stream of frames of one size: the two weight matrices are built
    once per source size and device, not per frame (the device flow stage's per-frame path)."""

    def __init__(self, size: tuple[int, int]):
        self.size = size  # (H, W)
        self._key: tuple | None = None
        self._rows = self._cols = None

    def __call__(self, bgr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """bgr uint8 (N, h, w, 3) on any device -> (rgb uint8 (N, 3, H, W), grey uint8 (N, H, W))."""
        if bgr.dtype != torch.uint8 or bgr.dim() != 4 or bgr.shape[-1] != 3:
            raise ContractMismatch(f"resize_frames expects BGR uint8 (N, h, w, 3), got {bgr.dtype} {tuple(bgr.shape)}")
        height, width = self.size
        src_h, src_w = bgr.shape[1], bgr.shape[2]
        if self._key != (src_h, src_w, bgr.device):
            # OpenCV averages areas only when neither axis grows; otherwise both axes take the two-tap rule.
            make = _area_weights if src_h >= height and src_w >= width else _area_zoom_weights
            self._rows, self._cols = make(src_h, height, bgr.device), make(src_w, width, bgr.device).T
            self._key = (src_h, src_w, bgr.device)
        planes = bgr.permute(0, 3, 1, 2).float()  # (N, 3, h, w), B G R
        small = torch.matmul(self._rows, torch.matmul(planes, self._cols))  # (N, 3, H, W)
        # halves round up, as OpenCV's integer block average does for whole shrink factors (the
        # common case: 224 -> 112); elsewhere exact halves are rare
        small = torch.floor(small + 0.5).clamp(0, 255).to(torch.uint8)
        b, g, r = small[:, 0].int(), small[:, 1].int(), small[:, 2].int()
        grey = (b * _GREY_B + g * _GREY_G + r * _GREY_R + (1 << (_GREY_SHIFT - 1))) >> _GREY_SHIFT
        return small.flip(1).contiguous(), grey.to(torch.uint8)


def resize_frames(bgr: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """bgr uint8 (N, h, w, 3) on any device -> (rgb uint8 (N, 3, H, W), grey uint8 (N, H, W)),
    size = (H, W), on the same device; cv2.resize(INTER_AREA) then cvtColor to within 1 level.

    The resize is separable, so it is two matmuls: (H, h) @ frame (h, w) @ (w, W). For a stream
    of frames use one FrameResizer (its weights are built once)."""
    return FrameResizer(size)(bgr)


def compensate(flow: torch.Tensor, compensation: str) -> torch.Tensor:
    """Camera-motion compensation of fields (N, 2, H, W) px: each field minus its own mean
    (computed in float64, as the numpy twin), median or least-squares affine field per axis
    (affine_grid says how); "none" returns it as it is."""
    if compensation == "none":
        return flow
    if compensation == "mean":
        return flow - flow.double().mean(dim=(2, 3), keepdim=True).float()
    if compensation == "median":
        # numpy's median of an even count is the mean of the two middle values, torch.median
        # the lower one: take both middles explicitly.
        values = flow.flatten(2)
        count = values.shape[-1]
        low = values.kthvalue((count + 1) // 2, dim=-1).values
        high = values.kthvalue(count // 2 + 1, dim=-1).values
        return flow - ((low + high) / 2)[..., None, None]
    if compensation == "affine":
        n, _, height, width = flow.shape
        grid, scale = affine_grid(height, width, flow.device)  # (H W, 3), (3,)
        values = flow.double().flatten(2).transpose(1, 2)  # (N, H W, 2)
        fit = grid @ ((grid.T @ values) / scale[:, None])  # (N, H W, 2)
        return flow - fit.float().transpose(1, 2).reshape(n, 2, height, width)
    raise ContractMismatch(f"unknown flow compensation {compensation!r}; choose from {FLOW_COMPENSATIONS}")


@functools.lru_cache(maxsize=8)
def affine_grid(height: int, width: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The least-squares affine fit's basis (float64, on ``device``): rows (1, x, y) of every pixel,
    (H W, 3), x and y centred on the field's middle, and each column's sum of squares (3,).

    Centred, the columns are orthogonal, so the normal equations fall apart: per axis the fit
    is a + b x + c y with a = mean, b = sum(f x) / sum(x^2), c = sum(f y) / sum(y^2), two small
    matrix products and no solver. compensate here and preprocess.compensate take the same
    float64 steps on it. Cached per size and device, as building it costs twice the fit (0.12 ms
    against 0.06 ms a 112x112 field here) and a device stage would copy it every batch: the
    tensors are shared, and read only. Its values are exact (half-integers and their sums of
    squares), so every device holds the same basis."""
    x = torch.arange(width, dtype=torch.float64, device=device) - (width - 1) / 2
    y = torch.arange(height, dtype=torch.float64, device=device) - (height - 1) / 2
    grid = torch.stack((torch.ones(height * width, dtype=torch.float64, device=device), x.repeat(height),
                        y.repeat_interleave(width)), dim=1)
    squares = [height * width, height * max(float((x * x).sum()), 1.0), width * max(float((y * y).sum()), 1.0)]
    return grid, torch.tensor(squares, dtype=torch.float64, device=device)


def quantise_flow(flow: torch.Tensor, bound: float) -> torch.Tensor:
    """float (N, 2, H, W) px -> uint8 (N, 2, H, W): q = clip(round(f * 128 / bound) + 128, 0, 255),
    halves rounded to even as np.rint does."""
    scaled = torch.round(flow * (128.0 / bound)) + float(FLOW_NO_MOTION)
    return scaled.clamp(0, 255).to(torch.uint8)


def _to_size(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Displacement (N, 2, h, w) px resized to (H, W) = ``size`` by area averaging, its values
    kept (contract.flow_frame_size: px of the frames flow ran on); as it is when already there."""
    if tuple(flow.shape[2:]) == tuple(size):
        return flow
    return torch.nn.functional.interpolate(flow, size=tuple(size), mode="area")


def flow_fields(prev_grey: torch.Tensor, grey: torch.Tensor, spec: "FlowSpec") -> torch.Tensor:
    """uint8 (N, h, w) pairs (prev -> cur) -> quantised fields uint8 (N, C, H, W) on their
    device: TV-L1 with spec.tvl1, resized to (H, W) = spec.size when (h, w) differs (spec.frame_size),
    then spec.compensation, then clip and quantise at spec.bound.
    C = spec.channels: 2, or 4 when bidirectional, the backward field (cur -> prev) after the
    forward one, both directions in one batched TV-L1 call of 2N pairs."""
    if spec.tvl1 is None:
        raise ContractMismatch(f"flow method {spec.method!r} has no TV-L1 parameters; torch flow needs tvl1-torch")
    if prev_grey.shape != grey.shape or grey.dim() != 3:
        raise ContractMismatch(f"flow_fields expects two (N, H, W) grey batches, got "
                               f"{tuple(prev_grey.shape)} and {tuple(grey.shape)}")
    if spec.channels == 2:
        flow = _to_size(tvl1_flow(prev_grey.float(), grey.float(), spec.tvl1), spec.size)
        return quantise_flow(compensate(flow, spec.compensation), spec.bound)
    both = tvl1_flow(torch.cat((prev_grey, grey)).float(), torch.cat((grey, prev_grey)).float(), spec.tvl1)
    fields = quantise_flow(compensate(_to_size(both, spec.size), spec.compensation), spec.bound)  # (2N, 2, H, W)
    return torch.cat((fields[:len(grey)], fields[len(grey):]), dim=1)
