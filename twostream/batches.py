"""Training batches, assembled by a torch DataLoader (in worker processes when asked) and moved
to the training device.

What a batch holds is drawn in the main process, from the epoch's own numpy generator and in
exactly the order training has always drawn it (``tower_plan``, ``head_plan``); the datasets
only gather what the plan names. So the batches are the same with 0 or N loader workers, and
the loader draws nothing from torch's global generator (it gets a private one: DataLoader seeds
its workers from the generator it is given, else from the global one, which would shift the
head's dropout masks).

Tower samples stay uint8 until they reach the device: rgb (3, H, W) and the flow stack
(2L, H, W) (twostream.preprocess.stack_fields, a view of the clip's fields), a quarter of the
float32 bytes to pass between processes and over PCIe; ``tower_tensors`` makes them float
there. Head samples are windows of cached tower features, float32 (T, C, h, w).

Workers are forked: the clips and features are the parent's memory, shared, never pickled. Only
host work runs in them (numpy gathers); CUDA never does (it does not survive a fork).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from twostream.contract import ModelContract
from twostream.preprocess import WindowPlan, stack_fields


@dataclass(frozen=True)
class ClipFeatures:
    """Tower features of every frame of one clip: spatial and temporal (F, C, h, w), valid from
    frame L on (earlier frames lack a full flow stack, are never sampled, and hold zeros)."""

    spatial: torch.Tensor
    temporal: torch.Tensor
    label: int


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are assembled: ``workers`` processes (0: in the main process), and whether
    batches land in pinned host memory (CUDA: the copy to the device is then asynchronous)."""

    workers: int = 0
    pin_memory: bool = False


def gather_window(features: ClipFeatures, end: int, contract: ModelContract, stride: int):
    """Features of one window: spatial and temporal (T, C, h, w)."""
    frames = torch.from_numpy(WindowPlan.of(contract, stride=stride).sampled(end))
    return features.spatial[frames], features.temporal[frames]


def tower_plan(clip_lengths: list[int], contract: ModelContract, rng: np.random.Generator, batch: int,
               steps: int, spatial_segments: int = 1) -> list[list[tuple]]:
    """``steps`` batches of (clip index, frame) pairs: per batch ``batch`` clips drawn with
    replacement, then a frame of each in L..F-1 (frames below L lack a full flow stack). With
    ``spatial_segments`` K > 1 each row also names the spatial tower's K frames, (clip index,
    frame, (f_1..f_K)): f_k drawn in the k-th of K equal segments of L..F-1 (TSN), after the
    frame, so K = 1 draws exactly what it always drew."""
    length = contract.stack_length
    plan = []
    for _ in range(steps):
        picks = rng.integers(len(clip_lengths), size=batch)
        rows = [(int(ci), int(rng.integers(length, clip_lengths[ci]))) for ci in picks]
        if spatial_segments > 1:
            rows = [(ci, frame, segment_frames(rng, length, clip_lengths[ci], spatial_segments))
                    for ci, frame in rows]
        plan.append(rows)
    return plan


def segment_frames(rng: np.random.Generator, first: int, end: int, segments: int) -> tuple[int, ...]:
    """One frame drawn in each of ``segments`` equal parts of first..end-1 (a part shorter than a
    frame, in a short clip, is its first frame)."""
    bounds = np.linspace(first, end, segments + 1)
    return tuple(int(rng.integers(int(lo), max(int(hi), int(lo) + 1))) for lo, hi in zip(bounds[:-1], bounds[1:]))


def head_plan(feature_lengths: list[int], contract: ModelContract, rng: np.random.Generator, batch: int,
              steps: int, strides: tuple[int, int]) -> list[list[tuple[int, int, int]]]:
    """``steps`` batches of (clip index, window end, stride) triples: per batch ``batch`` clips
    drawn with replacement, then for each a stride in ``strides`` and a window end."""
    lo, hi = strides
    plan = []
    for _ in range(steps):
        rows = []
        for ci in rng.integers(len(feature_lengths), size=batch):
            frames = feature_lengths[ci]
            # Short clips (user data) cap tau so that one window still fits.
            max_stride = (frames - 1 - contract.stack_length) // max(contract.num_segments - 1, 1)
            stride = max(1, min(int(rng.integers(lo, hi + 1)), max_stride))
            end = int(rng.integers(WindowPlan.of(contract, stride=stride).first_end, frames))
            rows.append((int(ci), end, stride))
        plan.append(rows)
    return plan


class TowerSamples(Dataset):
    """(clip index, frame) -> (rgb uint8 (3, H, W), flow stack uint8 (2L, H, W), label): the
    uint8 rows of twostream.preprocess.tower_inputs for that frame; (clip index, frame, spatial
    frames (K,)) -> rgb (K, 3, H, W) of those frames instead (tower_plan's spatial segments)."""

    def __init__(self, clips, contract: ModelContract):
        self.clips = clips.clips
        self.length = contract.stack_length

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: tuple):
        ci, frame = index[:2]
        clip = self.clips[ci]
        rgb = clip.rgb[list(index[2])] if len(index) > 2 else clip.rgb[frame]
        return rgb, stack_fields(clip.flow[frame - self.length + 1:frame + 1]), clip.label


class HeadSamples(Dataset):
    """(clip index, window end, stride) -> (spatial, temporal float32 (T, C, h, w), label)."""

    def __init__(self, feats: list[ClipFeatures], contract: ModelContract):
        self.feats = feats
        self.contract = contract

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, index: tuple[int, int, int]):
        ci, end, stride = index
        spatial, temporal = gather_window(self.feats[ci], end, self.contract, stride)
        return spatial, temporal, self.feats[ci].label


class WindowFrames(Dataset):
    """(clip index, window end, stride) -> the window's T sampled frames as the towers take them,
    rgb uint8 (T, 3, H, W) and flow stacks uint8 (T, 2L, H, W), and the label: HeadSamples'
    window before the towers, for a head stage that runs the frozen towers per batch instead of
    caching every frame's features (twostream.training.train_head)."""

    def __init__(self, clips, contract: ModelContract):
        self.clips = clips.clips
        self.contract = contract

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: tuple[int, int, int]):
        ci, end, stride = index
        clip, length = self.clips[ci], self.contract.stack_length
        frames = WindowPlan.of(self.contract, stride=stride).sampled(end)  # each >= L: a full stack
        stacks = np.stack([stack_fields(clip.flow[f - length + 1:f + 1]) for f in frames])
        return np.ascontiguousarray(clip.rgb[frames]), stacks, clip.label


def collate(rows: list[tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of (a, b, label) -> (stacked a (B, ...), stacked b (B, ...), labels int64 (B,))."""
    first, second, labels = zip(*rows)
    if isinstance(first[0], np.ndarray):
        return torch.from_numpy(np.stack(first)), torch.from_numpy(np.stack(second)), torch.tensor(labels)
    return torch.stack(first), torch.stack(second), torch.tensor(labels)


def loader(dataset: Dataset, plan: list[list[tuple]], settings: LoaderSettings) -> DataLoader:
    """The batches of ``plan``, in order, from ``dataset``."""
    workers = settings.workers
    return DataLoader(dataset, batch_sampler=plan, collate_fn=collate, num_workers=workers,
                      pin_memory=settings.pin_memory, generator=torch.Generator(),
                      # Fork: the workers read the parent's clips in place (spawn would pickle
                      # every clip into every worker).
                      multiprocessing_context="fork" if workers else None)


def to_device(batch: tuple[torch.Tensor, ...], device: str) -> tuple[torch.Tensor, ...]:
    """Every tensor of a batch on ``device``; asynchronous from pinned memory (same stream, so
    the kernels that read them wait for the copies), a no-op on the CPU."""
    return tuple(t.to(device, non_blocking=True) for t in batch)


def tower_tensors(batch: tuple[torch.Tensor, ...], device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A tower batch on ``device``: rgb float32 (B, 3, H, W) (or (B, K, 3, H, W) with spatial
    segments), flow float32 (B, 2L, H, W) (values 0..255, as tower_inputs gives them), labels (B,)."""
    rgb, flow, labels = to_device(batch, device)
    return rgb.float(), flow.float(), labels
