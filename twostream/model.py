"""The fused two-stream network, split into the three parts the streaming runtime runs alone.

    spatial tower   rgb  (N, 3, H, W)   float 0..255       -> features (N, C, h, w)
    temporal tower  flow (N, 2L, H, W)  float 0..255 (q)   -> features (N, C', h', w')
    fusion head     (N, T, C, h, w), (N, T, C', h', w')    -> logits (N, K)

(C', h', w') = (C, h, w) unless the contract gives the temporal tower a backbone of its own
(late fusions only: each tower is pooled and classified alone).

Because the towers are 2D, a frame's features do not depend on the window it is part of:
the runtime caches them per frame and runs only the head per window. ``forward`` is exactly
``head(spatial(...), temporal(...))`` so the split and the full pass agree.
"""

from __future__ import annotations

import torch
from torch import nn

from twostream.backbones import build_backbone
from twostream.contract import LATE_FUSIONS, ModelContract


class Tower(nn.Module):
    """Normalise raw 0..255 input inside the graph, so every backend gets the same preprocessing.

    ``order``: input channel indices the trunk takes, in its order (None: as given); not saved in
    the state_dict (the contract says it), so model files older than it still load.
    """

    def __init__(self, trunk: nn.Module, mean: list[float], std: list[float], order: list[int] | None = None):
        super().__init__()
        self.trunk = trunk
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("order", None if order is None else torch.tensor(order, dtype=torch.long),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order is not None:
            x = x.index_select(1, self.order)
        return self.trunk((x - self.mean) * self.inv_std)


def _gaussian_3d(size: int = 3, sigma: float = 1.0) -> torch.Tensor:
    """A normalised (sum 1) isotropic Gaussian, (size, size, size)."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g3 = g.view(-1, 1, 1) * g.view(1, -1, 1) * g.view(1, 1, -1)
    return g3 / g3.sum()


class SpatialFusion(nn.Module):
    """Per-frame fusion of two (M, C, h, w) maps at the last conv layer (paper §3.2).

    sum/max/conv -> (M, C, h, w); concat -> (M, 2C, h, w);
    bilinear -> (M, C*C, 1, 1): mean over locations of the outer product, signed sqrt, L2 norm.
    """

    def __init__(self, kind: str, channels: int):
        super().__init__()
        self.kind = kind
        self.conv = None
        if kind == "conv":
            # 1x1 conv 2C -> C, initialised to the mean of the two towers.
            self.conv = nn.Conv2d(2 * channels, channels, 1)
            eye = torch.eye(channels).view(channels, channels, 1, 1)
            with torch.no_grad():
                self.conv.weight.copy_(0.5 * torch.cat([eye, eye], dim=1))
                self.conv.bias.zero_()
        self.out_channels = {"sum": channels, "max": channels, "conv": channels,
                             "concat": 2 * channels, "bilinear": channels * channels}[kind]

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "sum":
            return s + t
        if self.kind == "max":
            return torch.maximum(s, t)
        if self.kind == "concat":
            return torch.cat([s, t], dim=1)
        if self.kind == "conv":
            return self.conv(torch.cat([s, t], dim=1))
        m, c, h, w = s.shape
        outer = torch.bmm(s.reshape(m, c, h * w), t.reshape(m, c, h * w).transpose(1, 2)) / (h * w)
        flat = outer.reshape(m, c * c)
        flat = torch.sign(flat) * torch.sqrt(flat.abs() + 1e-12)
        flat = nn.functional.normalize(flat, dim=1)
        return flat.view(m, c * c, 1, 1)


def svm_features(spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
    """Per-tower logits (N, K) x 2 -> the late SVM's features (N, 2K): each tower's softmax
    scores, L2-normalised, spatial then temporal."""
    return torch.cat([nn.functional.normalize(torch.softmax(x, dim=1), dim=1) for x in (spatial, temporal)], dim=1)


class FusionHead(nn.Module):
    """Scores one window from T cached feature pairs.

    Inputs s, t: (N, T, C, h, w). Output: logits (N, K).
    Non-late: fused = fc(pool3d(relu(conv3d(fuse(s, t))))), temporal = fc(pool3d(t)),
    logits = (fused + temporal) / 2 (paper §3.3, Fig. 4: the temporal tower is kept).
    Bilinear has no spatial extent left, so its temporal fusion is a max over T.
    Late: the seed systems' baseline, mean over T and over towers of the per-frame classifiers.
    Late-svm: per-tower logits as late, then svm_features (N, 2K) @ svm_coef (K, 2K).T +
    svm_intercept (K,): a linear SVM's decision values (twostream.svmfusion fits them; until
    then the mean of the two normalised score vectors).
    Late-concat: per-tower logits as late, concatenated (N, 2K) (spatial first), then
    concat_fc, a Linear(2K, K) learnt in the head stage (initialised to the late average).
    ``temporal_channels``: C' of the temporal features (late fusions), default C.
    """

    def __init__(self, fusion: str, channels: int, num_classes: int, num_segments: int,
                 dropout: float = 0.5, temporal_channels: int | None = None):
        super().__init__()
        self.fusion = fusion
        # Per-frame tower classifiers on globally pooled features: used to train and evaluate
        # each tower alone, and as the late-fusion head.
        self.spatial_fc = nn.Linear(channels, num_classes)
        self.temporal_fc = nn.Linear(temporal_channels or channels, num_classes)
        self.dropout = nn.Dropout(dropout)
        if fusion == "late-svm":  # buffers, not parameters: fitted by an SVM, never by a gradient
            self.register_buffer("svm_coef", 0.5 * torch.cat([torch.eye(num_classes)] * 2, dim=1))
            self.register_buffer("svm_intercept", torch.zeros(num_classes))
        if fusion == "late-concat":
            self.concat_fc = nn.Linear(2 * num_classes, num_classes)
            with torch.no_grad():  # starts as "late": (spatial + temporal) / 2
                self.concat_fc.weight.copy_(0.5 * torch.cat([torch.eye(num_classes)] * 2, dim=1))
                self.concat_fc.bias.zero_()
        if fusion in LATE_FUSIONS:
            return
        self.fuse = SpatialFusion(fusion, channels)
        self.pool3d = nn.MaxPool3d((num_segments, 2, 2), stride=(num_segments, 2, 2), ceil_mode=True)
        self.conv3d = None
        if fusion != "bilinear":
            self.conv3d = nn.Conv3d(self.fuse.out_channels, channels, 3, padding=1)
            self._identity_init(self.conv3d, channels, concat=fusion == "concat")
            self.fused_fc = nn.Linear(channels, num_classes)
        else:
            self.fused_fc = nn.Linear(self.fuse.out_channels, num_classes)
        self.temporal_branch_fc = nn.Linear(channels, num_classes)

    @staticmethod
    def _identity_init(conv: nn.Conv3d, channels: int, concat: bool) -> None:
        """The paper's init: [0.25 I ; 0.75 I] x normalised 3D Gaussian for concatenated
        (spatial; temporal) input, I x Gaussian otherwise: the head starts as a weighted sum."""
        g = _gaussian_3d()
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.zero_()
            idx = torch.arange(channels)
            if concat:
                conv.weight[idx, idx] = 0.25 * g
                conv.weight[idx, idx + channels] = 0.75 * g
            else:
                conv.weight[idx, idx] = g

    def tower_logits(self, s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-tower logits (N, K), each the mean over T of the per-frame classifier."""
        return (self.spatial_fc(s.mean(dim=(3, 4))).mean(dim=1),
                self.temporal_fc(t.mean(dim=(3, 4))).mean(dim=1))

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.fusion in LATE_FUSIONS:
            spatial, temporal = self.tower_logits(s, t)
            if self.fusion == "late":
                return (spatial + temporal) / 2
            if self.fusion == "late-concat":
                return self.concat_fc(torch.cat([spatial, temporal], dim=1))
            return svm_features(spatial, temporal) @ self.svm_coef.T + self.svm_intercept
        n, frames, c, h, w = s.shape
        fused = self.fuse(s.reshape(n * frames, c, h, w), t.reshape(n * frames, c, h, w))
        fused = fused.reshape(n, frames, *fused.shape[1:])
        if self.conv3d is None:  # bilinear: (N, T, C*C, 1, 1) -> max over T
            fused_vec = fused.amax(dim=1).flatten(1)
        else:
            x = torch.relu(self.conv3d(fused.transpose(1, 2)))  # (N, C, T, h, w)
            fused_vec = self.pool3d(x).mean(dim=(2, 3, 4))
        temporal_vec = self.pool3d(t.transpose(1, 2)).mean(dim=(2, 3, 4))
        fused_logits = self.fused_fc(self.dropout(fused_vec))
        temporal_logits = self.temporal_branch_fc(self.dropout(temporal_vec))
        return (fused_logits + temporal_logits) / 2


class TwoStreamNet(nn.Module):
    """The whole model, built from its contract. See the module docstring for shapes."""

    def __init__(self, contract: ModelContract, pretrained: bool = False):
        super().__init__()
        self.contract = contract
        s_trunk, channels = build_backbone(contract.backbone, 3, pretrained)
        # A small flow net of its own (tiny) has no ImageNet weights: --pretrained is the RGB tower's then.
        t_pretrained = pretrained and not (contract.temporal_trunk == "tiny" and contract.backbone != "tiny")
        t_trunk, t_channels = build_backbone(contract.temporal_trunk, contract.flow_channels, t_pretrained)
        rgb_mean = [255.0 * m for m in contract.rgb_mean]
        rgb_std = [255.0 * s for s in contract.rgb_std]
        flow_mean, flow_std = contract.flow_normalisation()  # "pixels": quantisation steps per pixel
        self.spatial_tower = Tower(s_trunk, rgb_mean, rgb_std)
        self.temporal_tower = Tower(t_trunk, [flow_mean], [flow_std], contract.flow_network_order())
        self.head = FusionHead(contract.fusion, channels, contract.num_classes, contract.num_segments,
                               temporal_channels=t_channels)
        self.feature_channels = channels
        self.temporal_feature_channels = t_channels
        # Multi-task training (contract.multitask, twostream/multitask.py): the temporal tower's
        # per-frame classifier for a second dataset, (C' -> K2) like head.temporal_fc. Never in
        # forward: engines and the live runtime score the primary dataset only.
        self.multitask_temporal_fc = nn.Linear(t_channels, len(contract.multitask.classes)) if contract.multitask else None

    def spatial(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB 0..255 -> (N, C, h, w)."""
        return self.spatial_tower(rgb)

    def temporal(self, flow: torch.Tensor) -> torch.Tensor:
        """(N, 2L, H, W) quantised flow 0..255 -> (N, C', h', w')."""
        return self.temporal_tower(flow)

    def features(self, rgb: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (N, T, 3, H, W) and (N, T, 2L, H, W) -> tower features (N, T, C, h, w) and
        (N, T, C', h', w')."""
        n, frames = rgb.shape[:2]
        s = self.spatial(rgb.flatten(0, 1))
        t = self.temporal(flow.flatten(0, 1))
        return s.view(n, frames, *s.shape[1:]), t.view(n, frames, *t.shape[1:])

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Windows (N, T, 3, H, W) and (N, T, 2L, H, W) -> logits (N, K)."""
        return self.head(*self.features(rgb, flow))
