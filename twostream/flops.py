"""FLOPs counted by running the parts under torch's FlopCounterMode (convolutions and matrix
products; element-wise ops are not counted, as is usual)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from twostream.model import TwoStreamNet


@torch.inference_mode()
def count_flops(model: TwoStreamNet) -> dict:
    """GFLOPs (2 x multiply-adds) of one spatial pass, one temporal pass, one head pass, and the
    per-frame total at hop 1 (one pass of each, since tower features are cached per frame)."""
    contract = model.contract
    h, w = contract.input_size
    rgb = torch.zeros(1, 3, h, w)
    flow = torch.zeros(1, contract.flow_channels, h, w)
    was_training = model.training
    model.eval()
    figures = {}
    with FlopCounterMode(display=False) as counter:
        s = model.spatial(rgb)
    figures["spatial_gflops"] = counter.get_total_flops() / 1e9
    with FlopCounterMode(display=False) as counter:
        t = model.temporal(flow)
    figures["temporal_gflops"] = counter.get_total_flops() / 1e9
    frames = contract.num_segments
    with FlopCounterMode(display=False) as counter:
        model.head(s.unsqueeze(1).expand(-1, frames, -1, -1, -1), t.unsqueeze(1).expand(-1, frames, -1, -1, -1))
    figures["head_gflops_per_window"] = counter.get_total_flops() / 1e9
    figures["per_frame_gflops_hop1"] = sum(figures.values())
    figures["naive_gflops_per_window"] = (frames * (figures["spatial_gflops"] + figures["temporal_gflops"])
                                          + figures["head_gflops_per_window"])
    model.train(was_training)
    return {k: round(v, 4) for k, v in figures.items()}
