"""Video-level evaluation protocols of the published two-stream systems, and their reports.

    frames19      19 frames uniformly spaced over the video (the ResNet-101 two-stream reference)
    frames25      25 frames uniformly spaced (Simonyan and Zisserman 2014)
    clips20-flip  20 windows evenly spread over the video, each also mirrored (Feichtenhofer,
                  Pinz and Zisserman 2016)

A frame protocol scores each tower per frame (its per-frame classifier on one RGB frame, or on
the L-field flow stack ending there) and averages the softmax over the frames; fused is the
average of the two towers' video scores (those systems' late average fusion). A clip protocol
scores windows of T sampled frames as the runtime does: each tower is the head's per-tower
logits, fused is the model's head; softmax averaged over windows and mirrors. A video's class is
the argmax of its averaged score. Reports give top-1 per tower and fused, per split, and the
mean over the splits evaluated.

Views are whole frames resized as the contract says: the papers' test-time crops (Simonyan and
Zisserman's four corners and centre, each mirrored) have no counterpart in a contract that
never crops, so frames19 and frames25 take the frames as the runtime would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pathlib import Path

from twostream.batches import gather_window
from twostream.checkpoint import build_model, read_checkpoint
from twostream.data import Clip, ClipPrep, ClipSet
from twostream.datasets import DatasetSource
from twostream.errors import DataError
from twostream.model import TwoStreamNet
from twostream.preprocess import WindowPlan, tower_inputs
from twostream.training import clip_features

TOWERS = ("spatial", "temporal", "fused")


@dataclass(frozen=True)
class Protocol:
    name: str
    views: int  # frames, or windows, per video
    windows: bool  # False: single frames, towers averaged; True: T-frame windows through the head
    flips: bool  # each view also mirrored
    source: str  # the system whose test protocol this is


PROTOCOLS = (
    Protocol("frames19", 19, False, False, "ResNet-101 two-stream reference: 19 frames per video"),
    Protocol("frames25", 25, False, False, "Simonyan and Zisserman 2014: 25 frames per video"),
    Protocol("clips20-flip", 20, True, True, "Feichtenhofer et al. 2016: 20 clips per video and their mirrors"),
)


def protocol_named(name: str) -> Protocol:
    for protocol in PROTOCOLS:
        if protocol.name == name:
            return protocol
    raise DataError(f"evaluation protocol {name!r} is not one of {[p.name for p in PROTOCOLS]}")


@dataclass(frozen=True)
class VideoScores:
    """Softmax scores averaged per video, each (N, K) float32, and the true labels (N,)."""

    spatial: np.ndarray
    temporal: np.ndarray
    fused: np.ndarray
    labels: np.ndarray

    def top1(self, tower: str) -> float:
        """Video-level top-1 of ``tower`` (one of TOWERS)."""
        scores = getattr(self, tower)
        return float((scores.argmax(1) == self.labels).mean()) if len(self.labels) else 0.0


def mirror(clip: Clip) -> Clip:
    """The clip flipped left-right: rgb columns reversed; flow columns reversed and the x
    displacement negated (q -> 256 - q about the zero-motion 128, clipped as quantise_flow clips):
    channel 0, and channel 2 of bidirectional slots (forward x, y, backward x, y)."""
    flow = clip.flow[..., ::-1].astype(np.int16)
    flow[:, 0::2] = 256 - flow[:, 0::2]
    return Clip(np.ascontiguousarray(clip.rgb[..., ::-1]), np.clip(flow, 0, 255).astype(np.uint8), clip.label)


def uniform_frames(frames: int, views: int, length: int) -> np.ndarray:
    """``views`` frame numbers uniformly spaced over L..F-1 (frames below L lack a full stack)."""
    if frames <= length:
        raise DataError(f"a clip of {frames} frames has no frame with a full {length}-field flow stack")
    return np.linspace(length, frames - 1, views).round().astype(np.int64)


@torch.inference_mode()
def _frame_scores(model: TwoStreamNet, clip: Clip, protocol: Protocol, device: str) -> tuple[np.ndarray, ...]:
    length = model.contract.stack_length
    views = [clip, mirror(clip)] if protocol.flips else [clip]
    spatial, temporal = [], []
    for view in views:
        rgb, flow = (torch.from_numpy(a).to(device) for a in
                     tower_inputs(view.rgb, view.flow, uniform_frames(len(view.rgb), protocol.views, length), length))
        spatial.append(torch.softmax(model.head.spatial_fc(model.spatial(rgb).mean(dim=(2, 3))), 1))
        temporal.append(torch.softmax(model.head.temporal_fc(model.temporal(flow).mean(dim=(2, 3))), 1))
    s, t = torch.cat(spatial).mean(0), torch.cat(temporal).mean(0)
    return s.cpu().numpy(), t.cpu().numpy(), ((s + t) / 2).cpu().numpy()


@torch.inference_mode()
def _window_scores(model: TwoStreamNet, clip: Clip, protocol: Protocol, device: str) -> tuple[np.ndarray, ...]:
    contract = model.contract
    ends = WindowPlan.of(contract).spread_ends(len(clip.rgb), protocol.views)
    if not ends:
        raise DataError(f"a clip of {len(clip.rgb)} frames is shorter than one window ({WindowPlan.of(contract).span})")
    views = [clip, mirror(clip)] if protocol.flips else [clip]
    feats = clip_features(model, ClipSet(tuple(views), contract.classes), desc="views", device=device)
    spatial, temporal, fused = [], [], []
    for feat in feats:
        for end in ends:
            s, t = (x[None].to(device) for x in gather_window(feat, end, contract, contract.stride))
            s_logits, t_logits = model.head.tower_logits(s, t)
            spatial.append(torch.softmax(s_logits, 1))
            temporal.append(torch.softmax(t_logits, 1))
            fused.append(torch.softmax(model.head(s, t), 1))
    return tuple(torch.cat(x).mean(0).cpu().numpy() for x in (spatial, temporal, fused))


def score_videos(model: TwoStreamNet, clips: ClipSet, protocol: Protocol, device: str = "cpu") -> VideoScores:
    """Every video of ``clips`` scored under ``protocol`` by ``model`` (eval mode, on ``device``)."""
    model.eval()
    score = _window_scores if protocol.windows else _frame_scores
    rows = [score(model, clip, protocol, device) for clip in clips.clips]
    k = model.contract.num_classes
    stacked = [np.stack([r[i] for r in rows]) if rows else np.zeros((0, k), np.float32) for i in range(3)]
    return VideoScores(*stacked, np.array([c.label for c in clips.clips], np.int64))


@dataclass(frozen=True)
class SplitResult:
    """One split's video-level top-1 under one protocol."""

    dataset: str
    split: int
    protocol: str
    videos: int
    spatial: float
    temporal: float
    fused: float

    @classmethod
    def of(cls, dataset: str, split: int, protocol: Protocol, scores: VideoScores) -> "SplitResult":
        return cls(dataset, split, protocol.name, len(scores.labels), *(scores.top1(t) for t in TOWERS))


def evaluate_splits(source: DatasetSource, models: list[Path], splits: list[int], protocol: Protocol,
                    device: str = "cpu", cache: Path | None = None, workers: int = 2) -> list[SplitResult]:
    """Model file ``models[i]`` on the test list of split ``splits[i]`` under ``protocol``, on
    ``device`` (flow cached in ``cache`` when given; videos decoded in ``workers`` processes)."""
    if len(models) != len(splits):
        raise DataError(f"{len(models)} models for {len(splits)} splits: give one model per split")
    results = []
    for path, number in zip(models, splits):
        model = build_model(read_checkpoint(path)).to(device)
        clips = source.clips(number, "test", model.contract, ClipPrep.of(model.contract, device, cache), workers)
        results.append(SplitResult.of(source.dataset, number, protocol, score_videos(model, clips, protocol, device)))
    return results


def splits_report(results: list[SplitResult]) -> dict:
    """JSON-ready: every split's result and, per tower, the mean over the splits evaluated."""
    if not results:
        raise DataError("no split was evaluated")
    return {
        "protocol": results[0].protocol,
        "dataset": results[0].dataset,
        "splits": [{"split": r.split, "videos": r.videos, **{f"top1_{t}": getattr(r, t) for t in TOWERS}}
                   for r in results],
        "mean": {f"top1_{t}": float(np.mean([getattr(r, t) for r in results])) for t in TOWERS},
    }


def splits_table(results: list[SplitResult]) -> str:
    """The report as a Markdown table: one row per split, then their mean."""
    data = splits_report(results)
    lines = [f"{data['dataset']}, protocol {data['protocol']}", "",
             "| split | videos | spatial | temporal | fused |", "| --- | ---: | ---: | ---: | ---: |"]
    for row in data["splits"]:
        lines.append(f"| {row['split']} | {row['videos']} | " +
                     " | ".join(f"{100 * row[f'top1_{t}']:.1f} %" for t in TOWERS) + " |")
    lines.append(f"| mean | {sum(r['videos'] for r in data['splits'])} | " +
                 " | ".join(f"{100 * data['mean'][f'top1_{t}']:.1f} %" for t in TOWERS) + " |")
    return "\n".join(lines)
