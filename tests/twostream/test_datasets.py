"""Dataset layouts: UCF101 and HMDB51 split readers, the pre-extracted JPEG layout, and the
contract's flow source (pre-extracted flow's own quantisation) on tiny copies the tests write."""

import dataclasses

import numpy as np
import pytest

from tests.twostream.dataset_layouts import (DIRECTIONS, FRAMES, HMDB_CLASSES, SIZE, UCF_CLASSES, flow_jpeg,
                                             write_hmdb51, write_jpegs, write_ucf101)
from twostream.contract import FlowSource, ModelContract
from twostream.data import ClipPrep
from twostream.datasets import (DatasetSource, JpegLayout, check_memory, dataset_clips, jpeg_flow_pixels, read_hmdb51,
                                read_jpeg_clip, read_split, read_ucf101)
from twostream.errors import ContractMismatch, DataError, SplitError
from twostream.preprocess import quantise_flow


def test_ucf101_split_lists_name_classes_videos_and_parts(tmp_path):
    root = write_ucf101(tmp_path / "UCF-101")
    split = read_ucf101(root, 1)
    assert split.classes == UCF_CLASSES and split.dataset == "ucf101" and split.split == 1
    assert [s.label for s in split.train] == [0, 0, 1, 1] and [s.label for s in split.test] == [0, 1]
    # UCF101's own misspelling: the list says HandStandPushups, the folder HandstandPushups
    assert split.test[1].video == "HandStandPushups_g01_c01" and split.test[1].path.is_file()
    assert all(s.path.parent.name == UCF_CLASSES[s.label] for s in split.train + split.test)
    assert read_split("ucf101", root, 1) == split


def test_hmdb51_split_files_train_test_and_unused(tmp_path):
    root = write_hmdb51(tmp_path / "hmdb51")
    split = read_hmdb51(root, 1)
    assert split.classes == HMDB_CLASSES
    assert len(split.train) == 4 and len(split.test) == 2  # video 0 of each class is unused (0)
    assert {s.video for s in split.test} == {f"{c}_clip_1_f_cm_np1_le_med_1" for c in HMDB_CLASSES}
    assert not any("_clip_0_" in s.video for s in split.train + split.test)


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "ucfTrainTestlist" / "classInd.txt").unlink(), "split file not found"),
    (lambda r: (r / "ucfTrainTestlist" / "classInd.txt").write_text("1 A\n3 B\n"), "classInd.txt:2: expected '<2>"),
    (lambda r: (r / "ucfTrainTestlist" / "testlist01.txt").write_text("Nope/v_Nope_g01_c01.avi\n"),
     "testlist01.txt:1: class 'Nope' is not in classInd.txt"),
    (lambda r: (r / "ucfTrainTestlist" / "trainlist01.txt").write_text("ApplyEyeMakeup/v_gone.avi 1\n"),
     "trainlist01.txt:1: video ApplyEyeMakeup/v_gone.avi is not under"),
    (lambda r: (r / "ucfTrainTestlist" / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi 2\n"),
     "class index 2 but classInd.txt gives ApplyEyeMakeup index 1"),
])
def test_a_damaged_ucf101_list_is_one_split_error_naming_file_and_line(tmp_path, damage, message):
    root = write_ucf101(tmp_path / "UCF-101", per_class=2)
    damage(root)
    with pytest.raises(SplitError, match=message) as caught:
        read_ucf101(root, 1)
    assert "\n" not in str(caught.value)


def test_a_damaged_hmdb51_split_file_or_a_missing_split_is_one_split_error(tmp_path):
    root = write_hmdb51(tmp_path / "hmdb51", per_class=3)
    with pytest.raises(SplitError, match="_test_split2.txt files for at least two classes"):
        read_hmdb51(root, 2)
    with pytest.raises(SplitError, match="split 4 is not one of"):
        read_hmdb51(root, 4)
    (root / "testTrainMulti_7030_splits" / "cartwheel_test_split1.txt").write_text("a.avi 7\n")
    with pytest.raises(SplitError, match=r"cartwheel_test_split1.txt:1: expected '<video>.avi <0\|1\|2>'"):
        read_hmdb51(root, 1)
    with pytest.raises(DataError, match="dataset folder not found"):
        read_hmdb51(tmp_path / "absent", 1, lists=root / "testTrainMulti_7030_splits")


def _jpeg_contract(**changes) -> ModelContract:
    fields = dict(classes=UCF_CLASSES, backbone="tiny", input_size=(32, 32), flow_method="tvl1-torch",
                  flow_source=FlowSource("tvl1", 20.0), stack_length=2, num_segments=2, stride=2)
    return ModelContract(**{**fields, **changes})


def test_jpeg_flow_values_read_back_to_pixels_with_their_own_offset():
    source = FlowSource("tvl1", 20.0)
    q = np.array([0, 127, 128, 255, flow_jpeg(4.0)], np.uint8)
    assert np.allclose(jpeg_flow_pixels(q, source), [-20.0, -0.0784, 0.0784, 20.0, 4.0], atol=1e-3)


def test_a_jpeg_clip_is_the_arrays_preprocess_makes_flow_rescaled_and_requantised(tmp_path):
    root = write_jpegs(tmp_path / "jpegs", {"ApplyEyeMakeup_g01_c01": 1}, flow_of=lambda d: (4.0, -2.0))
    contract = _jpeg_contract()
    rgb, flow = read_jpeg_clip(JpegLayout(root), "ApplyEyeMakeup_g01_c01", contract)
    assert rgb.shape == (FRAMES, 3, 32, 32) and flow.shape == (FRAMES, 2, 32, 32)
    assert rgb.dtype == flow.dtype == np.uint8
    assert (flow[0] == 128).all()  # the first frame has no predecessor
    # px at the 64x48 extraction size, scaled to 32x32 with the frames, quantised as live flow is
    x = jpeg_flow_pixels(np.uint8(flow_jpeg(4.0)), contract.flow_source) * 32 / SIZE[0]
    y = jpeg_flow_pixels(np.uint8(flow_jpeg(-2.0)), contract.flow_source) * 32 / SIZE[1]
    expected = quantise_flow(np.full((32, 32, 2), [x, y], np.float32), contract.flow_bound)
    assert np.abs(flow[1:].astype(int) - expected[None].astype(int)).max() <= 1
    # by hand: x 4 px at 64 px wide -> 2 px at 32: 128 + round(2 * 128 / 20) = 141; y (JPEG 115 =
    # -1.96 px) at 48 -> 32 px high: -1.31 px: 128 - 8 = 120
    assert tuple(flow[5, :, 16, 16]) == (141, 120)


def test_missing_jpeg_folders_are_one_error(tmp_path):
    root = write_jpegs(tmp_path / "jpegs", {"A_g01_c01": 1})
    with pytest.raises(DataError, match="no frame"):
        read_jpeg_clip(JpegLayout(root), "B_g01_c01", _jpeg_contract())
    for image in (root / "tvl1_flow" / "v" / "v_A_g01_c01").glob("*000003.jpg"):
        image.unlink()
    with pytest.raises(DataError, match="x-flow but"):
        read_jpeg_clip(JpegLayout(root), "A_g01_c01", _jpeg_contract())


def test_the_contract_ties_pre_extracted_flow_to_the_same_live_algorithm_and_bound():
    contract = _jpeg_contract()
    assert ModelContract.from_json(contract.to_json()) == contract
    older = {k: v for k, v in contract.to_dict().items() if k != "flow_source"}  # a file from before flow sources
    assert ModelContract.from_dict(older).flow_source is None
    with pytest.raises(ContractMismatch, match="pre-extracted tvl1, but flow_method 'dis-medium'"):
        _jpeg_contract(flow_method="dis-medium")
    with pytest.raises(ContractMismatch, match=r"clipped at \+-20.0 px, but flow_bound is 15.0"):
        _jpeg_contract(flow_bound=15.0)
    with pytest.raises(ContractMismatch, match="unknown flow source quantisation"):
        _jpeg_contract(flow_source=FlowSource("tvl1", 20.0, "q = f"))
    # live, the model refuses flow of another method, and another TV-L1 than its own
    with pytest.raises(ContractMismatch, match="trained on 'tvl1-torch'"):
        contract.check_runtime(flow_method="dis-fast", input_size=(32, 32), allow_mismatch=False)
    contract.check_runtime(flow_method="tvl1-torch", input_size=(32, 32), allow_mismatch=False)
    # the same weights trained on live TV-L1 are another contract
    assert dataclasses.replace(contract, flow_source=None) != contract


def test_live_a_jpeg_trained_model_runs_its_own_flow_and_refuses_another():
    from realtime.flowstage import FlowSettings  # what app.py resolves its flow with

    contract = _jpeg_contract()
    spec = FlowSettings().resolve(contract)
    assert (spec.method, spec.bound, spec.size, spec.tvl1) == ("tvl1-torch", 20.0, (32, 32), contract.tvl1)
    with pytest.raises(ContractMismatch, match="flow method 'dis-medium' but the model was trained on 'tvl1-torch'"):
        FlowSettings(method="dis-medium").resolve(contract)


def test_dataset_clips_decode_a_split_part_or_read_its_jpegs(tmp_path):
    root = write_ucf101(tmp_path / "UCF-101")
    split = read_ucf101(root, 1)
    live = dataclasses.replace(_jpeg_contract(), flow_method="dis-ultrafast", flow_source=None, tvl1=None)
    clips = dataset_clips(split, "test", live, ClipPrep.of(live))
    assert len(clips) == 2 and [c.label for c in clips.clips] == [0, 1] and clips.classes == UCF_CLASSES
    assert clips.clips[0].rgb.shape[1:] == (3, 32, 32) and clips.sources[1] == "HandStandPushups_g01_c01"
    assert len(dataset_clips(split, "train", live, ClipPrep.of(live), per_class=1)) == 2
    jpegs = write_jpegs(tmp_path / "jpegs", {s.video: DIRECTIONS[s.label] for s in split.test})
    from_jpegs = dataset_clips(split, "test", _jpeg_contract(), ClipPrep.of(live), jpegs=jpegs)
    assert len(from_jpegs) == 2 and from_jpegs.clips[1].flow.shape == (FRAMES, 2, 32, 32)
    with pytest.raises(DataError, match="was not trained on pre-extracted flow"):
        dataset_clips(split, "test", live, ClipPrep.of(live), jpegs=jpegs)
    with pytest.raises(DataError, match="read the same JPEGs"):
        dataset_clips(split, "test", _jpeg_contract(), ClipPrep.of(live))
    with pytest.raises(DataError, match="has 2 classes"):
        dataset_clips(split, "test", dataclasses.replace(live, classes=("a", "b")), ClipPrep.of(live))


def test_a_part_that_would_not_fit_in_memory_is_refused_before_decoding(tmp_path):
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101", per_class=2), 1)
    contract = _jpeg_contract()
    needed = check_memory(list(split.train), contract, None, budget=2**30)
    assert needed == len(split.train) * FRAMES * 5 * 32 * 32  # uint8 rgb (3) and flow (2) planes a frame
    jpegs = write_jpegs(tmp_path / "jpegs", {s.video: 1 for s in split.train})
    assert check_memory(list(split.train), contract, JpegLayout(jpegs), budget=2**30) == needed
    with pytest.raises(DataError, match=r"2 videos would hold 0.0 GiB .* limit them with --videos-per-class N"):
        check_memory(list(split.train), contract, None, budget=needed - 1)


def test_with_pre_extracted_jpegs_only_the_split_lists_need_be_there(tmp_path):
    root = write_ucf101(tmp_path / "UCF-101")
    split = read_ucf101(root, 1)
    jpegs = write_jpegs(tmp_path / "jpegs", {s.video: DIRECTIONS[s.label] for s in split.test})
    for video in root.glob("*/*.avi"):
        video.unlink()
    with pytest.raises(SplitError, match="is not under"):
        read_ucf101(root, 1)
    source = DatasetSource("ucf101", root, jpegs=jpegs)
    assert source.split(1).test == split.test  # the same ids, labels and (absent) paths
    clips = source.clips(1, "test", _jpeg_contract(), ClipPrep.of(_jpeg_contract()))
    assert [c.label for c in clips.clips] == [0, 1]
    assert "frames and TV-L1 flow JPEGs from" in source.describe(1, "test")
    for image in (jpegs / "tvl1_flow" / "u" / f"v_{split.test[1].video}").iterdir():
        image.unlink()
    with pytest.raises(DataError, match=rf"no frame\*\.jpg in .*u/v_{split.test[1].video}"):  # from a worker, as it was
        source.clips(1, "test", _jpeg_contract(), ClipPrep.of(_jpeg_contract()))
