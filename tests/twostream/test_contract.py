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
    ("flow_stack_order", "newest-first", "flow_stack_order 'newest-first' is not one of"),
    ("flow_scaling", "metres", "flow_scaling 'metres' is not one of"),
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


def test_files_older_than_the_flow_input_fields_read_as_before():
    """Contracts written before flow_stack_order and flow_scaling: oldest first, in pixels; the
    fields are compared, so a model and an engine that differ in them do not match."""
    data = ModelContract(classes=GESTURE_CLASSES).to_dict()
    del data["flow_stack_order"], data["flow_scaling"]
    old = ModelContract.from_dict(data)
    assert (old.flow_stack_order, old.flow_scaling) == ("oldest-first", "pixels")
    assert old.flow_network_order() is None and old.flow_normalisation() == (128.0, 128.0 / old.flow_bound)
    assert ModelContract.from_dict({**data, "flow_scaling": "unit"}) != old
    assert ModelContract.from_dict({**data, "flow_stack_order": "oldest-last"}) != old


def test_oldest_last_is_the_reference_loaders_negative_index():
    """Field j of a stack in channels 2(j-1), 2(j-1)+1 (Python's -2 is channel 2L-2)."""
    contract = ModelContract(classes=GESTURE_CLASSES, stack_length=10, flow_stack_order="oldest-last")
    network = [None] * 20
    for j in range(10):
        network[2 * (j - 1)], network[2 * (j - 1) + 1] = 2 * j, 2 * j + 1  # oldest-first channels of field j
    assert contract.flow_network_order() == network


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
