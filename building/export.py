"""Export the model's three parts to ONNX (opset 17, dynamic batch), with the model's
preprocessing contract in each file's metadata, and check every export against PyTorch.
Part names, tensor names and the metadata format are engines.onnx_parts'.

An fp16 graph (for TensorRT, whose strongly typed networks take their precision from the
graph) keeps float32 inputs and outputs, so every backend keeps the same call signature.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from calibration.scoring import relative_error
from engines.onnx_parts import PARTS, SPATIAL, TEMPORAL, PartFiles, PartSpec, read_info, tag
from twostream.errors import EngineError
from twostream.model import TwoStreamNet

OPSET = 17


class _Part(nn.Module):
    """Wrap one bound method of the net as a module, so the tracer sees one graph per part."""

    def __init__(self, net: TwoStreamNet, part: PartSpec):
        super().__init__()
        self.net = net
        self.part = part.name

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.part == SPATIAL.name:
            return self.net.spatial(*inputs)
        if self.part == TEMPORAL.name:
            return self.net.temporal(*inputs)
        return self.net.head(*inputs)


def sample_inputs(model: TwoStreamNet, part: PartSpec, batch: int, seed: int) -> tuple[np.ndarray, ...]:
    """Plausible float32 inputs for ``part``: rgb uniform 0..255 (N, 3, H, W); flow around 128
    (N, 2L, H, W), as quantised small motions are; head inputs are the towers' own features of
    such inputs, (N, T, C, h, w) each, so the head is checked on features in their real range."""
    contract = model.contract
    rng = np.random.default_rng(seed)
    height, width = contract.input_size

    def rgb(n: int) -> np.ndarray:
        return rng.uniform(0, 255, (n, 3, height, width)).astype(np.float32)

    def flow(n: int) -> np.ndarray:
        noise = rng.normal(128, 12, (n, contract.flow_channels, height, width))
        return np.clip(np.rint(noise), 0, 255).astype(np.float32)

    if part == SPATIAL:
        return (rgb(batch),)
    if part == TEMPORAL:
        return (flow(batch),)
    frames = batch * contract.num_segments
    with torch.inference_mode():
        s = model.spatial(torch.from_numpy(rgb(frames))).numpy()
        t = model.temporal(torch.from_numpy(flow(frames))).numpy()
    return (s.reshape(batch, contract.num_segments, *s.shape[1:]),
            t.reshape(batch, contract.num_segments, *t.shape[1:]))  # own shape: own temporal backbone


def export_part(model: TwoStreamNet, part: PartSpec, path: Path) -> Path:
    """Trace one part to ``path`` (opset 17, batch axis dynamic) and tag it with the contract."""
    example = tuple(torch.from_numpy(a) for a in sample_inputs(model, part, batch=2, seed=0))
    dynamic = {name: {0: "batch"} for name in (*part.inputs, part.output)}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated; dynamo=False is still the only
        # way here to get a single-file opset-17 graph.
        warnings.simplefilter("ignore")
        # The wrapper is put in eval mode itself: the exporter restores the wrapper's own mode
        # afterwards, recursively, which would otherwise leave the net in training mode.
        torch.onnx.export(_Part(model, part).eval(), example, str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(part.inputs), output_names=[part.output], dynamic_axes=dynamic,
                          do_constant_folding=True)
    tag(path, model.contract, part.name, "fp32")
    return path


def export_parts(model: TwoStreamNet, out_dir: Path) -> PartFiles:
    """All three parts as ``out_dir/{spatial,temporal,head}.onnx`` (fp32)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return PartFiles(*(export_part(model, part, out_dir / f"{part.name}.onnx") for part in PARTS))


def to_fp16(src: Path, dst: Path) -> Path:
    """An fp16 copy of an fp32 graph: weights and arithmetic in fp16, inputs and outputs still
    float32 (Cast nodes at the edges), so callers are unchanged. Metadata is carried over."""
    from onnxconverter_common import float16

    info = read_info(src)
    with warnings.catch_warnings():
        # It warns for every weight below fp16's smallest normal value that it rounds; those
        # are far below what changes an output, and parity measures the outcome anyway.
        warnings.simplefilter("ignore", UserWarning)
        proto = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(proto, str(dst))
    tag(dst, info.contract, info.part, "fp16")
    return dst


def check_export(model: TwoStreamNet, files: PartFiles, tolerance: float, batch: int = 3) -> dict[str, float]:
    """Run each file in ONNX Runtime (CPU) on sample inputs at a batch size other than the
    export's, and compare with PyTorch fp32. Returns the relative error per part; raises
    EngineError naming the part when one exceeds ``tolerance``."""
    import onnxruntime as ort

    errors = {}
    for part in PARTS:
        inputs = sample_inputs(model, part, batch=batch, seed=1)
        with torch.inference_mode():
            reference = _Part(model, part).eval()(*(torch.from_numpy(a) for a in inputs)).numpy()
        session = ort.InferenceSession(str(files.of(part)), providers=["CPUExecutionProvider"])
        actual = session.run(None, dict(zip(part.inputs, inputs)))[0]
        if actual.shape != reference.shape:
            raise EngineError(f"exported {part.name}: output shape {actual.shape}, PyTorch gives {reference.shape}")
        errors[part.name] = relative_error(actual, reference)
        if not errors[part.name] <= tolerance:
            raise EngineError(f"exported {part.name} differs from PyTorch: relative error "
                              f"{errors[part.name]:.2e} > {tolerance:.0e}")
    return errors
