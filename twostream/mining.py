"""Hard-example mining for a fine-tuning round: render a pool of fresh generated clips, score
each with the model being fine-tuned, and keep, per class, the clips it scores worst.

This is bootstrapping as in Sung and Poggio's face detector (1998) and the hard-negative rounds
of Felzenszwalb et al. (PAMI 2010): after a few rounds the model is right on nearly every
clip the generator draws, and its errors come from a few kinds of scene (a walker turning
behind an idle hand, taken for ``push``). Rendering many clips and training on the ones it gets
wrong puts those scenes in front of it more often. (Measured once, for the demo model's round 6,
it did no better than the same round without it: README, "The shipped demo model".)

The pool is rendered in chunks (each a generate_clips split seed of its own) and only the
kept clips stay in memory: 2000 clips of 40 frames at 112 px held at once are about 5 GB.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from twostream.batches import gather_window
from twostream.data import ClipSet, eval_windows
from twostream.errors import DataError
from twostream.model import TwoStreamNet
from twostream.training import features_of

CHUNK = 50  # pool clips per class rendered at a time: 500 clips of 40 frames at 112 px, about 1.3 GB


@dataclass(frozen=True)
class MiningReport:
    """What one mining pass saw and kept: clip counts, and the mean loss (cross-entropy of the
    true class, nats) of the pool and of the kept clips, per class in class order."""

    pool: int
    kept: int
    pool_loss: tuple[float, ...]
    kept_loss: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"pool_clips": self.pool, "kept_clips": self.kept,
                "pool_loss_per_class": [round(v, 4) for v in self.pool_loss],
                "kept_loss_per_class": [round(v, 4) for v in self.kept_loss]}


@torch.inference_mode()
def clip_losses(model: TwoStreamNet, clips: ClipSet, per_clip: int = 3, device: str = "cpu") -> np.ndarray:
    """Per clip, the mean over ``per_clip`` windows at the run-time stride (spread as
    train.py evaluate spreads them) of the fused model's cross-entropy for the clip's label:
    -> (N,) float64. ``model`` is in eval mode on ``device``."""
    contract = model.contract
    losses = np.zeros(len(clips))
    by_clip: dict[int, list[int]] = {}
    for ci, end in eval_windows(clips, contract, per_clip):
        by_clip.setdefault(ci, []).append(end)
    for ci, ends in by_clip.items():
        feats = features_of(model, clips.clips[ci], device=device)
        pairs = [gather_window(feats, end, contract, contract.stride) for end in ends]
        logits = model.head(torch.stack([s for s, _ in pairs]).to(device),
                            torch.stack([t for _, t in pairs]).to(device)).cpu()
        labels = torch.full((len(ends),), feats.label, dtype=torch.long)
        losses[ci] = float(torch.nn.functional.cross_entropy(logits.double(), labels))
    return losses


def mine_hard_clips(model: TwoStreamNet, render_chunk: Callable[[int], ClipSet], chunks: int,
                    keep_per_class: int, device: str = "cpu") -> tuple[ClipSet, MiningReport]:
    """Render ``chunks`` pools with ``render_chunk(j)`` (a ClipSet of generated clips, j = 0..),
    score them with ``model`` (clip_losses) and keep the ``keep_per_class`` highest-loss clips of
    each class over all chunks. -> (the kept clips, in class order; the report)."""
    if chunks < 1 or keep_per_class < 1:
        raise DataError(f"mining needs at least one chunk and one clip per class (got {chunks}, {keep_per_class})")
    was_training = model.training
    model.eval()
    heaps: dict[int, list] = {}  # class -> min-heap of (loss, order, clip, source): the worst stay
    pool_losses: dict[int, list[float]] = {}
    classes: tuple[str, ...] = ()
    order = 0
    for j in range(chunks):
        pool = render_chunk(j)
        classes = pool.classes
        for i, loss in enumerate(clip_losses(model, pool, device=device)):
            clip = pool.clips[i]
            source = pool.sources[i] if pool.sources else "generated"
            pool_losses.setdefault(clip.label, []).append(float(loss))
            heap = heaps.setdefault(clip.label, [])
            item = (float(loss), order, clip, f"mined {source}")
            order += 1  # ties never compare clips
            if len(heap) < keep_per_class:
                heapq.heappush(heap, item)
            else:
                heapq.heappushpop(heap, item)
        del pool
    model.train(was_training)
    kept = [item for c in sorted(heaps) for item in sorted(heaps[c], key=lambda x: -x[0])]
    labels = range(len(classes))
    report = MiningReport(
        pool=sum(len(v) for v in pool_losses.values()), kept=len(kept),
        pool_loss=tuple(float(np.mean(pool_losses.get(c, [np.nan]))) for c in labels),
        kept_loss=tuple(float(np.mean([x[0] for x in heaps.get(c, [])] or [np.nan])) for c in labels))
    return ClipSet(tuple(x[2] for x in kept), classes, tuple(x[3] for x in kept)), report
