"""What the presets need beyond existing options: TSN-style spatial training (--spatial-segments),
the contract's own temporal backbone (older files load), and --pretrained from torch's hub cache
only: never a download, one error naming the file and where it goes when it is absent."""

import dataclasses

import numpy as np
import pytest
import torch

import train
from twostream.backbones import build_backbone, imagenet_weights_file
from twostream.batches import TowerSamples, segment_frames, tower_plan
from twostream.contract import ModelContract
from twostream.data import Clip, ClipSet
from twostream.errors import CheckpointError, ContractMismatch

CONTRACT = ModelContract(classes=("a", "b"), input_size=(32, 32), stack_length=2)


def test_one_spatial_segment_draws_exactly_the_plan_of_before():
    lengths = [14, 20, 9]
    plan = tower_plan(lengths, CONTRACT, np.random.default_rng(5), 4, 3)
    rng = np.random.default_rng(5)  # the plan as it was always drawn: a clip, then a frame in L..F-1
    before = []
    for _ in range(3):
        picks = rng.integers(len(lengths), size=4)
        before.append([(int(ci), int(rng.integers(2, lengths[ci]))) for ci in picks])
    assert plan == before


def test_spatial_segments_take_one_frame_in_each_equal_segment():
    rng = np.random.default_rng(0)
    for _ in range(50):
        frames = segment_frames(rng, 2, 14, 3)  # segments [2, 6), [6, 10), [10, 14)
        assert [2 <= frames[0] < 6, 6 <= frames[1] < 10, 10 <= frames[2] < 14] == [True] * 3
    assert segment_frames(rng, 2, 4, 3) == (2, 2, 3)  # a segment shorter than a frame: its first
    rows = tower_plan([14, 14], CONTRACT, np.random.default_rng(1), 4, 2, spatial_segments=3)
    assert all(len(row) == 3 and len(row[2]) == 3 and 2 <= row[1] < 14 for batch in rows for row in batch)
    rng = np.random.default_rng(0)
    clip = Clip(rng.integers(0, 256, (14, 3, 32, 32), dtype=np.uint8), rng.integers(0, 256, (14, 2, 32, 32),
                                                                                     dtype=np.uint8), 1)
    samples = TowerSamples(ClipSet((clip,), ("a", "b")), CONTRACT)
    rgb, flow, label = samples[(0, 5, (3, 7, 12))]
    np.testing.assert_array_equal(rgb, clip.rgb[[3, 7, 12]])
    np.testing.assert_array_equal(flow, samples[(0, 5)][1])  # the flow stack still ends at the frame
    assert rgb.shape == (3, 3, 32, 32) and label == 1


def test_the_temporal_backbone_is_compared_and_older_files_load():
    own = dataclasses.replace(CONTRACT, backbone="resnet18", temporal_backbone="tiny", fusion="late")
    assert own != dataclasses.replace(own, temporal_backbone=None)
    older = CONTRACT.to_dict()
    del older["temporal_backbone"]
    assert ModelContract.from_dict(older) == CONTRACT and CONTRACT.temporal_trunk == "tiny"
    with pytest.raises(ContractMismatch, match="a temporal backbone of its own \\(tiny\\) needs a late fusion"):
        dataclasses.replace(own, fusion="conv")
    with pytest.raises(ContractMismatch, match="temporal_backbone 'nope' is not one of"):
        dataclasses.replace(own, temporal_backbone="nope")


def test_pretrained_weights_absent_from_the_cache_are_one_error_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    where = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_weights_file("resnet18") == where
    with pytest.raises(CheckpointError, match="resnet18-f37072fd.pth and put it at " + str(where)):
        build_backbone("resnet18", 3, pretrained=True)
    assert train.main(["fit", "--out", str(tmp_path / "m.pt"), "--backbone", "resnet18", "--pretrained",
                       "--no-real", "--clips-per-class", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: --pretrained: resnet18's ImageNet weights are not in torch's cache; download "
                       f"https://download.pytorch.org/models/resnet18-f37072fd.pth and put it at {where} "
                       "(this code never downloads)")
    assert not where.exists()


def test_pretrained_weights_in_the_cache_load_with_cross_modality_init(tmp_path, monkeypatch):
    from torchvision import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    weights = models.resnet18().state_dict()  # stands in for the ImageNet file: same keys, known values
    imagenet_weights_file("resnet18").parent.mkdir(parents=True)
    torch.save(weights, imagenet_weights_file("resnet18"))
    rgb, _ = build_backbone("resnet18", 3, pretrained=True)
    torch.testing.assert_close(rgb[0].weight, weights["conv1.weight"])
    torch.testing.assert_close(rgb[7][1].conv2.weight, weights["layer4.1.conv2.weight"])
    flow, _ = build_backbone("resnet18", 20, pretrained=True)
    torch.testing.assert_close(flow[0].weight, weights["conv1.weight"].mean(dim=1, keepdim=True).expand(-1, 20, -1, -1))
    torch.save({"fc.weight": torch.zeros(1)}, imagenet_weights_file("resnet18"))  # another file under its name
    with pytest.raises(CheckpointError, match="is not resnet18's torchvision weights"):
        build_backbone("resnet18", 3, pretrained=True)


def test_spatial_segments_average_the_frames_logits_before_the_loss():
    from twostream.model import TwoStreamNet
    from twostream.training import TowerClassifiers

    torch.manual_seed(0)
    model = TwoStreamNet(dataclasses.replace(CONTRACT, input_size=(32, 32))).eval()
    net = TowerClassifiers(model)
    rgb, flow = torch.rand(2, 3, 3, 32, 32) * 255, torch.rand(2, 4, 32, 32) * 255
    with torch.no_grad():
        spatial, temporal, _ = net(rgb, flow)
        frames = [net(rgb[:, k], flow)[0] for k in range(3)]  # one frame each: as before
    torch.testing.assert_close(spatial, torch.stack(frames).mean(0))
    torch.testing.assert_close(temporal, net(rgb[:, 0], flow)[1])
    assert spatial.shape == (2, 2)


def test_balanced_classes_weigh_every_class_alike():
    from twostream.training import TrainSettings, _loss, class_weights

    labels = [0] * 6 + [1] * 2 + [2] * 1  # a large no_gesture, two small gestures, one class absent
    weights = class_weights(labels, 4)
    counts = np.bincount(labels, minlength=4)
    totals = weights.numpy()[:3] * counts[:3]
    assert np.allclose(totals, totals[0]) and np.isclose(totals.sum(), len(labels))
    assert weights[3] == 1  # absent: never in a batch, any weight will do
    logits, target = torch.randn(9, 4), torch.tensor(labels)
    plain = _loss(TrainSettings(), labels, 4)(logits, target)
    balanced = _loss(TrainSettings(balance_classes=True), labels, 4)(logits, target)
    assert plain.item() == pytest.approx(torch.nn.CrossEntropyLoss(label_smoothing=0.05)(logits, target).item())
    assert balanced.item() != pytest.approx(plain.item())
