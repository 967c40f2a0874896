"""The fused model: shapes, the paper's initialisations, and split == full forward."""

import pytest
import torch

from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.model import TwoStreamNet, _gaussian_3d

FUSIONS = ["sum", "max", "concat", "conv", "bilinear", "late", "late-svm"]


def _model(fusion: str, **kw) -> TwoStreamNet:
    torch.manual_seed(0)
    contract = ModelContract(classes=GESTURE_CLASSES, fusion=fusion, input_size=(64, 64), stack_length=3,
                             num_segments=3, **kw)
    return TwoStreamNet(contract).eval()


def _window(model: TwoStreamNet, batch: int = 2):
    c = model.contract
    g = torch.Generator().manual_seed(1)
    rgb = torch.rand(batch, c.num_segments, 3, *c.input_size, generator=g) * 255
    flow = torch.rand(batch, c.num_segments, c.flow_channels, *c.input_size, generator=g) * 255
    return rgb, flow


@pytest.mark.parametrize("fusion", FUSIONS)
def test_parts_compose_to_the_full_forward_pass(fusion):
    """What the streaming runtime does: each frame through its tower alone (batch 1, in any
    order), features cached, the head run on the gathered window."""
    model = _model(fusion)
    # Perturb the identity-like init so the check is not trivially symmetric.
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(0.01 * torch.randn_like(p))
    rgb, flow = _window(model)
    with torch.no_grad():
        full = model(rgb, flow)
        frames = rgb.shape[1]
        s = torch.stack([torch.cat([model.spatial(rgb[n, i:i + 1]) for i in range(frames)]) for n in range(2)])
        t = torch.stack([torch.cat([model.temporal(flow[n, i:i + 1]) for i in range(frames)]) for n in range(2)])
        split = model.head(s, t)
    assert full.shape == (2, len(GESTURE_CLASSES))
    torch.testing.assert_close(split, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_feature_shapes_and_logits_are_finite(fusion):
    model = _model(fusion)
    rgb, flow = _window(model)
    with torch.no_grad():
        s, t = model.features(rgb, flow)
        logits = model.head(s, t)
    assert s.shape == t.shape == (2, 3, model.feature_channels, 4, 4)
    assert torch.isfinite(logits).all()


def test_late_fusion_is_the_mean_of_the_tower_classifiers():
    model = _model("late")
    rgb, flow = _window(model)
    with torch.no_grad():
        s, t = model.features(rgb, flow)
        spatial, temporal = model.head.tower_logits(s, t)
        torch.testing.assert_close(model.head(s, t), (spatial + temporal) / 2)


def test_concat_3d_conv_starts_as_weighted_sum_of_towers():
    """Paper init: [0.25 I ; 0.75 I] times a normalised 3D Gaussian."""
    model = _model("concat")
    w = model.head.conv3d.weight  # (C, 2C, 3, 3, 3)
    c = model.feature_channels
    g = _gaussian_3d()
    torch.testing.assert_close(w[5, 5], 0.25 * g)
    torch.testing.assert_close(w[5, c + 5], 0.75 * g)
    assert w[5, 6].abs().sum() == 0 and w[5, c + 6].abs().sum() == 0
    assert abs(float(g.sum()) - 1.0) < 1e-6


def test_conv_fusion_starts_as_mean_of_towers():
    model = _model("conv")
    s = torch.rand(2, model.feature_channels, 4, 4)
    t = torch.rand(2, model.feature_channels, 4, 4)
    torch.testing.assert_close(model.head.fuse(s, t), (s + t) / 2)


@pytest.mark.parametrize("backbone,channels", [("resnet18", 512), ("vgg16", 512), ("resnet50", 2048)])
def test_torchvision_backbones_build_with_flow_input(backbone, channels):
    contract = ModelContract(classes=("a", "b"), backbone=backbone, input_size=(64, 64), stack_length=2,
                             num_segments=2)
    model = TwoStreamNet(contract).eval()
    with torch.no_grad():
        t = model.temporal(torch.zeros(1, 4, 64, 64))
    assert t.shape[1] == channels == model.feature_channels


def test_cross_modality_init_averages_rgb_filters():
    from torch import nn

    from twostream.backbones import _first_conv_with_channels

    rgb = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
    flow = _first_conv_with_channels(rgb, 20, pretrained=True)
    expected = rgb.weight.mean(dim=1, keepdim=True).expand(-1, 20, -1, -1)
    torch.testing.assert_close(flow.weight, expected)


def test_flow_stack_order_and_scaling_happen_in_the_graph():
    """"oldest-last" + "unit" (imported reference weights): the temporal trunk gets fields 1..L-1
    then field 0, as q / 256; the default: oldest first, (q - 128) / (128 / bound)."""
    contract = ModelContract(classes=GESTURE_CLASSES, input_size=(64, 64), stack_length=3,
                             flow_stack_order="oldest-last", flow_scaling="unit")
    model = TwoStreamNet(contract).eval()
    model.temporal_tower.trunk = torch.nn.Identity()
    flow = torch.rand(2, 6, 64, 64) * 255
    torch.testing.assert_close(model.temporal(flow), flow[:, [2, 3, 4, 5, 0, 1]] / 256)
    default = TwoStreamNet(ModelContract(classes=GESTURE_CLASSES, input_size=(64, 64), stack_length=3)).eval()
    default.temporal_tower.trunk = torch.nn.Identity()
    torch.testing.assert_close(default.temporal(flow), (flow - 128) / (128 / default.contract.flow_bound))
    assert "temporal_tower.order" not in model.state_dict()  # the contract says it; old files still load
