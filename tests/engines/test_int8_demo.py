"""INT8 on the shipped demo model: at least 99% top-1 agreement with PyTorch fp32 over 500
held-out generated windows (seed 1000, never a training clip), and fused held-out top-1 within
1 point of fp32, for each CPU int8 backend. Calibrated on the demo stream (seed 2000).

The held-out windows, the fp32 reference's features and the quantised graphs are made once for
the module and shared by both backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from calibration.dataset import CalibrationSettings
from engines.auto import construct
from building.parity import parity_report, part_costs
from calibration.scoring import generated_windows, score
from engines.torch_backend import TorchBackend
from tests.engines.conftest import build
from twostream.checkpoint import load_model

# TWOSTREAM_DEMO_MODEL: another trained gesture model file (e.g. while models/demo.pt trains).
DEMO = Path(os.environ.get("TWOSTREAM_DEMO_MODEL") or Path(__file__).resolve().parents[2] / "models" / "demo.pt")

pytestmark = pytest.mark.skipif(not DEMO.is_file(), reason="models/demo.pt is absent")


@pytest.fixture(scope="module")
def demo():
    model, _ = load_model(DEMO)
    return model


@pytest.fixture(scope="module")
def held_out(demo):
    """500 windows: 10 clips per class x 10 classes x 5 windows, and the fp32 reference's score."""
    windows = generated_windows(demo.contract, clips_per_class=10, per_clip=5)
    reference = TorchBackend(demo)
    return windows, reference, score(reference, windows)


@pytest.fixture(scope="module")
def int8_graphs(demo, tmp_path_factory):
    """One build with the defaults (240 demo-stream frames; int8 parts chosen on validation
    windows, seed 3000). Its Q/DQ ONNX files are what both runtimes read (OpenVINO's IR is
    converted from them; the contract tests cover that step)."""
    built, folder = build(demo, tmp_path_factory.mktemp("int8"), "onnxruntime", "int8",
                          calibration=CalibrationSettings(), int8_parts="auto")
    return built, folder


@pytest.mark.parametrize("backend_name", ["onnxruntime", "openvino"])
def test_int8_keeps_the_demo_models_accuracy(int8_graphs, held_out, backend_name):
    windows, reference, reference_scored = held_out
    built, folder = int8_graphs
    assert "int8" in (built.info.spatial.precision, built.info.temporal.precision, built.info.head.precision)
    with construct(backend_name, built.info, built.info.files(folder)) as engine:
        engine_scored = score(engine, windows)
        costs = part_costs(engine, reference, windows, reference_scored, engine_scored)
        report = parity_report(engine, reference, windows, "int8", reference_scored=reference_scored,
                               candidate_scored=engine_scored, part_costs=costs)
    assert report.windows >= 500
    assert report.top1_agreement >= 0.99, report.to_dict()
    assert report.top1_reference - report.top1 <= 0.01, report.to_dict()
    assert report.passed, report.failures
