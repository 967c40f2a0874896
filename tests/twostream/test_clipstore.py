"""The clip store: an official split larger than memory, kept on disk once preprocessed and read
memory-mapped (twostream/clipstore.py); and the head stage's feature memory check."""

import dataclasses
import logging
import os
from collections import namedtuple

import numpy as np
import pytest
import torch

import train
from tests.twostream.dataset_layouts import DIRECTIONS, FRAMES, UCF_CLASSES, write_jpegs, write_ucf101
from twostream import clipstore, datasets
from twostream.checkpoint import read_checkpoint
from twostream.clipstore import ClipStore
from twostream.contract import FlowSource, ModelContract
from twostream.data import ClipPrep
from twostream.datasets import dataset_clips, read_ucf101
from twostream.errors import DataError
from twostream.model import TwoStreamNet
from trainer.common import head_features_fit
from twostream.training import Progress, TrainSettings, clip_features, train_head

LIVE = ModelContract(classes=UCF_CLASSES, backbone="tiny", fusion="late",
                     input_size=(32, 32), flow_method="dis-ultrafast", stack_length=2, num_segments=2, stride=1)


def _no_reading(*args, **kwargs):
    raise AssertionError("a stored clip was decoded again")


def test_stored_clips_are_the_decoded_arrays_memory_mapped_and_never_decoded_again(tmp_path, monkeypatch):
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101"), 1)
    in_memory = dataset_clips(split, "train", LIVE, ClipPrep.of(LIVE))
    stored = dataset_clips(split, "train", LIVE, ClipPrep.of(LIVE, cache=tmp_path / "cache"))
    assert [c.label for c in stored.clips] == [c.label for c in in_memory.clips] and stored.sources == in_memory.sources
    for mapped, decoded in zip(stored.clips, in_memory.clips):
        assert isinstance(mapped.rgb, np.memmap) and isinstance(mapped.flow, np.memmap)
        np.testing.assert_array_equal(mapped.rgb, decoded.rgb)
        np.testing.assert_array_equal(mapped.flow, decoded.flow)
    entries = sorted((tmp_path / "cache" / "videos").glob("*/*.npy"))
    assert len(entries) == 2 * len(in_memory)  # rgb and flow per video; no second copy in the flow cache
    assert not list((tmp_path / "cache").glob("??/*.npz"))
    monkeypatch.setattr(datasets, "read_files", _no_reading)
    again = dataset_clips(split, "train", LIVE, ClipPrep.of(LIVE, cache=tmp_path / "cache"))
    np.testing.assert_array_equal(again.clips[-1].flow, in_memory.clips[-1].flow)


def test_a_changed_video_or_flow_setting_is_another_entry_and_a_damaged_one_is_rebuilt(tmp_path, caplog):
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101", per_class=2), 1)
    prep = ClipPrep.of(LIVE, cache=tmp_path / "cache")
    dataset_clips(split, "train", LIVE, prep)
    store = ClipStore(tmp_path / "cache" / "videos")
    video = split.train[0].path
    key = store.key(clipstore.video_origin(video), prep.spec)
    assert store.has(key)
    other = dataclasses.replace(LIVE, flow_compensation="mean")
    assert store.key(clipstore.video_origin(video), ClipPrep.of(other).spec) != key
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert store.key(clipstore.video_origin(video), prep.spec) != key
    rgb_path = store.paths(key)[0]
    rgb_path.write_bytes(b"not a numpy file")
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with caplog.at_level(logging.WARNING):
        clips = dataset_clips(split, "train", LIVE, prep)
    assert "is unreadable" in caplog.text and "rebuilding it" in caplog.text
    assert isinstance(clips.clips[0].rgb, np.memmap) and clips.clips[0].rgb.shape == (FRAMES, 3, 32, 32)


def test_pre_extracted_jpegs_are_stored_too(tmp_path, monkeypatch):
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101", per_class=2), 1)
    jpegs = write_jpegs(tmp_path / "jpegs", {s.video: DIRECTIONS[s.label] for s in split.train})
    contract = dataclasses.replace(LIVE, flow_method="tvl1-torch", flow_source=FlowSource("tvl1", 20.0))
    prep = ClipPrep.of(contract, cache=tmp_path / "cache")
    in_memory = dataset_clips(split, "train", contract, ClipPrep.of(contract), jpegs=jpegs)
    stored = dataset_clips(split, "train", contract, prep, jpegs=jpegs)
    np.testing.assert_array_equal(stored.clips[1].flow, in_memory.clips[1].flow)
    monkeypatch.setattr(datasets, "clips_in_workers", _no_reading)
    assert isinstance(dataset_clips(split, "train", contract, prep, jpegs=jpegs).clips[0].rgb, np.memmap)


def test_a_store_on_a_disk_too_small_is_one_error_before_decoding(tmp_path, monkeypatch):
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101", per_class=2), 1)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(clipstore.shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    monkeypatch.setattr(datasets, "read_files", _no_reading)
    with pytest.raises(DataError, match=r"clip store .*videos: \d+ new frames need 0.0 GiB at 32x32, but only 0.0 GiB "
                                        r"is free there"):
        dataset_clips(split, "train", LIVE, ClipPrep.of(LIVE, cache=tmp_path / "cache"))


def test_the_head_stage_caches_features_only_when_they_fit_in_memory(tmp_path):
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101", per_class=2), 1)
    clips = dataset_clips(split, "train", LIVE, ClipPrep.of(LIVE))
    model = TwoStreamNet(LIVE).train()
    needed = len(clips) * FRAMES * 2 * 96 * 2 * 2 * 4  # tiny: 96 x 2 x 2 maps at 32x32, both towers, fp32
    assert head_features_fit(model, clips, "cpu", budget=needed)
    assert not head_features_fit(model, clips, "cpu", budget=needed - 1)
    assert model.training  # measured in eval mode, left as it was


@pytest.mark.parametrize("fusion", ["conv", "late-svm"])
def test_a_head_trained_on_window_frames_is_the_head_trained_on_cached_features(tmp_path, fusion):
    """When the features would not fit in memory the towers run per batch: the same features, so
    the same head (to float rounding of other batch sizes)."""
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101", per_class=3), 1)
    contract = dataclasses.replace(LIVE, fusion=fusion)
    clips = dataset_clips(split, "train", contract, ClipPrep.of(contract))
    heads = []
    for source in ("cached", "streamed"):
        torch.manual_seed(0)
        model = TwoStreamNet(contract)
        for p in list(model.spatial_tower.parameters()) + list(model.temporal_tower.parameters()):
            p.requires_grad_(False)
        feats = clip_features(model, clips) if source == "cached" else clips
        train_head(model, feats, TrainSettings(head_epochs=2, head_batch=4, samples_per_clip=2), Progress("head"),
                   lambda progress, figures: None)
        heads.append(model.head.state_dict())
    for name, cached in heads[0].items():
        torch.testing.assert_close(heads[1][name], cached, rtol=1e-4, atol=1e-5, msg=name)
    if fusion == "conv":  # and it did learn: the fused classifier moved from its initial weights
        torch.manual_seed(0)
        untrained = TwoStreamNet(contract).head.state_dict()
        assert not torch.allclose(heads[1]["fused_fc.weight"], untrained["fused_fc.weight"])


def test_fit_on_a_stored_split_and_plain_late_fusion_skips_the_head_features(tmp_path, monkeypatch, capsys):
    root = write_ucf101(tmp_path / "UCF-101", per_class=3)
    from trainer import fit as train_fit

    def no_features(*args, **kwargs):
        raise AssertionError("plain late fusion computed head features")

    monkeypatch.setattr(train_fit, "clip_features", no_features)
    argv = ["fit", "--out", str(tmp_path / "m.pt"), "--dataset", "ucf101", "--root", str(root), "--split", "1",
            "--flow-cache", str(tmp_path / "cache"), "--backbone", "tiny", "--fusion", "late", "--input-size", "32",
            "--flow", "dis-ultrafast", "--stack-length", "2", "--segments", "2", "--stride", "1",
            "--tower-epochs", "1", "--head-epochs", "1", "--batch", "4", "--samples-per-clip", "2", "--no-real",
            "--workers", "1", "--per-clip", "1"]
    assert train.main(argv) == 0
    assert '"top1_fused"' in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "videos").glob("*/*.rgb.npy"))) == 6  # 4 train + 2 test videos, once each


def test_bidirectional_fields_are_stored_with_their_four_channels(tmp_path):
    split = read_ucf101(write_ucf101(tmp_path / "UCF-101", per_class=2), 1)
    both = dataclasses.replace(LIVE, flow_direction="bidirectional")
    in_memory = dataset_clips(split, "train", both, ClipPrep.of(both))
    stored = dataset_clips(split, "train", both, ClipPrep.of(both, cache=tmp_path / "cache"))
    assert stored.clips[0].flow.shape == (FRAMES, 4, 32, 32)
    np.testing.assert_array_equal(stored.clips[1].flow, in_memory.clips[1].flow)
    forward = dataset_clips(split, "train", LIVE, ClipPrep.of(LIVE, cache=tmp_path / "cache"))  # another entry
    assert forward.clips[0].flow.shape == (FRAMES, 2, 32, 32)


def test_fit_streams_the_head_windows_when_their_features_would_not_fit(tmp_path, monkeypatch, capsys):
    root = write_ucf101(tmp_path / "UCF-101", per_class=3)
    from trainer import fit as train_fit

    def no_features(*args, **kwargs):
        raise AssertionError("the head cached features that would not fit")

    monkeypatch.setattr(train_fit, "head_features_fit", lambda model, clips, device: False)
    monkeypatch.setattr(train_fit, "clip_features", no_features)
    argv = ["fit", "--out", str(tmp_path / "m.pt"), "--dataset", "ucf101", "--root", str(root), "--split", "1",
            "--backbone", "tiny", "--fusion", "conv", "--input-size", "32", "--flow", "dis-ultrafast",
            "--stack-length", "2", "--segments", "2", "--stride", "1", "--tower-epochs", "1", "--head-epochs", "1",
            "--batch", "4", "--samples-per-clip", "2", "--no-real", "--workers", "1", "--per-clip", "1"]
    assert train.main(argv) == 0
    assert '"top1_fused"' in capsys.readouterr().out
    history = read_checkpoint(tmp_path / "m.pt").metrics["history"]
    assert [h["stage"] for h in history] == ["towers", "head"] and "head_train_acc" in history[1]
