"""The preprocessing contract, carried out: every step between a decoded frame and a model input.

Training, evaluation, calibration, parity, the naive baseline and the runtime's flow stage all
call these functions and none re-implements a step, so training sees exactly what inference sees
(tests/twostream/test_preprocess.py checks every consumer bit for bit on the same frames).

    frame    BGR uint8 (h, w, 3), any size
             -> resized whole (no crop, INTER_AREA) to (H, W) = contract.input_size
             -> rgb planes (3, H, W) uint8 and grey (H, W) uint8          resize_frame
    pair     grey i-1, grey i -> displacement (H, W, 2) float32 px        OpticalFlow
             (tvl1-torch: twostream.tvl1 on spec.device, a whole clip's pairs batched)
             with contract.flow_frame_size the greys are of that size instead, and the
             displacement is resized to (H, W), its values kept (px of those frames)
             -> minus its mean or median per axis, or its least-squares affine
                field (contract.flow_compensation)                       compensate
             -> clipped to ±bound, quantised to uint8 planes (2, H, W):
                q = clip(round(f * 128 / bound) + 128, 0, 255)            quantise_flow
    field 0  a stream's first frame has no predecessor: zero motion, all 128
    stack    fields s-L+1 .. s, (L, 2, H, W) -> (2L, H, W), channels x0, y0, x1, y1, ...
             oldest first: a reshape, so a stack of consecutive stored fields is a view
    bidirectional (contract.flow_direction): each frame also carries its pair's backward field,
             flow(i -> i-1) by the same method, compensated and quantised the same way: slots
             (4, H, W) = forward x, y, backward x, y (field_channels); a stack takes the
             backward fields of its older L/2 pairs and the forward fields of its newer L/2
             (a copy, not a view): centred on frame s-L/2, from the same frames s-L .. s
    window   ending at frame e: T frames e-(T-1)tau, ..., e, each with its own stack  WindowPlan

Everything is planar (channel-first) from the start: a clip is rgb (F, 3, H, W) and flow
(F, C, H, W), C = field_channels (2, or 4 bidirectional), the runtime's rings hold the same
slots, and a tower input is a slice (forward) or two (bidirectional).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from twostream import torchprep
from twostream.contract import FLOW_COMPENSATIONS, FLOW_DIRECTIONS, FLOW_METHODS, FLOW_NO_MOTION, ModelContract
from twostream.errors import ContractMismatch
from twostream.tvl1 import TVL1Params, tvl1_flow

_DIS_PRESETS = {
    "dis-ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "dis-fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "dis-medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
NO_MOTION = FLOW_NO_MOTION  # the quantised value of zero displacement
# Pairs per batched tvl1-torch call in preprocess_clip: bounds memory (about 10 MB a pair at
# 224x224 while the median filter runs) while keeping the batch large enough to pay.
TORCH_FLOW_CHUNK = 32


def available_flow_methods() -> tuple[str, ...]:
    """Methods this OpenCV build provides (TV-L1 needs opencv-contrib)."""
    has_tvl1 = hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")
    return tuple(m for m in FLOW_METHODS if m != "tvl1" or has_tvl1)


class OpticalFlow:
    """Dense flow between two grey uint8 frames (H, W) -> float32 (H, W, 2) in pixels.

    Holds OpenCV state (DIS keeps buffers), so use one instance per thread. "tvl1-torch" runs
    twostream.tvl1 with ``tvl1`` (required) on ``device``.
    """

    def __init__(self, method: str, tvl1: TVL1Params | None = None, device: str = "cpu"):
        if method not in FLOW_METHODS:
            raise ContractMismatch(f"unknown flow method {method!r}; choose from {FLOW_METHODS}")
        if method not in available_flow_methods():
            raise ContractMismatch(f"flow method {method!r} is not available in this OpenCV build "
                                   f"(available: {', '.join(available_flow_methods())})")
        self.method = method
        self.tvl1, self.device = tvl1, device
        if method == "tvl1-torch" and tvl1 is None:
            raise ContractMismatch("flow method 'tvl1-torch' needs TV-L1 parameters (the contract's tvl1)")
        if method in _DIS_PRESETS:
            self._impl = cv2.DISOpticalFlow_create(_DIS_PRESETS[method])
        elif method == "tvl1":
            self._impl = cv2.optflow.DualTVL1OpticalFlow_create()
        else:
            self._impl = None

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        if self.method == "tvl1-torch":
            pair = torch.from_numpy(np.stack([prev, cur])).to(self.device, torch.float32)
            return tvl1_flow(pair[:1], pair[1:], self.tvl1)[0].permute(1, 2, 0).cpu().numpy()
        if self._impl is None:  # Farneback, OpenCV's documented example parameters
            return cv2.calcOpticalFlowFarneback(prev, cur, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return self._impl.calc(prev, cur, None)


def resize_frame(bgr: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 (h, w, 3) of any size -> (rgb planes uint8 (3, H, W), grey uint8 (H, W)),
    size = (H, W)."""
    height, width = size
    small = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)
    return np.ascontiguousarray(rgb), cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


def quantise_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """float (H, W, 2) px -> uint8 planes (2, H, W): q = clip(round(f * 128 / bound) + 128, 0, 255)."""
    scaled = np.rint(flow * (128.0 / bound)) + float(NO_MOTION)
    return np.ascontiguousarray(np.clip(scaled, 0, 255).astype(np.uint8).transpose(2, 0, 1))


def compensate(flow: np.ndarray, compensation: str) -> np.ndarray:
    """Camera-motion compensation of one field (H, W, 2) px: the field minus its mean ("mean",
    Simonyan and Zisserman's mean flow subtraction) or its median ("median": a hand or a body
    filling a third of the view barely moves it) per axis, or minus the affine field
    a + b x + c y per axis fitted by least squares ("affine": pan, zoom, roll and shear of the
    camera); "none" returns it as it is."""
    if compensation == "none":
        return flow
    if compensation == "mean":
        return flow - flow.reshape(-1, 2).mean(axis=0, dtype=np.float64).astype(np.float32)
    if compensation == "median":
        return flow - np.median(flow.reshape(-1, 2), axis=0).astype(np.float32)
    if compensation == "affine":
        height, width = flow.shape[:2]
        grid, scale = (t.numpy() for t in torchprep.affine_grid(height, width))
        fit = grid @ ((grid.T @ flow.reshape(-1, 2).astype(np.float64)) / scale[:, None])  # (H W, 2)
        return flow - fit.astype(np.float32).reshape(height, width, 2)
    raise ContractMismatch(f"unknown flow compensation {compensation!r}; choose from {FLOW_COMPENSATIONS}")


def field_channels(direction: str) -> int:
    """Channels of one frame's stored field: 2 (x, y of flow(i-1 -> i)) for "forward", 4 for
    "bidirectional" (those, then x, y of flow(i -> i-1))."""
    if direction not in FLOW_DIRECTIONS:
        raise ContractMismatch(f"unknown flow direction {direction!r}; choose from {FLOW_DIRECTIONS}")
    return 2 if direction == "forward" else 4


def flow_field(flow: OpticalFlow, prev_grey: np.ndarray, grey: np.ndarray, bound: float,
               compensation: str = "none", direction: str = "forward",
               size: tuple[int, int] | None = None) -> np.ndarray:
    """The quantised field between two resized grey frames (h, w): uint8 planes (2, H, W), or
    (4, H, W) "bidirectional": the backward field flow(grey -> prev_grey) after the forward one,
    each compensated on its own. (H, W) = ``size``, the displacement resized there with its
    values kept (contract.flow_frame_size); None: the greys' own (h, w)."""
    forward = _one_field(flow(prev_grey, grey), bound, compensation, size)
    if field_channels(direction) == 2:
        return forward
    return np.concatenate((forward, _one_field(flow(grey, prev_grey), bound, compensation, size)))


def _one_field(d: np.ndarray, bound: float, compensation: str, size: tuple[int, int] | None) -> np.ndarray:
    """Displacement (h, w, 2) px -> quantised planes (2, H, W): resized to ``size`` (values kept)
    when it differs, compensated, clipped and quantised."""
    if size is not None and d.shape[:2] != tuple(size):
        d = cv2.resize(d, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return quantise_flow(compensate(d, compensation), bound)


def no_motion(size: tuple[int, int], channels: int = 2) -> np.ndarray:
    """The field of a frame without a predecessor: uint8 planes (channels, H, W), all NO_MOTION."""
    return np.full((channels, *size), NO_MOTION, np.uint8)


def stack_fields(fields: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """L fields (L, C, H, W) -> one temporal-tower input (2L, H, W), channels x0, y0, x1, y1,
    ... pairs oldest first; numpy or torch. C = 2 (forward): a reshape, so a contiguous run of
    stored fields stays a view. C = 4 (bidirectional slots, field_channels): the backward x, y
    of pairs 0 .. L/2-1, then the forward x, y of pairs L/2 .. L-1 (a copy)."""
    length, channels, height, width = fields.shape
    if channels == 2:
        return fields.reshape(2 * length, height, width)
    if channels != 4 or length % 2:
        raise ContractMismatch(f"cannot stack {length} fields of {channels} channels: forward slots have 2, "
                               "bidirectional slots 4 and an even count")
    older, newer = fields[:length // 2, 2:], fields[length // 2:, :2]
    joined = torch.cat((older, newer)) if isinstance(fields, torch.Tensor) else np.concatenate((older, newer))
    return joined.reshape(2 * length, height, width)


@dataclass(frozen=True)
class FlowSpec:
    """How flow is computed at run time: normally the contract's own method and size; they
    differ only when a user explicitly allowed a contract mismatch. ``tvl1``: the parameters
    tvl1-torch runs with (the contract's; ignored by other methods); ``device``: where torch
    flow runs (a torch device name, see twostream.devices; not part of the contract);
    ``direction``: the contract's flow_direction (fields of ``channels`` channels);
    ``frame_size``: the contract's flow_frame_size, (H, W) of the greys flow runs on (None: ``size``)."""

    method: str
    size: tuple[int, int]  # (H, W)
    bound: float
    compensation: str = "none"
    tvl1: TVL1Params | None = None
    device: str = "cpu"
    direction: str = "forward"
    frame_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        # the contract's rule: tvl1-torch without parameters runs the fast preset
        if self.method == "tvl1-torch" and self.tvl1 is None:
            object.__setattr__(self, "tvl1", TVL1Params.fast())
        field_channels(self.direction)  # raises on an unknown direction

    @property
    def channels(self) -> int:
        """Channels of one frame's field: 2, or 4 bidirectional (field_channels)."""
        return field_channels(self.direction)

    @classmethod
    def of(cls, contract: ModelContract, device: str = "cpu") -> "FlowSpec":
        return cls(contract.flow_method, tuple(contract.input_size), contract.flow_bound,
                   contract.flow_compensation, contract.tvl1, device, contract.flow_direction,
                   contract.flow_frame_size and tuple(contract.flow_frame_size))

    @property
    def grey_size(self) -> tuple[int, int]:
        """(H, W) of the grey frames flow runs on."""
        return tuple(self.frame_size or self.size)

    def resize(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BGR (h, w, 3) -> (rgb planes (3, H, W) at ``size``, grey (h', w') at grey_size)."""
        rgb, grey = resize_frame(bgr, self.size)
        return (rgb, grey) if self.frame_size is None else (rgb, resize_frame(bgr, self.grey_size)[1])


class FlowTracker:
    """One stream's flow state: feed frames in order, get each frame's rgb planes and its
    quantised field (flow from the previous frame, and to it when bidirectional; zero motion
    for the first).

    Holds an OpticalFlow, so one tracker per thread (and per stream). For tvl1-torch the
    previous grey frame stays on spec.device and only the field comes back to the host."""

    def __init__(self, spec: FlowSpec):
        self.spec = spec
        self._flow = OpticalFlow(spec.method, spec.tvl1, spec.device)
        self._no_motion = no_motion(spec.size, spec.channels)
        self._prev_grey: np.ndarray | torch.Tensor | None = None

    def push(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """BGR (h, w, 3) -> (rgb (3, H, W) uint8, field (C, H, W) uint8), C = spec.channels."""
        rgb, grey = self.spec.resize(bgr)
        if self.spec.method == "tvl1-torch":
            grey = torch.from_numpy(grey).to(self.spec.device)[None]
        if self._prev_grey is None:
            field = self._no_motion
        elif self.spec.method == "tvl1-torch":
            field = torchprep.flow_fields(self._prev_grey, grey, self.spec)[0].cpu().numpy()
        else:
            field = flow_field(self._flow, self._prev_grey, grey, self.spec.bound, self.spec.compensation,
                               self.spec.direction, self.spec.size)
        self._prev_grey = grey
        return rgb, field

    def reset(self) -> None:
        """Forget the previous frame: the next one starts a new stream (zero motion)."""
        self._prev_grey = None


def preprocess_clip(frames_bgr, spec: FlowSpec) -> tuple[np.ndarray, np.ndarray]:
    """BGR frames (F, h, w, 3) of any size -> rgb (F, 3, H, W) and flow (F, C, H, W), uint8
    (C = spec.channels).
    tvl1-torch runs all F-1 pairs in batched calls on spec.device (TORCH_FLOW_CHUNK at a time):
    each pair's field is the one FlowTracker computes, the batch only shares the work."""
    if spec.method == "tvl1-torch":
        return _preprocess_clip_torch(frames_bgr, spec)
    tracker = FlowTracker(spec)
    pairs = [tracker.push(frame) for frame in frames_bgr]
    if not pairs:
        height, width = spec.size
        return np.zeros((0, 3, height, width), np.uint8), np.zeros((0, spec.channels, height, width), np.uint8)
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _preprocess_clip_torch(frames_bgr, spec: FlowSpec) -> tuple[np.ndarray, np.ndarray]:
    height, width = spec.size
    if multiprocessing.parent_process() is not None and spec.device == "cpu":
        # A forked clip worker (twostream.data): OpenMP's thread pool does not survive fork, and
        # the first parallel torch op would hang for good. The workers are the parallelism.
        torch.set_num_threads(1)
    resized = [spec.resize(frame) for frame in frames_bgr]
    if not resized:
        return np.zeros((0, 3, height, width), np.uint8), np.zeros((0, spec.channels, height, width), np.uint8)
    greys = torch.from_numpy(np.stack([grey for _, grey in resized])).to(spec.device)
    fields = [torch.from_numpy(no_motion(spec.size, spec.channels))[None].to(spec.device)]
    for start in range(0, len(greys) - 1, TORCH_FLOW_CHUNK):
        stop = min(start + TORCH_FLOW_CHUNK, len(greys) - 1)
        fields.append(torchprep.flow_fields(greys[start:stop], greys[start + 1:stop + 1], spec))
    return np.stack([rgb for rgb, _ in resized]), torch.cat(fields).cpu().numpy()


def tower_inputs(rgb: np.ndarray, flow: np.ndarray, frames, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The towers' float32 inputs for clip frames ``frames`` (each >= L): spatial (N, 3, H, W)
    from rgb (F, 3, H, W); temporal (N, 2L, H, W), each frame's L-field stack (stack_fields) from
    flow (F, C, H, W)."""
    frames = np.asarray(frames, np.int64)
    if len(frames) and frames.min() < length:
        raise ContractMismatch(f"frame {int(frames.min())} has no full {length}-field flow stack")
    stacks = np.stack([stack_fields(flow[s - length + 1:s + 1]) for s in frames]) if len(frames) else \
        np.zeros((0, 2 * length, *flow.shape[2:]), np.uint8)
    return rgb[frames].astype(np.float32), stacks.astype(np.float32)


@dataclass(frozen=True)
class WindowPlan:
    """Which frames a window samples, and which windows a stream scores.

    Positions are frame numbers from the start of a clip or stream (``seq`` at run time). A
    window ending at frame e samples T frames at stride tau, oldest first,
        e - (T-1)*tau, ..., e - tau, e
    and sampled frame s reads the rgb of s and the fields s-L+1 .. s (field i = flow(i-1 -> i);
    bidirectional: the older half flow(i -> i-1), of the same pairs), so it needs frames s-L .. s.
    Field 0 is not real motion, hence the first complete window ends at e = (T-1)*tau + L. A
    stream scores every ``hop``-th window from there.
    """

    segments: int  # T
    stride: int  # tau
    stack_length: int  # L
    hop: int = 1

    def __post_init__(self) -> None:
        if min(self.segments, self.stride, self.stack_length, self.hop) < 1:
            raise ContractMismatch(f"window plan needs T, tau, L and hop >= 1, got {self}")

    @classmethod
    def of(cls, contract: ModelContract, hop: int = 1, stride: int | None = None) -> "WindowPlan":
        """The contract's plan; ``stride`` overrides tau (training draws it at random)."""
        return cls(contract.num_segments, stride or contract.stride, contract.stack_length, hop)

    @property
    def first_end(self) -> int:
        """The newest frame of the first complete window."""
        return (self.segments - 1) * self.stride + self.stack_length

    @property
    def span(self) -> int:
        """Frames one window reads, oldest flow input to newest frame."""
        return self.first_end + 1

    @property
    def reach(self) -> int:
        """Frames from the oldest sampled frame to the newest, inclusive (feature history)."""
        return (self.segments - 1) * self.stride + 1

    @property
    def offsets(self) -> np.ndarray:
        """(T,) int64 offsets of the sampled frames from the newest, oldest first."""
        return np.arange(-(self.segments - 1) * self.stride, 1, self.stride, dtype=np.int64)

    def sampled(self, end: int) -> np.ndarray:
        """(T,) frames the window ending at ``end`` samples, oldest first."""
        return self.offsets + end

    def is_scored(self, seq: int) -> bool:
        return seq >= self.first_end and (seq - self.first_end) % self.hop == 0

    def needs_features(self, seq: int) -> bool:
        """True if some scored window samples frame ``seq`` (then its towers run, once)."""
        return any(self.is_scored(seq + j * self.stride) for j in range(self.segments))

    def spread_ends(self, frames: int, count: int) -> list[int]:
        """Up to ``count`` window ends evenly spread over a clip of ``frames`` frames."""
        if frames - 1 < self.first_end:
            return []
        return [int(e) for e in np.unique(np.linspace(self.first_end, frames - 1, count).round().astype(int))]
