"""The device flow stage: the flow stage of ``tvl1-torch``, on a torch device (CUDA, or the CPU).

    Frame.bgr (h, w, 3) uint8 on the host
      ─upload, once (CUDA: through a pinned buffer, non_blocking)─▶ (1, h, w, 3) uint8 on the device
      ─twostream.torchprep.resize_frames─▶ rgb (1, 3, H, W), grey (1, H, W) uint8    on the device
      ─fields(previous grey, grey)─▶ field (1, C, H, W) uint8 (C = spec.channels)       on the device
           torchprep.flow_fields: TV-L1, compensation, clip and quantise, as the contract says;
           alone, or batched with other streams' pairs (realtime.flowbatch.FlowClient)
      ─▶ the device-resident frame and flow rings (realtime.rings, device=...) ─▶ FlowField(seq)

The towers then read a frame's rgb and its 2L stack as views of those rings, on the device
(realtime.towers). Nothing returns to the host on the way: the only host-to-device copy is the
decoded frame's. On the CPU the same code runs, the upload being a no-op (a tensor over the
frame's own memory), so this stage's logic is tested on machines without a GPU.

The steps are those of twostream.preprocess.FlowTracker (same first-frame no-motion field, same
pairs: with drops, (last processed frame, this frame)); the torch resize matches OpenCV's to
within one level, so a field here equals the tracker's to within the bound
tests/realtime/test_device_flow.py states.

Ordering on CUDA: every stage issues its work on the device's default stream, so work follows
the order the threads issued it in. This stage waits for its frame's work to finish before
handing ``seq`` on: the ring slots are then complete for any reader, the pinned buffer can be
refilled, and ``flow_ms`` is the real time the frame took, not the time to queue kernels.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from realtime.channel import Channel
from realtime.errors import PipelineError
from realtime.messages import FlowField, Frame
from realtime.rings import FlowRing, FrameRing
from realtime.stage import Control, ProcessingStage
from twostream.preprocess import NO_MOTION, FlowSpec
from twostream.torchprep import FrameResizer, flow_fields

# The flow methods this stage runs (and no other stage does): torch flow, on FlowSpec.device.
DEVICE_FLOW_METHODS = ("tvl1-torch",)

# (previous grey, grey), each (1, H, W) uint8 on the device -> field (1, C, H, W) uint8 there
# (C = FlowSpec.channels: 4 with the backward field when the contract is bidirectional).
FieldsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def runs_on_device(spec: FlowSpec) -> bool:
    """Whether ``spec``'s flow runs in this stage (device rings), not realtime.flowstage."""
    return spec.method in DEVICE_FLOW_METHODS


def own_fields(spec: FlowSpec) -> FieldsFn:
    """The flow of one stream's pairs, one call each (no batching across streams)."""
    return lambda prev_grey, grey: flow_fields(prev_grey, grey, spec)


class Upload:
    """Host BGR frames (h, w, 3) uint8 -> (1, h, w, 3) uint8 on ``device``, one copy each.

    CUDA: the frame is copied into a pinned host buffer, then to a device buffer with
    non_blocking (a DMA from pinned memory, no staging copy inside the driver); both buffers are
    reused while frames keep their size. The caller must let the copy finish before the next
    call refills the pinned buffer (DeviceFlowStage synchronises once per frame).
    CPU: a tensor over the frame's own memory (no copy at all)."""

    def __init__(self, device: str):
        self.device = torch.device(device)
        self._pinned: torch.Tensor | None = None
        self._on_device: torch.Tensor | None = None

    def __call__(self, bgr: np.ndarray) -> torch.Tensor:
        frame = torch.from_numpy(bgr)
        if self.device.type == "cpu":
            return frame.unsqueeze(0)
        if self._pinned is None or self._pinned.shape[1:] != frame.shape:
            self._pinned = torch.empty((1, *frame.shape), dtype=torch.uint8, pin_memory=True)
            self._on_device = torch.empty((1, *frame.shape), dtype=torch.uint8, device=self.device)
        self._pinned[0].copy_(frame)
        self._on_device.copy_(self._pinned, non_blocking=True)
        return self._on_device

    @property
    def staging(self) -> torch.Tensor | None:
        """The pinned host buffer frames go through on CUDA (None on the CPU, or before a frame)."""
        return self._pinned


class DeviceFlowStage(ProcessingStage[Frame, FlowField]):
    """Frame -> (rgb into the device ``frames`` ring, field into the device ``fields`` ring)
    -> FlowField. ``fields_fn`` computes a pair's field: ``own_fields(spec)``, or a
    realtime.flowbatch.FlowClient's ``fields`` to batch with other streams."""

    def __init__(self, control: Control, inbox: Channel[Frame], outbox: Channel[FlowField],
                 frames: FrameRing, fields: FlowRing, spec: FlowSpec, fields_fn: FieldsFn):
        super().__init__("flow", control, inbox, outbox)
        if frames.device is None or fields.device is None:
            raise PipelineError("the device flow stage writes device rings (FrameRing/FlowRing with a device)")
        self.frames, self.fields, self.spec = frames, fields, spec
        self._fields_fn = fields_fn
        self._upload = Upload(spec.device)
        self._resize = FrameResizer(spec.size)
        # flow on greys of the contract's flow_frame_size, when it names one (the fields come back at spec.size)
        self._grey = None if spec.frame_size is None else FrameResizer(spec.grey_size)
        self._cuda = torch.device(spec.device).type == "cuda"
        self._no_motion = torch.full((1, spec.channels, *spec.size), NO_MOTION, dtype=torch.uint8, device=spec.device)
        self._prev_grey: torch.Tensor | None = None
        self._seq = 0

    def process(self, frame: Frame) -> FlowField:
        started = time.perf_counter()
        bgr = self._upload(frame.bgr)
        rgb, grey = self._resize(bgr)
        if self._grey is not None:
            grey = self._grey(bgr)[1]
        field = self._no_motion if self._prev_grey is None else self._fields_fn(self._prev_grey, grey)
        seq = self._seq
        self.frames.write(seq, rgb[0])
        self.fields.write(seq, field[0])
        self._prev_grey = grey  # its own tensor: the resizer allocates each call
        if self._cuda:
            torch.cuda.current_stream(self._upload.device).synchronize()  # module docstring: ordering
        self._seq += 1
        flow_ms = (time.perf_counter() - started) * 1000.0
        return FlowField(seq, frame.index, frame.t_capture, frame.t_due, frame.decode_ms, flow_ms, frame.truth)
