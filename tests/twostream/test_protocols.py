"""Evaluation protocols (19 frames, 25 frames, 20 clips + mirrors) and the dataset commands:
train.py fit/evaluate --dataset ucf101|hmdb51 --root DIR --split N, from videos or JPEGs."""

import json

import numpy as np
import pytest
import torch

import train
from tests.twostream.dataset_layouts import DIRECTIONS, UCF_CLASSES, write_hmdb51, write_jpegs, write_ucf101
from twostream.checkpoint import read_checkpoint
from twostream.contract import FlowSource, ModelContract
from twostream.data import Clip, ClipSet
from twostream.datasets import read_ucf101
from twostream.errors import DataError
from twostream.model import TwoStreamNet
from twostream.protocols import (PROTOCOLS, Protocol, SplitResult, VideoScores, mirror, protocol_named, score_videos,
                                 splits_report, splits_table, uniform_frames)

TINY = ["--input-size", "32", "--stack-length", "2", "--segments", "2", "--stride", "2", "--batch", "4",
        "--samples-per-clip", "2", "--per-clip", "2", "--workers", "1", "--no-real", "--tower-epochs", "1",
        "--head-epochs", "1", "--flow", "dis-ultrafast"]


def _model(fusion="conv") -> TwoStreamNet:
    torch.manual_seed(0)
    contract = ModelContract(classes=("a", "b", "c"), backbone="tiny", fusion=fusion, input_size=(32, 32),
                             stack_length=2, num_segments=2, stride=2)
    return TwoStreamNet(contract).eval()


def _clips(count=2, frames=12) -> ClipSet:
    rng = np.random.default_rng(0)
    return ClipSet(tuple(Clip(rng.integers(0, 256, (frames, 3, 32, 32), dtype=np.uint8),
                              rng.integers(100, 156, (frames, 2, 32, 32), dtype=np.uint8), i % 3)
                         for i in range(count)), ("a", "b", "c"))


def test_uniform_frames_span_the_frames_with_full_stacks():
    assert uniform_frames(40, 19, 10).tolist()[0] == 10 and uniform_frames(40, 19, 10)[-1] == 39
    assert len(uniform_frames(12, 25, 2)) == 25  # a short video repeats frames: the average stays fair
    with pytest.raises(DataError, match="no frame with a full 10-field flow stack"):
        uniform_frames(10, 19, 10)


def test_mirror_reverses_columns_and_negates_x_motion():
    clip = _clips(1).clips[0]
    flipped = mirror(clip)
    assert np.array_equal(flipped.rgb, clip.rgb[..., ::-1])
    assert np.array_equal(flipped.flow[:, 1], clip.flow[:, 1, :, ::-1])  # y motion keeps its sign
    assert np.array_equal(flipped.flow[:, 0].astype(int), 256 - clip.flow[:, 0, :, ::-1].astype(int))
    assert np.array_equal(mirror(flipped).rgb, clip.rgb) and np.array_equal(mirror(flipped).flow, clip.flow)


@pytest.mark.parametrize("name", [p.name for p in PROTOCOLS])
def test_each_protocol_scores_every_video_with_distributions(name):
    model, clips = _model(), _clips()
    scores = score_videos(model, clips, protocol_named(name))
    for tower in (scores.spatial, scores.temporal, scores.fused):
        assert tower.shape == (2, 3) and np.allclose(tower.sum(1), 1, atol=1e-5)
    assert scores.labels.tolist() == [0, 1]


def test_frame_protocols_fuse_by_averaging_the_towers_and_match_a_direct_computation():
    model, clips = _model(), _clips(1)
    scores = score_videos(model, clips, protocol_named("frames19"))
    assert np.allclose(scores.fused, (scores.spatial + scores.temporal) / 2)
    clip = clips.clips[0]
    frames = uniform_frames(len(clip.rgb), 19, 2)
    with torch.inference_mode():
        rgb = torch.from_numpy(clip.rgb[frames].astype(np.float32))
        direct = torch.softmax(model.head.spatial_fc(model.spatial(rgb).mean(dim=(2, 3))), 1).mean(0)
    assert np.allclose(scores.spatial[0], direct.numpy(), atol=1e-5)


def test_the_clip_protocol_averages_the_clip_and_its_mirror():
    model, clips = _model(), _clips(1)
    both = score_videos(model, clips, protocol_named("clips20-flip")).fused
    plain = Protocol("clips20", 20, True, False, "the same without mirrors")
    one = score_videos(model, clips, plain).fused
    mirrored = score_videos(model, ClipSet((mirror(clips.clips[0]),), clips.classes), plain).fused
    assert np.allclose(both, (one + mirrored) / 2, atol=1e-5)


def test_reports_give_each_split_and_the_mean_as_json_and_a_table():
    scores = VideoScores(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32)[::-1], np.eye(2, dtype=np.float32),
                         np.array([0, 1]))
    protocol = protocol_named("frames25")
    results = [SplitResult.of("ucf101", 1, protocol, scores),
               SplitResult("ucf101", 2, "frames25", 2, 0.5, 0.5, 0.0)]
    data = splits_report(results)
    assert data["splits"][0] == {"split": 1, "videos": 2, "top1_spatial": 1.0, "top1_temporal": 0.0, "top1_fused": 1.0}
    assert data["mean"] == {"top1_spatial": 0.75, "top1_temporal": 0.25, "top1_fused": 0.5}
    text = splits_table(results)
    assert "| 1 | 2 | 100.0 % | 0.0 % | 100.0 % |" in text and "| mean | 4 | 75.0 % | 25.0 % | 50.0 % |" in text
    with pytest.raises(DataError, match="no split"):
        splits_report([])


def _fit(tmp_path, capsys, *extra) -> tuple:
    out = tmp_path / "m.pt"
    assert train.main(["fit", "--out", str(out), *TINY, *extra]) == 0
    return out, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_fit_and_evaluate_an_official_ucf101_split_under_each_protocol(tmp_path, capsys):
    root = write_ucf101(tmp_path / "UCF-101")
    out, held_out = _fit(tmp_path, capsys, "--dataset", "ucf101", "--root", str(root), "--split", "1")
    assert read_checkpoint(out).contract.classes == UCF_CLASSES
    assert held_out["clips"] == 2 and "ucf101 split 1 test list" in held_out["held_out"]
    assert "ucf101 split 1 train list" in read_checkpoint(out).metrics["recipe"]["data"]
    for protocol in PROTOCOLS:
        assert train.main(["evaluate", "--model", str(out), "--dataset", "ucf101", "--root", str(root),
                           "--split", "1", "--protocol", protocol.name]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["protocol"] == protocol.name and data["splits"][0]["videos"] == 2
        assert set(data["mean"]) == {"top1_spatial", "top1_temporal", "top1_fused"}
    assert train.main(["evaluate", "--model", str(out), str(out), "--dataset", "ucf101", "--root", str(root),
                       "--split", "1", "1", "--protocol", "frames19", "--table"]) == 0
    assert "| mean | 4 |" in capsys.readouterr().out
    assert train.main(["evaluate", "--model", str(out), "--dataset", "ucf101", "--root", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["clips"] == 2  # the windows report, on the test list


def test_fit_on_hmdb51_and_on_pre_extracted_jpegs(tmp_path, capsys):
    root = write_hmdb51(tmp_path / "hmdb51")
    out, held_out = _fit(tmp_path, capsys, "--dataset", "hmdb51", "--root", str(root), "--split", "1")
    assert held_out["clips"] == 2 and held_out["classes"] == ["brush_hair", "cartwheel"]
    ucf = write_ucf101(tmp_path / "UCF-101")
    split = read_ucf101(ucf, 1)
    jpegs = write_jpegs(tmp_path / "jpegs", {s.video: DIRECTIONS[s.label] for s in split.train + split.test})
    args = ["--dataset", "ucf101", "--root", str(ucf), "--split", "1", "--jpegs", str(jpegs)]
    out, held_out = _fit(tmp_path, capsys, *args, "--flow", "tvl1-torch")
    assert read_checkpoint(out).contract.flow_source == FlowSource("tvl1", 20.0)
    assert "TV-L1 flow JPEGs" in held_out["held_out"]
    assert train.main(["card", "--model", str(out)]) == 0
    assert "trained on pre-extracted `tvl1` flow JPEGs (±20 px" in out.with_suffix(".md").read_text()
    capsys.readouterr()
    assert train.main(["evaluate", "--model", str(out), *args, "--protocol", "frames19"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"][0]["videos"] == 2


@pytest.mark.parametrize("argv, message", [
    (["fit", "--out", "{tmp}/m.pt", "--dataset", "ucf101"], "--dataset and --root go together"),
    (["fit", "--out", "{tmp}/m.pt", "--dataset", "ucf101", "--root", "{tmp}/absent"], "ucf101 folder not found"),
    (["fit", "--out", "{tmp}/m.pt", "--jpegs", "{tmp}"], "--jpegs belongs to an official split of a dataset"),
    (["fit", "--out", "{tmp}/m.pt", "--dataset", "ucf101", "--root", "{tmp}/UCF-101", "--jpegs", "{tmp}"],
     "training flow was pre-extracted tvl1, but flow_method 'dis-ultrafast'"),
    (["evaluate", "--model", "{tmp}/a.pt", "{tmp}/b.pt", "--dataset", "ucf101", "--root", "{tmp}/UCF-101",
      "--split", "1", "--protocol", "frames25"], "2 models for 1 splits"),
    (["evaluate", "--model", "{tmp}/a.pt", "--protocol", "frames25"], "scores the test videos of an official split"),
    (["evaluate", "--model", "{tmp}/a.pt", "--split", "2"], "--split belongs to an official split of a dataset"),
    (["fit", "--out", "{tmp}/m.pt", "--videos-per-class", "2"], "--videos-per-class belongs to an official split"),
    (["evaluate", "--model", "{tmp}/a.pt", "--dataset", "ucf101", "--root", "{tmp}/UCF-101", "--split", "1",
      "--protocol", "frames19", "--record"], "--record stores the windows report of one model"),
])
def test_bad_dataset_arguments_are_one_error_line(tmp_path, capsys, argv, message):
    write_ucf101(tmp_path / "UCF-101", per_class=2)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert train.main(argv + (TINY if argv[0] == "fit" else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
