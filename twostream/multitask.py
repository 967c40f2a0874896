"""Multi-task training of the temporal tower on two datasets (Simonyan and Zisserman 2014, §4.2).

The temporal tower gets one per-frame classifier per dataset: the primary's head.temporal_fc
(K classes) and the second's ``model.multitask_temporal_fc`` (K2 classes, contract.multitask),
each on the same globally pooled features (N, C). In the towers stage every step draws a
primary batch (B frames, both towers, as without multi-task) and a second batch of
``task_batch_size`` frames of the second dataset's training clips, in proportion to the two
training sets' sizes, so each clip of either set is drawn samples_per_clip times an epoch on
average, as drawing from their union would. Both batches' flow stacks go through the temporal
tower in one pass (its batch norm sees the union), and the loss is

    CE(spatial_fc, primary) + CE(temporal_fc, primary) + CE(multitask_temporal_fc, second)

each classifier's loss on its own dataset's samples only, the overall loss their sum. The
spatial tower and the fusion head train on the primary dataset alone, as before.

The model file's contract stays the primary dataset's: the second classifier is off the run-time
graph (engines, live runtime), and ``evaluate_task`` scores it on the second dataset's clips.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from twostream.batches import LoaderSettings, TowerSamples, loader, tower_plan
from twostream.contract import ModelContract, TaskHead
from twostream.data import ClipSet, eval_windows
from twostream.distributed import World
from twostream.errors import ContractMismatch
from twostream.model import TwoStreamNet
from twostream.preprocess import WindowPlan, tower_inputs

# The second dataset's batches are drawn from their own generator, [seed, TASK_STREAM, epoch]: the
# primary batches stay those a run without multi-task draws, and a stream number of its own (1 and
# 2 are the towers' and the head's, twostream/training.py) keeps its draws unlike the primary's.
TASK_STREAM = 3


def task_contract(contract: ModelContract) -> ModelContract:
    """The contract the second dataset's clips are read and labelled with: the model's
    preprocessing and the second dataset's classes (ContractMismatch without a second dataset)."""
    if contract.multitask is None:
        raise ContractMismatch("the model has no second dataset's classifier (it was not trained multi-task)")
    return dataclasses.replace(contract, classes=contract.multitask.classes, multitask=None, events=None)


def with_task(contract: ModelContract, dataset: str, classes: tuple[str, ...]) -> ModelContract:
    """``contract`` with a second dataset's classifier (its name and classes, in label order)."""
    return dataclasses.replace(contract, multitask=TaskHead(dataset, tuple(classes)))


def task_batch_size(primary_clips: int, task_clips: int, batch: int) -> int:
    """Frames of the second dataset per step beside ``batch`` primary frames: in proportion to
    the two sets' clip counts (at least one)."""
    return max(1, round(batch * task_clips / max(primary_clips, 1)))


def task_batches(clips: ClipSet, contract: ModelContract, seed: int, epoch: int, batch: int, steps: int,
                 settings: LoaderSettings, world: World = World()):
    """``steps`` batches of the second dataset's (rgb, flow stack, label), ``batch`` random
    frames each, drawn as tower_plan draws the primary ones, from the epoch's own generator
    (this rank's share of each under torchrun). Only the flow stacks and labels are used (the
    spatial tower learns the primary dataset)."""
    rng = np.random.default_rng([seed, TASK_STREAM, epoch])
    plan = [world.shard(rows) for rows in tower_plan([len(c.rgb) for c in clips.clips], contract, rng, batch, steps)]
    return loader(TowerSamples(clips, contract), plan, settings)


def multitask_loss(loss_fn: nn.Module, spatial: torch.Tensor, temporal: torch.Tensor, labels: torch.Tensor,
                   task: torch.Tensor, task_labels: torch.Tensor) -> torch.Tensor:
    """The towers stage's loss with a second dataset: each classifier's loss on its own
    dataset's samples, summed. spatial, temporal (B, K) and labels (B,) are the primary
    batch's; task (B2, K2) and task_labels (B2,) the second dataset's."""
    return loss_fn(spatial, labels) + loss_fn(temporal, labels) + loss_fn(task, task_labels)


@torch.inference_mode()
def evaluate_task(model: TwoStreamNet, clips: ClipSet, per_clip: int = 3, device: str = "cpu") -> dict:
    """Top-1 of the temporal tower through the second dataset's classifier over ``clips`` of
    the second dataset (labels in contract.multitask's classes), with its confusion matrix (rows
    true classes, columns predictions). Windows as twostream.training.evaluate takes them (the
    run-time stride, ``per_clip`` per clip); a window's logits are the mean over its T frames of
    multitask_temporal_fc on the pooled temporal features, as head.tower_logits does."""
    contract = model.contract
    task = task_contract(contract)
    if tuple(clips.classes) != task.classes:
        raise ContractMismatch(f"the clips' classes {list(clips.classes[:3])}... are not the "
                               f"{contract.multitask.dataset} classifier's {list(task.classes[:3])}...")
    model.eval()
    plan = WindowPlan.of(contract)
    k = len(task.classes)
    confusion = np.zeros((k, k), dtype=int)
    pairs = eval_windows(clips, contract, per_clip)
    for ci, end in pairs:
        clip = clips.clips[ci]
        flow = torch.from_numpy(tower_inputs(clip.rgb, clip.flow, plan.sampled(end), contract.stack_length)[1])
        pooled = model.temporal(flow.to(device)).mean(dim=(2, 3))  # (T, C)
        pred = int(model.multitask_temporal_fc(pooled).mean(dim=0).argmax().item())
        confusion[clip.label, pred] += 1
    n = max(len(pairs), 1)
    return {
        "task": contract.multitask.dataset,
        "windows": len(pairs),
        "clips": len(clips),
        "top1_temporal": int(np.trace(confusion)) / n,
        "classes": list(task.classes),
        "confusion": confusion.tolist(),
    }
