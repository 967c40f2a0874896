"""The flow stage: resize each frame, compute one flow field per consecutive frame pair,
clip and quantise it exactly as the model's contract says, and write both into the rings.

It runs twostream.preprocess.FlowTracker, the code training and calibration run, so a field
here is bit-equal to the field training computed for the same two frames. Each field is computed once; a
2L-channel stack is later a view of the last L fields in the flow ring.

When a live source drops frames, the pair is (last processed frame, this frame): the field
spans the gap and shows faster motion than the scene had. That is the price of staying live;
the drops are counted and reported with every prediction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from realtime.channel import Channel
from realtime.messages import FlowField, Frame
from realtime.rings import FlowRing, FrameRing
from realtime.stage import Control, ProcessingStage
from twostream.contract import ModelContract
from twostream.errors import ContractMismatch
from twostream.preprocess import FlowSpec, FlowTracker, available_flow_methods


@dataclass(frozen=True)
class FlowSettings:
    """``method`` and ``input_size`` (H, W) default to the model's contract; anything else is
    refused unless ``allow_contract_mismatch``, and then warned about loudly. ``device``: the
    torch device torch flow (tvl1-torch) runs on, a resolved name ("cpu", "cuda": see
    twostream.devices.resolve_device); other methods run in OpenCV on the CPU."""

    method: str | None = None
    input_size: tuple[int, int] | None = None
    allow_contract_mismatch: bool = False
    device: str = "cpu"

    def resolve(self, contract: ModelContract) -> FlowSpec:
        """The flow to run; raises ContractMismatch as described above (the warning goes to
        twostream.contract's logger)."""
        method = self.method or contract.flow_method
        size = tuple(self.input_size or contract.input_size)
        contract.check_runtime(flow_method=method, input_size=size,
                               allow_mismatch=self.allow_contract_mismatch)
        if method not in available_flow_methods():
            raise ContractMismatch(f"flow method {method!r} is not available in this OpenCV build "
                                   f"(available: {', '.join(available_flow_methods())})")
        # tvl1-torch runs the contract's own TV-L1 parameters (FlowSpec's fast preset when the
        # contract names another method and a mismatch was allowed)
        return FlowSpec(method, size, contract.flow_bound, contract.flow_compensation, contract.tvl1, self.device,
                        contract.flow_direction, contract.flow_frame_size and tuple(contract.flow_frame_size))


class FlowStage(ProcessingStage[Frame, FlowField]):
    """Frame -> (resized RGB into ``frames``, quantised field into ``fields``) -> FlowField."""

    def __init__(self, control: Control, inbox: Channel[Frame], outbox: Channel[FlowField],
                 frames: FrameRing, fields: FlowRing, spec: FlowSpec):
        super().__init__("flow", control, inbox, outbox)
        self.frames, self.fields = frames, fields
        # OpenCV's DIS keeps internal buffers: this tracker is used only by this stage's thread.
        self._tracker = FlowTracker(spec)
        self._seq = 0

    def process(self, frame: Frame) -> FlowField:
        started = time.perf_counter()
        rgb, field = self._tracker.push(frame.bgr)
        seq = self._seq
        self.frames.write(seq, rgb)
        self.fields.write(seq, field)
        self._seq += 1
        flow_ms = (time.perf_counter() - started) * 1000.0
        return FlowField(seq, frame.index, frame.t_capture, frame.t_due, frame.decode_ms, flow_ms, frame.truth)
