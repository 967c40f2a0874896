"""The contract every backend available on CPU keeps: shapes, dtypes, input checks, calls to
different parts from different threads, and parity with PyTorch fp32 on generated windows."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from calibration.quantize import default_settings
from engines.auto import construct
from calibration.scoring import relative_error
from building.parity import parity_report
from calibration.scoring import generated_windows, score
from engines.torch_backend import TorchBackend
from engines.torch_precision_backend import TorchPrecisionBackend
from tests.engines.conftest import SMALL, build
from twostream.errors import EngineError

# (backend, precision, max relative logit error vs PyTorch fp32 on the generated windows).
# int8 on random weights has no accuracy to keep (None): test_int8_matches_its_qdq_arithmetic
# checks it runs its graph faithfully, test_int8_demo.py the trained model's accuracy.
CASES = [
    ("torch", "fp32", 1e-6),
    ("torch", "bf16", 5e-2),
    ("torch", "fp16", 5e-2),
    ("onnxruntime", "fp32", 1e-3),
    ("onnxruntime", "fp16", 5e-2),
    ("onnxruntime", "int8", None),
    ("openvino", "fp32", 1e-3),
    ("openvino", "fp16", 5e-2),
    ("openvino", "int8", None),
]


@pytest.fixture(scope="module")
def windows():
    """20 generated windows (1 clip per class, 2 windows each)."""
    return generated_windows(SMALL, clips_per_class=1, per_clip=2, frames=16)


@pytest.fixture(scope="module")
def reference(small_model, windows):
    backend = TorchBackend(small_model)
    return backend, score(backend, windows)


@pytest.fixture(scope="module", params=CASES, ids=[f"{b}-{p}" for b, p, _ in CASES])
def case(request, small_model, engine_root):
    backend, precision, bound = request.param
    if backend == "torch":
        opened = TorchPrecisionBackend(small_model, precision=precision)
    else:
        built, folder = build(small_model, engine_root, backend, precision)
        opened = construct(backend, built.info, built.info.files(folder))
    with opened:
        yield opened, precision, bound


@pytest.mark.parametrize("batch", [1, 2])
def test_shapes_and_dtypes(case, small_model, batch):
    backend, _, _ = case
    rng = np.random.default_rng(batch)
    height, width = SMALL.input_size
    rgb = rng.uniform(0, 255, (batch, 3, height, width)).astype(np.float32)
    flow = rng.integers(100, 156, (batch, SMALL.flow_channels, height, width)).astype(np.float32)
    s, t = np.array(backend.spatial(rgb)), np.array(backend.temporal(flow))
    channels = small_model.feature_channels
    assert s.shape == t.shape == (batch, channels, 4, 4)
    assert backend.feature_shape == (channels, 4, 4)
    window = np.repeat(s[:, None], SMALL.num_segments, axis=1)
    logits = backend.head(window, np.repeat(t[:, None], SMALL.num_segments, axis=1))
    assert logits.shape == (batch, SMALL.num_classes)
    for out in (s, t, logits):
        assert out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.parametrize("call, shape, dtype, message", [
    ("spatial", (1, 3, 64, 64), np.float64, "expected float32"),
    ("spatial", (1, 3, 32, 64), np.float32, "expected shape"),
    ("temporal", (1, 3, 64, 64), np.float32, "expected shape"),
])
def test_inputs_are_checked_before_running(case, call, shape, dtype, message):
    backend, _, _ = case
    with pytest.raises(EngineError, match=message):
        getattr(backend, call)(np.zeros(shape, dtype))


def test_parity_with_pytorch_fp32(case, reference, windows):
    backend, precision, bound = case
    ref_backend, ref_scored = reference
    report = parity_report(backend, ref_backend, windows, precision, reference_scored=ref_scored)
    assert report.windows == len(windows.pairs) == 20
    assert np.isfinite(report.max_abs_err)
    if bound is not None:
        assert report.max_rel_err <= bound, report.to_dict()


@pytest.fixture(scope="module", params=["symmetric", "unsigned"])
def qdq_graphs(request, small_model, engine_root):
    """Both activation formats: symmetric (the graph TensorRT builds from) and unsigned (the
    CPU default)."""
    quant = replace(default_settings("onnxruntime"), symmetric_activations=request.param == "symmetric")
    built, folder = build(small_model, engine_root, "onnxruntime", "int8", name=f"qdq-{request.param}", quant=quant)
    return built.info, built.info.files(folder)


@pytest.mark.parametrize("backend_name", ["onnxruntime", "openvino"])
def test_int8_matches_its_qdq_arithmetic(qdq_graphs, backend_name):
    """An int8 backend computes what its Q/DQ graph says: ONNX Runtime with graph optimisations
    off evaluates every QuantizeLinear/DequantizeLinear literally, in float. On CPUs without
    VNNI, full-range int8 weights made the fused int8 kernels saturate (relative errors ~0.4 on
    the spatial features); the 7-bit weights calibration.quantize writes must not. OpenVINO
    runs the same Q/DQ ONNX file here (the one artifact every runtime reads)."""
    import onnxruntime as ort

    info, files = qdq_graphs
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 255, (8, 3, *SMALL.input_size)).astype(np.float32)
    flow = rng.integers(90, 166, (8, SMALL.flow_channels, *SMALL.input_size)).astype(np.float32)
    with construct(backend_name, info, files) as backend:
        for path, name, x, call in ((files.spatial, "rgb", rgb, backend.spatial),
                                    (files.temporal, "flow", flow, backend.temporal)):
            literal = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            expected = literal.run(None, {name: x})[0]
            assert relative_error(np.array(call(x)), expected) < 0.1, path.name  # saturation: 0.24-0.35


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision, bound", [("fp32", 1e-3), ("fp16", 5e-2), ("bf16", 5e-2)])
def test_pytorch_on_cuda(small_model, windows, reference, precision, bound):
    ref_backend, ref_scored = reference
    with TorchPrecisionBackend(small_model, precision=precision, device="cuda") as backend:
        report = parity_report(backend, ref_backend, windows, precision, reference_scored=ref_scored)
    assert report.max_rel_err <= bound, report.to_dict()
