"""The preprocessing contract: validation, serialisation, run-time checks."""

import json
import logging

import pytest

from twostream.preprocess import WindowPlan
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import ContractMismatch


def test_json_round_trip():
    contract = ModelContract(classes=GESTURE_CLASSES, fusion="bilinear", stride=4)
    again = ModelContract.from_json(contract.to_json())
    assert again == contract
    assert json.loads(contract.to_json())["input_size"] == [112, 112]


@pytest.mark.parametrize("field,value,message", [
    ("fusion", "average", "fusion 'average'"),
    ("backbone", "alexnet", "backbone 'alexnet'"),
    ("flow_method", "magic", "flow_method 'magic'"),
    ("stack_length", 0, "stack_length"),
    ("input_size", (16, 16), "input_size"),
])
def test_invalid_contracts_are_refused(field, value, message):
    with pytest.raises(ContractMismatch, match=message):
        ModelContract(classes=GESTURE_CLASSES, **{field: value})


def test_unknown_and_missing_fields():
    data = ModelContract(classes=GESTURE_CLASSES).to_dict()
    with pytest.raises(ContractMismatch, match="does not know"):
        ModelContract.from_dict({**data, "colour": "blue"})
    data.pop("classes")
    with pytest.raises(ContractMismatch, match="incomplete"):
        ModelContract.from_dict(data)


def test_window_span_counts_the_oldest_stack():
    contract = ModelContract(classes=GESTURE_CLASSES, stack_length=10, num_segments=5, stride=3)
    assert WindowPlan.of(contract).span == 4 * 3 + 10 + 1
    assert contract.flow_channels == 20


def test_runtime_mismatch_refused_or_warned(caplog):
    contract = ModelContract(classes=GESTURE_CLASSES)
    contract.check_runtime(flow_method="dis-medium", input_size=(112, 112), allow_mismatch=False)
    with pytest.raises(ContractMismatch, match="farneback.*dis-medium"):
        contract.check_runtime(flow_method="farneback", input_size=(112, 112), allow_mismatch=False)
    with caplog.at_level(logging.WARNING, logger="twostream.contract"):
        contract.check_runtime(flow_method="farneback", input_size=(112, 112), allow_mismatch=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "WARNING" in warnings[0]
