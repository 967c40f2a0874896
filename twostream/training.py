"""Training in the paper's order: each tower alone, then the fusion head on top of them.

Stage "towers": both towers learn per frame (spatial on one RGB frame, temporal on one
L-deep flow stack) through their per-frame classifiers.
Stage "head": towers frozen; their features are computed once per clip frame (they do not
depend on the window, exactly as at run time) and the fusion head learns on windows of T
cached feature pairs with the stride tau drawn at random (the paper draws tau in 5..15).

After every epoch the caller gets a Progress: with the weights, all an exact resume needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from twostream import seeds
from twostream.contract import ModelContract
from twostream.data import ClipSet, eval_windows
from twostream.errors import CheckpointError
from twostream.model import TwoStreamNet
from twostream.preprocess import WindowPlan, tower_inputs

STAGES = ("towers", "head", "done")
# The fusion train.py fit trains unless told otherwise (the demo model's). ModelContract's own
# default stays 'concat': contracts already written name their fusion, but code and tests that
# build a contract without one rely on it.
TRAIN_FUSION = "conv"


@dataclass(frozen=True)
class TrainSettings:
    tower_epochs: int = 4
    head_epochs: int = 8
    tower_batch: int = 64
    head_batch: int = 64
    samples_per_clip: int = 8  # per epoch: tower frames (or head windows) drawn per clip
    lr: float = 2e-3
    weight_decay: float = 1e-4
    strides: tuple[int, int] = (2, 4)  # tau drawn uniformly in [lo, hi] for head training
    seed: int = seeds.TRAIN


@dataclass(frozen=True)
class ClipFeatures:
    """Tower features of every frame of one clip: spatial and temporal (F, C, h, w), valid from
    frame L on (earlier frames lack a full flow stack, are never sampled, and hold zeros)."""

    spatial: torch.Tensor
    temporal: torch.Tensor
    label: int


@dataclass(frozen=True)
class Progress:
    """Where a run stands between epochs, with everything beyond the weights that continuing it
    exactly needs; a checkpoint stores it as ``train_state`` (plain types and tensors only, so
    it loads with weights_only=True).

    ``epoch`` epochs of ``stage`` are done. ``optimizer`` and ``scheduler`` are the stage's AdamW
    and OneCycleLR state_dicts (moments, step counts, learning rate and momentum): None at epoch
    0, where a stage starts both afresh. ``torch_rng`` is torch.get_rng_state(), uint8 (N,), for
    the head's dropout masks to come (training runs on the CPU, so that generator is the only
    torch one; the towers draw nothing from it, but a run resumed mid-towers must still reach the
    head with the generator of the uninterrupted run). None (a fresh run) leaves it as it is.
    numpy needs nothing: every epoch draws from its own np.random.default_rng([seed, stage, epoch]).
    """

    stage: str = "towers"
    epoch: int = 0
    optimizer: dict | None = None
    scheduler: dict | None = None
    torch_rng: torch.Tensor | None = None

    def next_stage(self) -> "Progress":
        """Epoch 0 of the following stage: fresh optimizer and schedule, the same generator.
        "done" keeps nothing (the shipped model file stays small)."""
        stage = STAGES[STAGES.index(self.stage) + 1]
        return Progress(stage, 0, torch_rng=None if stage == "done" else self.torch_rng)

    def to_train_state(self) -> dict:
        """The checkpoint's ``train_state``: stage and epoch, plus the fields that are set."""
        state = {"stage": self.stage, "epoch": self.epoch}
        for key in ("optimizer", "scheduler", "torch_rng"):
            if getattr(self, key) is not None:
                state[key] = getattr(self, key)
        return state

    @staticmethod
    def from_train_state(state: dict) -> "Progress":
        """The point a checkpoint's ``train_state`` resumes from; CheckpointError (one line)
        where it cannot resume exactly, rather than continuing a different run in silence."""
        if not state:
            raise CheckpointError("no training state (not written by train.py fit): nothing to resume; "
                                  "fine-tune from it with --init instead")
        stage, epoch = state.get("stage"), state.get("epoch")
        if stage not in STAGES or not isinstance(epoch, int) or epoch < 0:
            raise CheckpointError(f"malformed training state: stage {stage!r}, epoch {epoch!r}")
        if stage == "done":  # only the held-out evaluation is left, and it draws nothing at random
            return Progress(stage, epoch)
        rng = state.get("torch_rng")
        missing = [key for key in ("optimizer", "scheduler") if epoch > 0 and not isinstance(state.get(key), dict)]
        if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
            missing.append("torch_rng")
        if missing:
            raise CheckpointError(f"{stage} epoch {epoch} checkpoint lacks {', '.join(missing)} (written before "
                                  "exact resume, or damaged): it cannot be resumed exactly; start the run again, "
                                  "or fine-tune from it with --init")
        return Progress(stage, epoch, state.get("optimizer"), state.get("scheduler"), rng)


def _continue(start: Progress, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Put a fresh optimizer, schedule and generator where ``start`` left them: the optimizer's
    state_dict brings the moments and the learning rate and betas set for the next step, the
    scheduler's its place in the cycle."""
    if start.optimizer is not None:
        opt.load_state_dict(start.optimizer)
        sched.load_state_dict(start.scheduler)
    if start.torch_rng is not None:
        torch.set_rng_state(start.torch_rng)


def _after_epoch(stage: str, epoch: int, opt: torch.optim.Optimizer,
                 sched: torch.optim.lr_scheduler.LRScheduler) -> Progress:
    """Progress after ``epoch`` epochs. The state_dicts reference the live tensors: the
    on_epoch callback saves them before the next step changes them."""
    return Progress(stage, epoch, opt.state_dict(), sched.state_dict(), torch.get_rng_state())


def _tower_batch(clips: ClipSet, contract: ModelContract, rng: np.random.Generator, size: int):
    """Random frames: rgb (B, 3, H, W), flow stacks (B, 2L, H, W) as float, labels (B,)."""
    length = contract.stack_length
    picks = rng.integers(len(clips), size=size)
    rgb, flow, labels = [], [], []
    for ci in picks:
        clip = clips.clips[ci]
        frame = int(rng.integers(length, len(clip.rgb)))
        r, f = tower_inputs(clip.rgb, clip.flow, [frame], length)
        rgb.append(r)
        flow.append(f)
        labels.append(clip.label)
    return torch.from_numpy(np.concatenate(rgb)), torch.from_numpy(np.concatenate(flow)), torch.tensor(labels)


def train_towers(model: TwoStreamNet, clips: ClipSet, settings: TrainSettings, start: Progress,
                 on_epoch: Callable[[Progress, dict], None]) -> None:
    """Both towers, per frame, through their own classifiers (head.spatial_fc / temporal_fc),
    from ``start`` (Progress() for a fresh run); ``on_epoch(progress, figures)`` after each epoch."""
    contract = model.contract
    params = (list(model.spatial_tower.parameters()) + list(model.temporal_tower.parameters())
              + list(model.head.spatial_fc.parameters()) + list(model.head.temporal_fc.parameters()))
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps = math.ceil(len(clips) * settings.samples_per_clip / settings.tower_batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=steps * settings.tower_epochs)
    _continue(start, opt, sched)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for epoch in range(start.epoch, settings.tower_epochs):
        rng = np.random.default_rng([settings.seed, 1, epoch])
        model.train()
        bar = tqdm(range(steps), desc=f"towers epoch {epoch + 1}/{settings.tower_epochs}", unit="step",
                   disable=None)
        correct = np.zeros(2)
        seen = 0
        for _ in bar:
            rgb, flow, labels = _tower_batch(clips, contract, rng, settings.tower_batch)
            # fp32 on purpose: bf16 autocast measured 10x slower for these small convs here.
            s_logits = model.head.spatial_fc(model.spatial(rgb).mean(dim=(2, 3)))
            t_logits = model.head.temporal_fc(model.temporal(flow).mean(dim=(2, 3)))
            loss = loss_fn(s_logits, labels) + loss_fn(t_logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += [(s_logits.argmax(1) == labels).sum().item(), (t_logits.argmax(1) == labels).sum().item()]
            seen += len(labels)
            bar.set_postfix(loss=f"{loss.item():.3f}", spatial=f"{correct[0] / seen:.2f}",
                            temporal=f"{correct[1] / seen:.2f}")
        on_epoch(_after_epoch("towers", epoch + 1, opt, sched),
                 {"spatial_train_acc": correct[0] / seen, "temporal_train_acc": correct[1] / seen})


@torch.inference_mode()
def clip_features(model: TwoStreamNet, clips: ClipSet, batch: int = 128, desc: str = "features") -> list[ClipFeatures]:
    """Run both towers once over every frame of every clip (eval mode), as the runtime does."""
    model.eval()
    length = model.contract.stack_length
    out = []
    for clip in tqdm(clips.clips, desc=desc, unit="clip", disable=None):
        rgb, flow = (torch.from_numpy(a) for a in tower_inputs(clip.rgb, clip.flow, range(length, len(clip.rgb)),
                                                               length))
        spatial_valid = torch.cat([model.spatial(rgb[i:i + batch]) for i in range(0, len(rgb), batch)])
        temporal_valid = torch.cat([model.temporal(flow[i:i + batch]) for i in range(0, len(flow), batch)])
        spatial = torch.zeros((len(clip.rgb), *spatial_valid.shape[1:]))
        temporal = torch.zeros_like(spatial)
        spatial[length:], temporal[length:] = spatial_valid, temporal_valid
        out.append(ClipFeatures(spatial, temporal, clip.label))
    return out


def gather_window(features: ClipFeatures, end: int, contract: ModelContract, stride: int):
    """Features of one window: spatial and temporal (T, C, h, w)."""
    frames = torch.from_numpy(WindowPlan.of(contract, stride=stride).sampled(end))
    return features.spatial[frames], features.temporal[frames]


def train_head(model: TwoStreamNet, feats: list[ClipFeatures], settings: TrainSettings, start: Progress,
               on_epoch: Callable[[Progress, dict], None]) -> None:
    """The fusion head on windows of cached tower features, tau drawn in ``settings.strides``,
    from ``start`` (Progress("head") for a fresh run); ``on_epoch(progress, figures)`` after each epoch."""
    contract = model.contract
    head = model.head
    params = [p for name, p in head.named_parameters() if not name.startswith(("spatial_fc", "temporal_fc"))]
    if not params:  # late fusion: the per-frame classifiers are the whole head
        on_epoch(Progress("head", settings.head_epochs), {})
        return
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps = math.ceil(len(feats) * settings.samples_per_clip / settings.head_batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=steps * settings.head_epochs)
    _continue(start, opt, sched)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    lo, hi = settings.strides
    for epoch in range(start.epoch, settings.head_epochs):
        rng = np.random.default_rng([settings.seed, 2, epoch])
        head.train()
        bar = tqdm(range(steps), desc=f"head epoch {epoch + 1}/{settings.head_epochs}", unit="step",
                   disable=None)
        correct = seen = 0
        for _ in bar:
            s_batch, t_batch, labels = [], [], []
            for ci in rng.integers(len(feats), size=settings.head_batch):
                f = feats[ci]
                # Short clips (user data) cap tau so that one window still fits.
                max_stride = (len(f.spatial) - 1 - contract.stack_length) // max(contract.num_segments - 1, 1)
                stride = max(1, min(int(rng.integers(lo, hi + 1)), max_stride))
                end = int(rng.integers(WindowPlan.of(contract, stride=stride).first_end, len(f.spatial)))
                s, t = gather_window(f, end, contract, stride)
                s_batch.append(s)
                t_batch.append(t)
                labels.append(f.label)
            labels = torch.tensor(labels)
            logits = head(torch.stack(s_batch), torch.stack(t_batch))
            loss = loss_fn(logits, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.2f}")
        on_epoch(_after_epoch("head", epoch + 1, opt, sched), {"head_train_acc": correct / seen})


@torch.inference_mode()
def evaluate(model: TwoStreamNet, clips: ClipSet, per_clip: int = 3) -> dict:
    """Top-1 of each tower and of the model, and the model's confusion matrix, over windows at
    the run-time stride. Rows of the confusion matrix are true classes, columns predictions."""
    contract = model.contract
    feats = clip_features(model, clips, desc="evaluate")
    pairs = eval_windows(clips, contract, per_clip)
    k = contract.num_classes
    confusion = np.zeros((k, k), dtype=int)
    hits = {"spatial": 0, "temporal": 0, "fused": 0}
    for ci, end in pairs:
        s, t = gather_window(feats[ci], end, contract, contract.stride)
        s, t = s[None], t[None]
        label = feats[ci].label
        s_logits, t_logits = model.head.tower_logits(s, t)
        fused = model.head(s, t)
        hits["spatial"] += int(s_logits.argmax(1).item() == label)
        hits["temporal"] += int(t_logits.argmax(1).item() == label)
        pred = int(fused.argmax(1).item())
        hits["fused"] += int(pred == label)
        confusion[label, pred] += 1
    n = max(len(pairs), 1)
    return {
        "windows": len(pairs),
        "clips": len(clips),
        "top1_spatial": hits["spatial"] / n,
        "top1_temporal": hits["temporal"] / n,
        "top1_fused": hits["fused"] / n,
        "fusion": contract.fusion,
        "classes": list(contract.classes),
        "confusion": confusion.tolist(),
    }
