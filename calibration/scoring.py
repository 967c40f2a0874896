"""Scoring window sets with a backend, as the runtime scores them: each frame through the
towers once (features cached per frame), then the head on T cached feature pairs at the
run-time stride tau. Calibration, the int8 part choice and the parity report all use it.

    tower features per clip   spatial, temporal (F, C, h, w) float32 (frames before L: zeros)
    head inputs per window    s, t (M, T, C, h, w) float32
    logits                    (M, K) float32
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.base import Backend
from twostream import seeds
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.data import ClipSet, eval_windows, generate_clips
from twostream.preprocess import WindowPlan, tower_inputs


@dataclass(frozen=True)
class WindowSet:
    """Preprocessed clips and the windows (clip index, newest frame) to score at the contract's
    stride. ``labelled``: clip labels are true classes."""

    clips: ClipSet
    pairs: tuple[tuple[int, int], ...]
    labelled: bool
    description: str

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.clips.clips[ci].label for ci, _ in self.pairs])


def generated_windows(contract: ModelContract, clips_per_class: int = 10, per_clip: int = 5,
                      seed: int = seeds.HELD_OUT, frames: int = 32) -> WindowSet:
    """Held-out gesture windows: ``clips_per_class`` x 10 classes x ``per_clip`` windows."""
    clips = generate_clips(contract, clips_per_class, seed, frames=frames)
    pairs = tuple(eval_windows(clips, contract, per_clip))
    return WindowSet(clips, pairs, True, f"generated: {clips_per_class} clips/class x {frames} frames, "
                                         f"seed {seed}, {per_clip} windows per clip")


def can_generate(contract: ModelContract) -> bool:
    """Generated windows carry the gesture classes: only a gesture model can be scored on them."""
    return tuple(contract.classes) == GESTURE_CLASSES


@dataclass(frozen=True)
class WindowFeatures:
    """Per clip, tower features of every frame: spatial and temporal (F, C, h, w); frames
    before L have no full flow stack and hold zeros."""

    spatial: tuple[np.ndarray, ...]
    temporal: tuple[np.ndarray, ...]


def _batched(call, inputs: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([np.array(call(inputs[i:i + batch])) for i in range(0, len(inputs), batch)])


def tower_features(backend: Backend, windows: WindowSet, batch: int = 32) -> WindowFeatures:
    """Run both towers of ``backend`` once over the frames of every clip."""
    length = backend.contract.stack_length
    spatial, temporal = [], []
    for clip in windows.clips.clips:
        rgb, stacks = tower_inputs(clip.rgb, clip.flow, range(length, len(clip.rgb)), length)
        s_out, t_out = _batched(backend.spatial, rgb, batch), _batched(backend.temporal, stacks, batch)
        spatial.append(np.concatenate([np.zeros((length, *s_out.shape[1:]), np.float32), s_out]))
        temporal.append(np.concatenate([np.zeros((length, *t_out.shape[1:]), np.float32), t_out]))
    return WindowFeatures(tuple(spatial), tuple(temporal))


def gather(features: WindowFeatures, windows: WindowSet, contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    """Head inputs of every window: spatial and temporal (M, T, C, h, w)."""
    plan = WindowPlan.of(contract)
    s, t = [], []
    for ci, end in windows.pairs:
        frames = plan.sampled(end)
        s.append(features.spatial[ci][frames])
        t.append(features.temporal[ci][frames])
    return np.stack(s), np.stack(t)


def head_logits(backend: Backend, s: np.ndarray, t: np.ndarray, batch: int = 64) -> np.ndarray:
    """(M, T, C, h, w) x 2 -> logits (M, K), in batches."""
    return np.concatenate([np.array(backend.head(s[i:i + batch], t[i:i + batch]))
                           for i in range(0, len(s), batch)])


@dataclass(frozen=True)
class Scored:
    """One backend's features and logits over a window set (reused between comparisons)."""

    features: WindowFeatures
    s: np.ndarray  # (M, T, C, h, w)
    t: np.ndarray
    logits: np.ndarray  # (M, K)


def score(backend: Backend, windows: WindowSet) -> Scored:
    features = tower_features(backend, windows)
    s, t = gather(features, windows, backend.contract)
    return Scored(features, s, t, head_logits(backend, s, t))


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """max |actual - reference| / max |reference|, per sample (axis 0), worst sample.
    Scaled per sample rather than per element: logits and features near zero would make
    an element-wise ratio meaningless."""
    n = reference.shape[0]
    diff = np.abs(actual.astype(np.float64) - reference).reshape(n, -1).max(axis=1)
    scale = np.maximum(np.abs(reference.astype(np.float64)).reshape(n, -1).max(axis=1), 1e-6)
    return float((diff / scale).max())
