"""The ONNX parts carry what the contract adds inside the graph: the temporal tower's input
order and scaling (imported reference weights) and the late-svm head's matmul."""

import numpy as np
import torch

from building.export import check_export, export_parts
from twostream.contract import ModelContract
from twostream.model import TwoStreamNet
from twostream.svmfusion import install_svm


def test_reordered_unit_flow_and_svm_head_export_exactly(tmp_path):
    torch.manual_seed(0)
    contract = ModelContract(classes=("a", "b", "c"), fusion="late-svm", input_size=(64, 64), stack_length=3,
                             num_segments=2, flow_stack_order="oldest-last", flow_scaling="unit")
    model = TwoStreamNet(contract).eval()
    rng = np.random.default_rng(0)
    install_svm(model, rng.normal(size=(3, 6)).astype(np.float32), rng.normal(size=3).astype(np.float32))
    errors = check_export(model, export_parts(model, tmp_path), tolerance=1e-4)
    assert set(errors) == {"spatial", "temporal", "head"} and max(errors.values()) <= 1e-4
