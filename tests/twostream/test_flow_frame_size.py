"""contract.flow_frame_size: flow computed on frames of their own size, each field resized to the
model's input with its displacement left in pixels of those frames (the ResNet-101 reference's
flow JPEGs: extracted on the source frames, resized by its loader without rescaling values)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from twostream.contract import FlowSource, ModelContract
from twostream.errors import ContractMismatch
from twostream.flowcache import spec_record
from twostream.preprocess import NO_MOTION, FlowSpec, FlowTracker, preprocess_clip
from twostream.refimport import reference_contract

CLASSES = ("a", "b")
DX = 6  # px per frame at the source's 120 x 160


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """8 BGR frames (120, 160, 3) of a texture moving DX px left each frame."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur((rng.random((200, 300, 3)) * 255).astype(np.uint8), (9, 9), 3)
    return np.stack([texture[20:140, 20 + DX * i:180 + DX * i] for i in range(8)])


def _mean_x_px(flow: np.ndarray, bound: float) -> float:
    """Mean x displacement in px of fields (F, 2, H, W) 1..F-1, borders left out."""
    return float(((flow[1:, 0, 6:-6, 6:-6].astype(np.float64) - NO_MOTION) * bound / 128).mean())


@pytest.mark.parametrize("method", ["dis-medium", "tvl1-torch"])
def test_displacement_stays_in_pixels_of_the_flow_frames(frames, method):
    """At 60 x 80 the content moves DX/2 px a frame; flow on 120 x 160 frames, resized to 60 x 80,
    keeps DX: the values the reference's resized JPEGs hold."""
    model = FlowSpec(method, (60, 80), 20.0)
    source = FlowSpec(method, (60, 80), 20.0, frame_size=(120, 160))
    rgb, small = preprocess_clip(frames, model)
    rgb_too, kept = preprocess_clip(frames, source)
    assert kept.shape == small.shape == (8, 2, 60, 80)
    np.testing.assert_array_equal(rgb_too, rgb)  # the spatial tower's input is unchanged
    assert -DX / 2 - 1 < _mean_x_px(small, 20.0) < -DX / 2 + 1
    assert -DX - 1 < _mean_x_px(kept, 20.0) < -DX + 1


@pytest.mark.parametrize("method", ["dis-medium", "tvl1-torch"])
def test_a_stream_and_a_clip_get_the_same_fields(frames, method):
    spec = FlowSpec(method, (60, 80), 20.0, "mean", frame_size=(120, 160))
    _, clip = preprocess_clip(frames, spec)
    tracker = FlowTracker(spec)
    np.testing.assert_array_equal(np.stack([tracker.push(frame)[1] for frame in frames]), clip)


def test_the_contract_carries_and_compares_it_and_older_files_load():
    plain = ModelContract(classes=CLASSES)
    sized = ModelContract(classes=CLASSES, flow_frame_size=(240, 320))
    assert sized != plain and FlowSpec.of(sized).frame_size == (240, 320) and FlowSpec.of(plain).frame_size is None
    assert ModelContract.from_json(sized.to_json()) == sized
    old = plain.to_dict()
    del old["flow_frame_size"]
    assert ModelContract.from_dict(old) == plain
    # cache entries made before the field existed keep their names
    assert "frame_size" not in spec_record(FlowSpec.of(plain)) and "frame_size" in spec_record(FlowSpec.of(sized))
    imported = reference_contract(CLASSES, flow_frame_size=(240, 320))
    assert imported.flow_frame_size == (240, 320) and imported.input_size == (224, 224)


@pytest.mark.parametrize("kwargs, message", [
    (dict(flow_frame_size=(16, 320)), r"flow_frame_size \(16, 320\) is not an \(H, W\) of at least 32 px"),
    (dict(flow_frame_size=(240, 320), flow_method="tvl1", flow_source=FlowSource("tvl1", 20.0)),
     "not pre-extracted flow"),
])
def test_a_bad_flow_frame_size_is_one_clear_error(kwargs, message):
    with pytest.raises(ContractMismatch, match=message):
        ModelContract(classes=CLASSES, **kwargs)


def test_import_resnet101_takes_the_frame_size_and_the_card_says_it(tmp_path):
    import train
    from tests.twostream.test_refimport import _cheap_state, save_reference, write_class_index
    from twostream.checkpoint import read_checkpoint

    spatial = save_reference(tmp_path / "spatial.pth.tar", _cheap_state(3))
    motion = save_reference(tmp_path / "motion.pth.tar", _cheap_state(20))
    out = tmp_path / "ucf.pt"
    assert train.main(["import-resnet101", "--spatial", str(spatial), "--motion", str(motion), "--classes",
                       str(write_class_index(tmp_path / "classInd.txt")), "--out", str(out),
                       "--flow-frame-size", "240", "320"]) == 0
    assert read_checkpoint(out).contract.flow_frame_size == (240, 320)
    assert train.main(["card", "--model", str(out)]) == 0
    assert "on grey frames of 240x320, each field resized to 224x224 with its values kept" in \
        out.with_suffix(".md").read_text()
