"""Validation score streams for tuning the event policy: a generated gesture stream (known
truth segments) scored offline, window by window at hop 1, exactly as the runtime scores it.

The frames go through the one preprocessing implementation (twostream.preprocess), the towers
run once per frame and the head once per window, as in the runtime's streaming scorer (whose
logits tests/realtime/test_streaming_parity.py checks against this same offline path).
"""

from __future__ import annotations

import numpy as np
import torch

from twostream import seeds
from twostream.events import ScoreStream, Segment, segments_of
from twostream.gestures import GestureStream
from twostream.data import Clip, ClipSet
from twostream.model import TwoStreamNet
from twostream.preprocess import FlowSpec, WindowPlan, preprocess_clip
from twostream.training import clip_features


def generated_stream(seed: int, frames: int, size: tuple[int, int],
                     backdrop_factory=None) -> tuple[np.ndarray, tuple[Segment, ...]]:
    """GestureStream(seed) at ``size`` (W, H), over the generator's own scenes or
    ``backdrop_factory``'s (twostream.backdrops): every gesture that starts within the first
    ``frames`` frames, each one whole, so no truth segment is a stub the cut left too short to
    recognise. -> BGR (F, H, W, 3) uint8 with F >= ``frames``, and the truth: one Segment per
    gesture (two gestures of one class in a row are two segments)."""
    taken = []
    for item in GestureStream(seed=seed, size=size, backdrop_factory=backdrop_factory):
        if len(taken) >= frames and item.segment != taken[-1].segment:
            break
        taken.append(item)
    truth = segments_of([f.label for f in taken], [f.segment for f in taken])
    return np.stack([f.bgr for f in taken]), tuple(truth)


@torch.inference_mode()
def score_stream(model: TwoStreamNet, frames_bgr: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Every hop-1 window of a stream: -> (window ends (W,) int64, probabilities (W, K) float32)."""
    contract = model.contract
    rgb, flow = preprocess_clip(frames_bgr, FlowSpec.of(contract))
    plan = WindowPlan.of(contract)
    ends = np.arange(plan.first_end, len(rgb), dtype=np.int64)
    if not len(ends):
        return ends, np.zeros((0, contract.num_classes), np.float32)
    # The towers once per frame, as training caches them (frames before L hold zeros).
    features = clip_features(model, ClipSet((Clip(rgb, flow, -1),), contract.classes), batch, desc="score stream")[0]
    spatial, temporal = features.spatial, features.temporal
    probs = []
    for i in range(0, len(ends), batch):
        sampled = torch.from_numpy(np.stack([plan.sampled(e) for e in ends[i:i + batch]]))  # (N, T)
        logits = model.head(spatial[sampled], temporal[sampled])
        probs.append(torch.softmax(logits.double(), 1).float().numpy())
    return ends, np.concatenate(probs)


def validation_streams(model: TwoStreamNet, count: int = 2, frames: int = 1500,
                       size: tuple[int, int] = (160, 120), seed: int = seeds.VALIDATION,
                       backdrop_factory=None) -> list[ScoreStream]:
    """``count`` generated streams (seeds ``seed``, ``seed`` + 1, ...: the validation seeds,
    never the held-out ones) of ``frames`` frames, scored by ``model``; with a
    ``backdrop_factory`` every second stream plays over its real backgrounds (training files
    only: the validation files are kept for the figures the field test reports)."""
    out = []
    for i in range(count):
        bgr, truth = generated_stream(seed + i, frames, size, backdrop_factory if i % 2 else None)
        ends, probs = score_stream(model, bgr)
        out.append(ScoreStream(ends, probs, truth))
    return out
