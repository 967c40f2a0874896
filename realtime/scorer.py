"""The incremental scorer's last step: every ``hop`` frames, the fusion head scores the newest
window of T cached feature pairs at stride tau, the event detector (the model contract's event
policy) reads its probabilities, and a Prediction is published.

Exactly equal (to float tolerance) to the offline forward pass over the same frames:
tests/realtime/test_streaming_parity.py checks it for hop 1 and hop tau.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from engines.base import Backend
from realtime.messages import Prediction, StageTimes, TowerFeatures
from realtime.rings import FeatureCache
from realtime.stage import Control, ProcessingStage
from realtime.channel import Channel
from twostream.events import EventDetector
from twostream.preprocess import WindowPlan


@dataclass(frozen=True)
class ScorerSettings:
    """``hop``: score every hop-th frame (1: every frame). ``topk``: labels per prediction."""

    hop: int = 1
    topk: int = 3


def softmax(logits: np.ndarray) -> np.ndarray:
    """(K,) logits -> (K,) float32 probabilities."""
    shifted = np.exp(logits.astype(np.float64) - float(np.max(logits)))
    return (shifted / shifted.sum()).astype(np.float32)


class _WindowTruth:
    """Capture index and truth segment of the last ``span`` frames, preallocated: enough to
    name a window's oldest frame and to tell whether all its frames show one gesture."""

    def __init__(self, span: int):
        self.span = span
        self.index = np.zeros(span, np.int64)
        self.segment = np.full(span, -1, np.int64)  # -1: the source knows no truth

    def record(self, seq: int, index: int, segment: int | None) -> None:
        slot = seq % self.span
        self.index[slot] = index
        self.segment[slot] = -1 if segment is None else segment

    def window_start(self, end: int) -> int:
        return int(self.index[(end - self.span + 1) % self.span])

    def pure(self) -> bool | None:
        """All of the last ``span`` frames in one known segment; None without truth."""
        if self.segment.min() < 0:
            return None
        return bool(self.segment.min() == self.segment.max())


class HeadStage(ProcessingStage[TowerFeatures, None]):
    """TowerFeatures -> (every hop frames) Prediction, handed to ``publish``."""

    def __init__(self, control: Control, inbox: Channel[TowerFeatures], backend: Backend,
                 cache: FeatureCache, plan: WindowPlan, settings: ScorerSettings,
                 publish: Callable[[Prediction], None], dropped: Callable[[], int]):
        super().__init__("head", control, inbox, None)
        self.backend, self.cache, self.plan, self.settings = backend, cache, plan, settings
        self._publish, self._dropped = publish, dropped
        self._classes = tuple(backend.contract.classes)
        self._truth = _WindowTruth(plan.span)
        # O(n) per window on (K,) probabilities: nothing next to the head call.
        self._events = EventDetector(backend.contract.events, self._classes)
        self._s = np.zeros((1, plan.segments, *cache.spatial.shape[1:]), np.float32)  # (1, T, C, h, w), reused
        self._t = np.zeros((1, plan.segments, *cache.temporal.shape[1:]), np.float32)  # (1, T, C', h', w')

    def process(self, item: TowerFeatures) -> None:
        field = item.field
        seq = field.seq
        truth = field.truth
        self._truth.record(seq, field.index, truth.segment if truth else None)
        if not self.plan.is_scored(seq):
            return None
        started = time.perf_counter()
        self.cache.gather(self.plan.sampled(seq), self._s[0], self._t[0])
        logits = np.array(self.backend.head(self._s, self._t)[0], np.float32)  # own copy
        head_ms = (time.perf_counter() - started) * 1000.0
        t_scored = time.monotonic()
        probs = softmax(logits)
        order = np.argsort(-probs)[: self.settings.topk]
        event = self._events.push(field.index, probs)
        # Glass to label from when the frame was due, so a capture that fell behind its source
        # shows in the latency rather than vanishing into a late t_capture.
        times = StageTimes(field.decode_ms, field.flow_ms, item.spatial_ms, item.temporal_ms, head_ms,
                           (t_scored - field.t_due) * 1000.0, (field.t_capture - field.t_due) * 1000.0)
        self._publish(Prediction(
            index=field.index, seq=seq, window_start=self._truth.window_start(seq),
            t_capture=field.t_capture, t_scored=t_scored, classes=self._classes, logits=logits,
            probs=probs, topk=tuple((self._classes[i], float(probs[i])) for i in order), times=times,
            dropped=self._dropped(), true_label=truth.label if truth else None,
            window_pure=self._truth.pure(), event=event, active=self._events.active))
        return None
