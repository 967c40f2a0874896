"""The small immutable records stages hand each other.

Timestamps are ``time.monotonic()`` seconds (one clock for the whole process), so the
glass-to-label latency ``t_scored - t_due`` is measured, not guessed. Durations are in ms.

``t_due`` is when a frame SHOULD have arrived, ``t_capture`` when the capture stage got it:
for a live source (camera, URL) they are the same instant (the read returned); for a file or
folder played as live (--realtime) and for a generator the capture stage paces (the demo),
``t_due`` is ``t0 + k / fps``, frame k's place on the clock started at frame 0. Measuring from
``t_due`` keeps a capture that falls behind its source from hiding the delay: the old
measurement from ``t_capture`` read 25 ms while scoring drifted seconds behind the clock.

Pixel data never rides on these records past the flow stage: it lives in the preallocated rings,
addressed by ``seq`` (the position of a frame in the processed stream, gapless even when a
live source drops frames; ``index`` is the capture index and has gaps when frames are dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twostream.events import Event


@dataclass(frozen=True)
class Truth:
    """Ground truth a synthetic source knows: the gesture and which segment of it (the id
    changes at every gesture change, so a window is 'pure' when all its frames share one)."""

    label: str
    segment: int


@dataclass(frozen=True)
class Frame:
    """One captured frame. ``bgr`` (h, w, 3) uint8 in the source's own size. ``index`` is the
    source's frame number (gaps where the capture skipped frames to catch up)."""

    index: int
    t_capture: float
    t_due: float
    bgr: np.ndarray
    decode_ms: float
    truth: Truth | None = None


@dataclass(frozen=True)
class FlowField:
    """Frame ``seq`` is resized into the frame ring and its flow field (from frame seq-1) is in
    the flow ring. Field 0 of a stream is zero motion: it has no previous frame."""

    seq: int
    index: int
    t_capture: float
    t_due: float
    decode_ms: float
    flow_ms: float
    truth: Truth | None = None


@dataclass(frozen=True)
class TowerFeatures:
    """Frame ``field.seq`` is in the feature cache when ``computed`` (only frames some scored
    window samples are run through the towers)."""

    field: FlowField
    computed: bool
    spatial_ms: float
    temporal_ms: float


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds the newest frame of a window spent in each stage, its glass-to-label
    latency ``total`` (from when it was due to scored, queueing included) and its capture
    ``lag`` (how late the capture stage read it: t_capture - t_due; part of ``total``)."""

    decode: float
    flow: float
    spatial: float
    temporal: float
    head: float
    total: float
    lag: float

    LATENCY = ("decode", "flow", "spatial", "temporal", "head", "total")  # the JSON's latency_ms
    NAMES = LATENCY + ("lag",)

    def as_tuple(self) -> tuple[float, ...]:
        """The values in the order of NAMES."""
        return (self.decode, self.flow, self.spatial, self.temporal, self.head, self.total, self.lag)


@dataclass(frozen=True)
class Prediction:
    """The score of the window whose newest frame is ``index`` (capture index).

    ``logits`` and ``probs`` are (K,) float32 in the order of ``classes``; ``topk`` is
    ((label, probability), ...) best first. ``window_start`` is the capture index of the oldest
    frame the window reads (its oldest flow stack needs L frames before the oldest sampled
    frame). ``true_label`` (the newest frame's) and ``window_pure`` (all frames of the window in
    one gesture segment) are set only by sources that know the truth. ``event`` is the gesture
    event that starts (``end_frame`` None) or ends at this window, if any, and ``active`` the
    label of the event open after it (None: no gesture); see twostream.events.
    """

    index: int
    seq: int
    window_start: int
    t_capture: float
    t_scored: float
    classes: tuple[str, ...]
    logits: np.ndarray
    probs: np.ndarray
    topk: tuple[tuple[str, float], ...]
    times: StageTimes
    dropped: int
    true_label: str | None = None
    window_pure: bool | None = None
    event: Event | None = None
    active: str | None = None

    @property
    def label(self) -> str:
        return self.topk[0][0]

    @property
    def score(self) -> float:
        return self.topk[0][1]

    @property
    def latency_ms(self) -> float:
        return self.times.total

    @property
    def lag_ms(self) -> float:
        return self.times.lag
