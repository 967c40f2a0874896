"""The graphs TensorRT would build from, checked here on CPU: the Q/DQ int8 graphs (symmetric
int8 only, Q/DQ on every convolution's input and weights, per-channel weights, float biases)
and the fp16 graphs (fp16 arithmetic, float32 inputs and outputs), both still carrying the
contract; and the CPU builds' variant with unsigned activations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from calibration.quantize import QuantSettings, default_settings, quantize_part
from building.export import OPSET, export_parts, sample_inputs, to_fp16
from engines.onnx_parts import PARTS, read_info
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import EngineError
from twostream.model import TwoStreamNet

CONTRACT = ModelContract(classes=GESTURE_CLASSES, fusion="conv", input_size=(64, 64), stack_length=3,
                         num_segments=3, stride=2)


@pytest.fixture(scope="module")
def model() -> TwoStreamNet:
    torch.manual_seed(1)
    return TwoStreamNet(CONTRACT).eval()


@pytest.fixture(scope="module")
def graphs(model, tmp_path_factory):
    """(fp32, int8, fp16) graph paths per part, calibrated on sample inputs."""
    root = tmp_path_factory.mktemp("graphs")
    fp32 = export_parts(model, root)
    out = []
    for part in PARTS:
        inputs = sample_inputs(model, part, batch=16, seed=2)
        int8 = quantize_part(fp32.of(part), root / f"{part.name}.int8.onnx", part, inputs)
        out.append((part, fp32.of(part), int8, to_fp16(fp32.of(part), root / f"{part.name}.fp16.onnx")))
    return out


def _initialisers(proto) -> dict:
    return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}


def test_exports_are_opset_17_with_a_dynamic_batch(graphs):
    for part, fp32, _, _ in graphs:
        proto = onnx.load(str(fp32))
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
        for value in (*proto.graph.input, *proto.graph.output):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", (part.name, value.name)
        assert [i.name for i in proto.graph.input] == list(part.inputs)


def test_int8_graphs_are_symmetric_qdq_that_tensorrt_reads(graphs):
    for part, _, int8, _ in graphs:
        proto = onnx.load(str(int8))
        inits = _initialisers(proto)
        produced_by = {out: node for node in proto.graph.node for out in node.output}
        convs = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
        assert convs, part.name
        for conv in convs:
            # Explicit quantisation: both the activation and the weight enter through a DQ.
            for operand in conv.input[:2]:
                assert produced_by[operand].op_type == "DequantizeLinear", (part.name, conv.name, operand)
            if len(conv.input) > 2:  # biases stay float: TensorRT has no int32 Q/DQ
                assert inits[conv.input[2]].dtype == np.float32, (part.name, conv.name)
        for node in proto.graph.node:
            if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
                continue
            zero_point = inits[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any(), (part.name, node.name)  # symmetric int8
        weights = [inits[produced_by[c.input[1]].input[0]] for c in convs if c.op_type == "Conv"]
        for w in weights:
            assert w.dtype == np.int8 and np.abs(w.astype(int)).max() <= 64  # 7-bit: 2 x 255 x 64 < 2^15
        conv_scales = [inits[produced_by[c.input[1]].input[1]] for c in convs if c.op_type == "Conv"]
        assert all(s.ndim == 1 and len(s) > 1 for s in conv_scales)  # per output channel


def test_cpu_int8_graphs_use_unsigned_activations(model, tmp_path):
    """The CPU default: uint8 activations with a zero point, still symmetric per-channel weights."""
    fp32 = export_parts(model, tmp_path)
    part = PARTS[1]
    int8 = quantize_part(fp32.of(part), tmp_path / "t.int8.onnx", part, sample_inputs(model, part, 16, 2),
                         default_settings("openvino"))
    proto = onnx.load(str(int8))
    inits = _initialisers(proto)
    activation_points = [inits[n.input[2]] for n in proto.graph.node
                         if n.op_type == "QuantizeLinear" and n.input[2] in inits]
    assert activation_points and all(z.dtype == np.uint8 for z in activation_points)
    assert default_settings("tensorrt").symmetric_activations and not default_settings("tensorrt").reduce_range


def test_fp16_graphs_compute_in_fp16_behind_float32_edges(graphs):
    for part, _, _, fp16 in graphs:
        proto = onnx.load(str(fp16))
        for value in (*proto.graph.input, *proto.graph.output):
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        inits = _initialisers(proto)
        conv_weights = [inits[n.input[1]] for n in proto.graph.node if n.op_type == "Conv"]
        assert conv_weights and all(w.dtype == np.float16 for w in conv_weights), part.name


def test_every_graph_carries_the_contract_and_its_precision(graphs):
    for part, fp32, int8, fp16 in graphs:
        for path, precision in ((fp32, "fp32"), (int8, "int8"), (fp16, "fp16")):
            info = read_info(path)
            assert (info.contract, info.part, info.precision) == (CONTRACT, part.name, precision)


def test_quantised_graphs_still_compute_the_part(model, graphs):
    import onnxruntime as ort

    from calibration.scoring import relative_error

    for part, fp32, int8, fp16 in graphs:
        inputs = sample_inputs(model, part, batch=4, seed=9)
        feeds = dict(zip(part.inputs, inputs))
        run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, feeds)[0]  # noqa: E731
        reference = run(fp32)
        assert relative_error(run(fp16), reference) < 5e-2, part.name
        assert relative_error(run(int8), reference) < 0.3, part.name


@pytest.mark.parametrize("settings, arrays, words", [
    (QuantSettings(method="magic"), (np.zeros((2, 3, 64, 64), np.float32),), "unknown calibration method"),
    (QuantSettings(), (np.zeros((0, 3, 64, 64), np.float32),), "no calibration samples"),
])
def test_bad_quantisation_requests(graphs, tmp_path, settings, arrays, words):
    part, fp32, _, _ = graphs[0]
    with pytest.raises(EngineError, match=words):
        quantize_part(fp32, tmp_path / "x.onnx", part, arrays, settings)
    assert not Path(tmp_path / "x.onnx").exists()
