"""Training in the paper's order: each tower alone, then the fusion head on top of them.

Stage "towers": both towers learn per frame (spatial on one RGB frame, temporal on one
L-deep flow stack) through their per-frame classifiers.
Stage "head": towers frozen; their features are computed once per clip frame (they do not
depend on the window, exactly as at run time) and the fusion head learns on windows of T
cached feature pairs with the stride tau drawn at random (the paper draws tau in 5..15).

After every epoch the caller gets a Progress: with the weights, all an exact resume needs.

Training runs on ``TrainSettings.device`` ("cpu" or "cuda", see twostream.devices): batches are
assembled on the host by a DataLoader (twostream.batches, worker processes when
``loader_workers`` > 0) and copied over; with ``amp`` (CUDA only) the forward passes run under
fp16 autocast and a GradScaler scales the loss. Whatever the device, what a Progress or a
checkpoint holds is on the CPU, so a run trained on CUDA resumes or loads on a CPU machine.

Under torchrun (``TrainSettings.world``) both stages run data-parallel: each process steps on its
slice of every global batch through DistributedDataParallel (twostream.distributed).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from twostream import seeds
from twostream.batches import (ClipFeatures, HeadSamples, LoaderSettings, TowerSamples, WindowFrames, collate,
                               gather_window, head_plan, loader, to_device, tower_plan, tower_tensors)
from twostream.contract import ModelContract
from twostream.data import ClipSet, eval_windows
from twostream.distributed import World, parallel, sync_batchnorm
from twostream.model import TwoStreamNet
from twostream.multitask import multitask_loss, task_batch_size, task_batches
from twostream.preprocess import tower_inputs
from twostream.progress import Progress, after_epoch, continue_from, on_cuda
from twostream.svmfusion import fit_head_svm

__all__ = ["ClipFeatures", "Progress", "TrainSettings", "clip_features", "evaluate", "gather_window", "train_head",
           "train_towers"]

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
    device: str = "cpu"  # a resolved device (twostream.devices.resolve_device), never "auto"
    amp: bool = False  # fp16 autocast + GradScaler; CUDA only (bf16 on this CPU measured 10x slower)
    loader_workers: int = 0  # DataLoader worker processes assembling batches
    # TSN-style spatial training: K RGB frames per sample, one from each of K equal segments of
    # the clip, the spatial tower's logits averaged over them before the loss (the ResNet-101
    # reference's 3). 1: one frame, drawn exactly as before.
    spatial_segments: int = 1
    # Each class's loss weighed by the inverse of its share of the training clips: real footage
    # makes no_gesture several times any gesture's count, which tilts unsure windows toward it.
    balance_classes: bool = False
    world: World = World()  # torchrun's processes (twostream.distributed); one: a plain run

    @property
    def loading(self) -> LoaderSettings:
        """Pinned batches on CUDA: the host-to-device copy then overlaps the previous step."""
        return LoaderSettings(self.loader_workers, pin_memory=self.device.startswith("cuda"))


def _autocast(settings: TrainSettings):
    """fp16 autocast on CUDA when ``settings.amp``; nothing otherwise."""
    if settings.amp and on_cuda(settings.device):
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _scaler(settings: TrainSettings) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; disabled (a pass-through) otherwise."""
    return torch.amp.GradScaler("cuda", enabled=settings.amp and on_cuda(settings.device))


def _tower_batch(clips: ClipSet, contract: ModelContract, rng: np.random.Generator, size: int):
    """Random frames, as train_towers draws them: rgb (B, 3, H, W), flow stacks (B, 2L, H, W)
    as float, labels (B,)."""
    samples = TowerSamples(clips, contract)
    plan = tower_plan([len(c.rgb) for c in clips.clips], contract, rng, size, 1)[0]
    return tower_tensors(collate([samples[i] for i in plan]), "cpu")


def class_weights(labels: list[int], num_classes: int) -> torch.Tensor:
    """Per-class loss weights (num_classes,) float32 that give every class present the same total
    weight: count(k) * w(k) = len(labels) / classes present (a class with no clip weighs 1)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = len(labels) / (present.sum() * counts[present])
    return torch.from_numpy(weights.astype(np.float32))


def _loss(settings: TrainSettings, labels: list[int], num_classes: int) -> nn.CrossEntropyLoss:
    """Label-smoothed cross-entropy, class-balanced (class_weights) when the settings say so."""
    weight = class_weights(labels, num_classes).to(settings.device) if settings.balance_classes else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=0.05)


def _step(loss: torch.Tensor, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
          scaler: torch.amp.GradScaler) -> None:
    """One optimizer step; through the GradScaler, which skips the step if fp16 gradients
    overflowed (a disabled scaler is a plain backward and step)."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    sched.step()


def _show(bar, step: int, steps: int, **figures: Callable[[], float]) -> None:
    """Progress-bar figures every 10th and the last step: reading a loss off the GPU waits for
    it, and doing so every step would stop the host from queueing the next one meanwhile."""
    if step % 10 == 0 or step == steps - 1:
        bar.set_postfix({k: f"{f():.3f}" for k, f in figures.items()})


class TowerClassifiers(nn.Module):
    """Stage "towers" as one module, the unit DistributedDataParallel wraps: rgb (B, 3, H, W)
    (or (B, K, 3, H, W) with spatial segments, the K frames' logits averaged) and flow stacks
    (B, 2L, H, W) -> spatial and temporal logits (B, K), each tower through its per-frame
    classifier on globally pooled features. With a multi-task model, a second
    dataset's flow stacks (B2, 2L, H, W) go through the temporal tower in the same pass (its
    BatchNorm sees both datasets) and come out as (B2, K2) logits of multitask_temporal_fc;
    None otherwise. It holds the model's own parts (no copy) and none of the fusion head's
    layers, which get no gradient in this stage."""

    def __init__(self, model: TwoStreamNet):
        super().__init__()
        self.spatial_tower, self.temporal_tower = model.spatial_tower, model.temporal_tower
        self.spatial_fc, self.temporal_fc = model.head.spatial_fc, model.head.temporal_fc
        self.task_fc = model.multitask_temporal_fc

    def forward(self, rgb: torch.Tensor, flow: torch.Tensor, task_flow: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        # (B, K, 3, H, W) with spatial segments: the K frames' logits averaged (TSN consensus).
        spatial = self.spatial_fc(self.spatial_tower(rgb.flatten(0, rgb.dim() - 4)).mean(dim=(2, 3)))
        spatial = spatial.view(len(flow), -1, spatial.shape[-1]).mean(dim=1)
        if task_flow is None:
            return spatial, self.temporal_fc(self.temporal_tower(flow).mean(dim=(2, 3))), None
        pooled = self.temporal_tower(torch.cat([flow, task_flow])).mean(dim=(2, 3))  # (B + B2, C)
        return spatial, self.temporal_fc(pooled[:len(flow)]), self.task_fc(pooled[len(flow):])


def train_towers(model: TwoStreamNet, clips: ClipSet, settings: TrainSettings, start: Progress,
                 on_epoch: Callable[[Progress, dict], None], task: ClipSet | None = None) -> None:
    """Both towers, per frame, through their own classifiers (head.spatial_fc / temporal_fc),
    from ``start`` (Progress() for a fresh run); ``on_epoch(progress, figures)`` after each epoch.
    ``model`` is already on ``settings.device``. ``task``: a second dataset's training clips
    (labels in contract.multitask's classes) for multi-task training of the temporal tower
    through model.multitask_temporal_fc (twostream/multitask.py); None: the primary alone.
    Under torchrun each rank steps on its shard of every global batch (the second dataset's
    too), BatchNorm on the global batch's statistics (twostream.distributed)."""
    contract, device, world = model.contract, settings.device, settings.world
    if world.distributed:
        sync_batchnorm(model)
    net = parallel(TowerClassifiers(model), world, device)
    params = (list(model.spatial_tower.parameters()) + list(model.temporal_tower.parameters())
              + list(model.head.spatial_fc.parameters()) + list(model.head.temporal_fc.parameters()))
    if task is not None:
        params += list(model.multitask_temporal_fc.parameters())
        # Under torchrun a whole share of it per rank, as --batch is (check_batch)
        task_size = world.size * max(1, round(task_batch_size(len(clips), len(task), settings.tower_batch)
                                              / world.size))
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps = math.ceil(len(clips) * settings.samples_per_clip / settings.tower_batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=steps * settings.tower_epochs)
    scaler = _scaler(settings)
    continue_from(start, opt, sched, scaler, device)
    loss_fn = _loss(settings, [c.label for c in clips.clips], contract.num_classes)
    samples, lengths = TowerSamples(clips, contract), [len(c.rgb) for c in clips.clips]
    for epoch in range(start.epoch, settings.tower_epochs):
        rng = np.random.default_rng([settings.seed, 1, epoch])
        plan = [world.shard(rows) for rows in tower_plan(lengths, contract, rng, settings.tower_batch, steps,
                                                          settings.spatial_segments)]
        batches = loader(samples, plan, settings.loading)
        if task is not None:
            task_iter = iter(task_batches(task, contract, settings.seed, epoch, task_size, steps, settings.loading,
                                          world))
            task_hits, task_seen = torch.zeros((), dtype=torch.int64, device=device), 0
        model.train()
        bar = tqdm(batches, total=steps, desc=f"towers epoch {epoch + 1}/{settings.tower_epochs}", unit="step",
                   disable=None)
        correct = torch.zeros(2, dtype=torch.int64, device=device)
        seen = 0
        for step, batch in enumerate(bar):
            rgb, flow, labels = tower_tensors(batch, device)
            # fp32 on the CPU on purpose: bf16 autocast measured 10x slower for these small convs here.
            with _autocast(settings):
                if task is None:
                    s_logits, t_logits, _ = net(rgb, flow)
                    loss = loss_fn(s_logits, labels) + loss_fn(t_logits, labels)
                else:  # multi-task: + the second dataset's classifier's loss on its own batch
                    _, task_flow, task_labels = tower_tensors(next(task_iter), device)
                    s_logits, t_logits, task_logits = net(rgb, flow, task_flow)
                    loss = multitask_loss(loss_fn, s_logits, t_logits, labels, task_logits, task_labels)
            _step(loss, opt, sched, scaler)
            if task is not None:
                task_hits += (task_logits.argmax(1) == task_labels).sum()
                task_seen += len(task_labels)
            correct += torch.stack([(s_logits.argmax(1) == labels).sum(), (t_logits.argmax(1) == labels).sum()])
            seen += len(labels)
            _show(bar, step, steps, loss=loss.item, spatial=lambda: correct[0].item() / seen,
                  temporal=lambda: correct[1].item() / seen)
        spatial_hits, temporal_hits, seen = world.total([*correct.tolist(), seen], device)
        figures = {"spatial_train_acc": spatial_hits / seen, "temporal_train_acc": temporal_hits / seen}
        if task is not None:
            task_hits, task_seen = world.total([task_hits.item(), task_seen], device)
            figures["task_temporal_train_acc"] = task_hits / task_seen
        on_epoch(after_epoch("towers", epoch + 1, opt, sched, scaler, device), figures)


@torch.inference_mode()
def clip_features(model: TwoStreamNet, clips: ClipSet, batch: int = 128, desc: str = "features",
                  device: str = "cpu", amp: bool = False) -> list[ClipFeatures]:
    """Run both towers once over every frame of every clip (eval mode), as the runtime does, on
    ``device`` (where ``model`` is), under fp16 autocast if ``amp`` (CUDA). The features come
    back float32 on the CPU: the head's loader workers read them there, and the GPU's memory
    stays for the towers."""
    model.eval()
    return [features_of(model, clip, batch, device, amp) for clip in tqdm(clips.clips, desc=desc, unit="clip",
                                                                          disable=None)]


@torch.inference_mode()
def features_of(model: TwoStreamNet, clip, batch: int = 128, device: str = "cpu", amp: bool = False) -> ClipFeatures:
    """One clip's tower features, as clip_features computes them (``model`` in eval mode):
    spatial and temporal (F, C, h, w) float32 on the CPU, zero for the first L frames (no
    full flow stack)."""
    length = model.contract.stack_length
    rgb, flow = (torch.from_numpy(a) for a in tower_inputs(clip.rgb, clip.flow, range(length, len(clip.rgb)), length))
    with _autocast(TrainSettings(device=device, amp=amp)):
        spatial_valid = torch.cat([model.spatial(rgb[i:i + batch].to(device))
                                   for i in range(0, len(rgb), batch)]).float().cpu()
        temporal_valid = torch.cat([model.temporal(flow[i:i + batch].to(device))
                                    for i in range(0, len(flow), batch)]).float().cpu()
    spatial = torch.zeros((len(clip.rgb), *spatial_valid.shape[1:]))
    temporal = torch.zeros((len(clip.rgb), *temporal_valid.shape[1:]))
    spatial[length:], temporal[length:] = spatial_valid, temporal_valid
    return ClipFeatures(spatial, temporal, clip.label)


def train_head(model: TwoStreamNet, feats: list[ClipFeatures] | ClipSet, settings: TrainSettings, start: Progress,
               on_epoch: Callable[[Progress, dict], None]) -> None:
    """The fusion head on windows of tower features, tau drawn in ``settings.strides``, from
    ``start`` (Progress("head") for a fresh run); ``on_epoch(progress, figures)`` after each
    epoch. ``model`` is already on ``settings.device``, its towers frozen. ``feats``: every
    frame's features, cached on the CPU (clip_features); or the clips themselves, when those
    would not fit in memory: the frozen towers then run on each batch's window frames (the same
    features, computed per batch; each window's T frames through both towers)."""
    contract, device = model.contract, settings.device
    head = model.head
    params = [p for name, p in head.named_parameters() if not name.startswith(("spatial_fc", "temporal_fc"))]
    world = settings.world
    streamed = isinstance(feats, ClipSet)
    if not params:  # late fusion: the per-frame classifiers are the whole head (and late-svm's SVM on them)
        # Under torchrun rank 0 alone fits the SVM: it alone evaluates and writes the model file.
        model.eval()  # features as clip_features computes them: BatchNorm's running statistics
        clip_feats = (features_of(model, c, device=device) for c in feats.clips) if streamed else feats
        figures = fit_head_svm(model, clip_feats, seed=settings.seed) if head.fusion == "late-svm" and world.main \
            else {}
        on_epoch(Progress("head", settings.head_epochs), figures)
        return
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps = math.ceil(len(feats) * settings.samples_per_clip / settings.head_batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.lr, total_steps=steps * settings.head_epochs)
    scaler = _scaler(settings)
    continue_from(start, opt, sched, scaler, device)
    loss_fn = _loss(settings, [c.label for c in (feats.clips if streamed else feats)], contract.num_classes)
    # Not trained here (not in the optimizer); DistributedDataParallel needs every parameter
    # that asks for a gradient to get one.
    for p in list(head.spatial_fc.parameters()) + list(head.temporal_fc.parameters()):
        p.requires_grad_(False)
    net = parallel(head, world, device)
    if streamed:
        samples, lengths = WindowFrames(feats, contract), [len(c.rgb) for c in feats.clips]
    else:
        samples, lengths = HeadSamples(feats, contract), [len(f.spatial) for f in feats]
    for epoch in range(start.epoch, settings.head_epochs):
        rng = np.random.default_rng([settings.seed, 2, epoch])
        plan = [world.shard(rows) for rows in head_plan(lengths, contract, rng, settings.head_batch, steps,
                                                         settings.strides)]
        batches = loader(samples, plan, settings.loading)
        model.eval()  # the towers run (when streamed) as they do live: BatchNorm's running statistics
        head.train()
        bar = tqdm(batches, total=steps, desc=f"head epoch {epoch + 1}/{settings.head_epochs}", unit="step",
                   disable=None)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for step, batch in enumerate(bar):
            spatial, temporal, labels = to_device(batch, device)
            with _autocast(settings):
                if streamed:  # window frames (B, T, 3, H, W), (B, T, 2L, H, W) -> features (B, T, C, h, w)
                    with torch.no_grad():
                        spatial, temporal = (x.float() for x in model.features(spatial.float(), temporal.float()))
                logits = net(spatial, temporal)
                loss = loss_fn(logits, labels)
            _step(loss, opt, sched, scaler)
            correct += (logits.argmax(1) == labels).sum()
            seen += len(labels)
            _show(bar, step, steps, loss=loss.item, acc=lambda: correct.item() / seen)
        hits, seen = world.total([correct.item(), seen], device)
        on_epoch(after_epoch("head", epoch + 1, opt, sched, scaler, device), {"head_train_acc": hits / seen})


@torch.inference_mode()
def evaluate(model: TwoStreamNet, clips: ClipSet, per_clip: int = 3, device: str = "cpu") -> dict:
    """Top-1 of each tower and of the model, and the model's confusion matrix, over windows at
    the run-time stride, on ``device`` (where ``model`` is), in fp32. Rows of the confusion
    matrix are true classes, columns predictions."""
    contract = model.contract
    model.eval()
    pairs = eval_windows(clips, contract, per_clip)
    k = contract.num_classes
    confusion = np.zeros((k, k), dtype=int)
    hits = {"spatial": 0, "temporal": 0, "fused": 0}
    # One clip's features at a time (pairs come clip by clip): a test list of thousands of
    # videos never holds more than one video's features.
    feats, feats_of = None, -1
    for ci, end in tqdm(pairs, desc="evaluate", unit="window", disable=None):
        if ci != feats_of:
            feats, feats_of = features_of(model, clips.clips[ci], device=device), ci
        s, t = gather_window(feats, end, contract, contract.stride)
        s, t = s[None].to(device), t[None].to(device)
        label = feats.label
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
