"""Tower backbones cut at their last conv layer (where the paper fuses).

Each builder returns a module mapping (N, in_channels, H, W) -> (N, C, H/s, W/s) and the
channel count C. torchvision definitions are used for resnet18/50/101 (s = 32) and vgg16
(relu5_3, s = 16); ``tiny`` is this project's CPU real-time backbone (s = 16, C = 96).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock

from twostream.errors import CheckpointError

TINY_WIDTHS = (32, 48, 64, 96)


def _tiny(in_channels: int) -> nn.Sequential:
    """Stem conv (stride 2) then three residual stages of one BasicBlock each, stride 2.

    Plain 3x3 convolutions, no depthwise: on oneDNN/OpenVINO CPUs dense 3x3 convs are
    compute-bound and fast, depthwise ones memory-bound. 112x112 in -> 96 x 7 x 7 out.
    """
    w0, *rest = TINY_WIDTHS
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, w0, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(w0),
        nn.ReLU(inplace=True),
    ]
    width = w0
    for out in rest:
        down = nn.Sequential(nn.Conv2d(width, out, 1, stride=2, bias=False), nn.BatchNorm2d(out))
        layers.append(BasicBlock(width, out, stride=2, downsample=down))
        width = out
    return nn.Sequential(*layers)


def _first_conv_with_channels(conv: nn.Conv2d, in_channels: int, pretrained: bool) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels``; with RGB weights, the paper's cross-modality
    init: average the filters over their 3 input channels and replicate to every flow channel."""
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    bias=conv.bias is not None)
    if pretrained:
        with torch.no_grad():
            mean = conv.weight.mean(dim=1, keepdim=True)  # (out, 1, kh, kw)
            new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    return new


def _imagenet(name: str) -> models.WeightsEnum:
    """torchvision's default ImageNet weights of backbone ``name`` (their URL and file name)."""
    return {"resnet18": models.ResNet18_Weights, "resnet50": models.ResNet50_Weights,
            "resnet101": models.ResNet101_Weights, "vgg16": models.VGG16_Weights}[name].DEFAULT


def imagenet_weights_file(name: str) -> Path:
    """Where torch's hub cache keeps torchvision's default ImageNet weights of backbone ``name``:
    torch.hub.get_dir()/checkpoints/<the file name of the weights' URL> (TORCH_HOME moves it)."""
    weights = _imagenet(name)
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def _load_imagenet(net: nn.Module, name: str) -> None:
    """torchvision's ImageNet weights of ``name`` into ``net``, from torch's cache only: this code
    never downloads (a training run must not depend on a network, and tests must not fetch
    hundreds of MB). Absent: CheckpointError naming the file, its URL and where to put it."""
    weights = _imagenet(name)
    path = imagenet_weights_file(name)
    if not path.is_file():
        raise CheckpointError(f"--pretrained: {name}'s ImageNet weights are not in torch's cache; download "
                              f"{weights.url} and put it at {path} (this code never downloads)")
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a truncated download, another net's file: one line, not a traceback
        raise CheckpointError(f"--pretrained: {path} is not {name}'s torchvision weights ({exc})") from exc


def build_backbone(name: str, in_channels: int, pretrained: bool = False) -> tuple[nn.Module, int]:
    """Build a tower trunk. ``pretrained`` loads torchvision's ImageNet weights from torch's hub
    cache (never downloaded: imagenet_weights_file says where they go) and applies
    cross-modality init when ``in_channels`` != 3."""
    if name == "tiny":
        if pretrained:
            raise ValueError("the tiny backbone has no ImageNet weights; train it from scratch")
        return _tiny(in_channels), TINY_WIDTHS[-1]
    if name in ("resnet18", "resnet50", "resnet101"):
        net = getattr(models, name)(weights=None)
        if pretrained:
            _load_imagenet(net, name)
        if in_channels != 3:
            net.conv1 = _first_conv_with_channels(net.conv1, in_channels, pretrained)
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                              net.layer1, net.layer2, net.layer3, net.layer4)
        return trunk, net.fc.in_features
    if name == "vgg16":
        net = models.vgg16(weights=None)
        if pretrained:
            _load_imagenet(net, name)
        layers = list(net.features.children())[:-1]  # drop pool5: fuse at relu5_3
        if in_channels != 3:
            layers[0] = _first_conv_with_channels(layers[0], in_channels, pretrained)
        return nn.Sequential(*layers), 512
    raise ValueError(f"unknown backbone {name!r}")
