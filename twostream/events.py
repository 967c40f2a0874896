"""Gesture events over a stream of window scores: the decision layer users actually want.

A window *votes* for class c when c is its arg-max and its probability is >= ``threshold``
(the ``background`` class, "nothing happening", never votes). An event of class c *starts*
when at least ``k`` of the last ``n`` windows voted for c, and *ends* once c has had no vote
for ``end_after`` consecutive windows. After it ends, c may not start again for ``cooldown``
windows; other classes may (back-to-back gestures of different kinds are real, a repeat of
the same one inside ~0.3 s is almost always the tail of the one just reported). An event that
has run ``max_length`` windows ends there even while c still votes, and c may start again
without the cool-down, on ``k`` fresh votes: a gesture repeated without a pause (two swipes, a
long wave) is reported once per repetition rather than as one long event.

One event is open at a time, and a window carries at most one transition: the window that
ends an event never starts the next one (the next window can, its votes are still there), so
a runtime publishes at most one ``Event`` per window.

Counts are in scored windows: the defaults assume hop 1 at ~25 fps (one window per frame).

Pure numpy and the standard library: the runtime runs ``EventDetector``; training tools tune
the policy (``tune_policy``) and evaluation reuses ``match_events``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from twostream.errors import ContractMismatch

DEFAULT_BACKGROUND = "no_gesture"


@dataclass(frozen=True)
class EventPolicy:
    """When windows become events. ``background``: the class that is never an event (None:
    every class is an event class).

    Defaults, at hop 1 and ~25 fps (one window per 40 ms), for gestures of ~1.3-1.9 s:
    - threshold 0.6: above the top-1 of a two-way tie, so a window torn between two gestures
      does not vote;
    - k 4 of n 6: 4 votes within 6 windows (0.24 s) is ~0.16 s of agreement: fast enough to
      report a gesture while it is still going, and it absorbs 2 stray windows, so one or two
      confident misfires at a gesture boundary never make an event;
    - end_after 4: 0.16 s of silence ends it; a gesture's own wobbles (a window or two taken for
      a neighbour class) do not split it in two;
    - cooldown 8: 0.32 s in which the same class cannot restart, so the trailing windows of a
      gesture (which still overlap it: a window spans ~0.9 s) do not report it twice;
    - max_length None: an event lasts as long as its class votes (``tune-events`` may choose a
      length, in windows, after which a continuing vote is reported as a repetition).
    """

    background: str | None = DEFAULT_BACKGROUND
    threshold: float = 0.6
    k: int = 4
    n: int = 6
    end_after: int = 4
    cooldown: int = 8
    max_length: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.threshold <= 1.0:
            problems.append(f"threshold must be in (0, 1], got {self.threshold}")
        if not 1 <= self.k <= self.n:
            problems.append(f"need 1 <= k <= n, got k={self.k}, n={self.n}")
        if self.end_after < 1 or self.cooldown < 0:
            problems.append(f"need end_after >= 1 and cooldown >= 0, got {self.end_after}, {self.cooldown}")
        if self.max_length is not None and self.max_length < 1:
            problems.append(f"max_length must be >= 1 or None, got {self.max_length}")
        if problems:
            raise ContractMismatch("invalid event policy: " + "; ".join(problems))

    @classmethod
    def default_for(cls, classes: Sequence[str]) -> "EventPolicy":
        """The defaults, with ``no_gesture`` as background only if the model has that class."""
        return cls(background=DEFAULT_BACKGROUND if DEFAULT_BACKGROUND in classes else None)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EventPolicy":
        if not isinstance(data, dict):
            raise ContractMismatch(f"event policy must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ContractMismatch(f"event policy has fields this code does not know: {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:  # a value of the wrong type, compared in __post_init__
            raise ContractMismatch(f"invalid event policy {data}: {exc}") from exc


@dataclass(frozen=True)
class Event:
    """One gesture. Frames are the newest frames of windows (a Prediction's ``index``):
    ``start_frame`` the first window of the votes that started it, ``end_frame`` its last
    voting window (None while it is open), ``peak_score`` / ``peak_frame`` its most confident
    window so far. An Event with ``end_frame`` None announces a start; with it set, an end."""

    label: str
    start_frame: int
    end_frame: int | None
    peak_score: float
    peak_frame: int

    @property
    def kind(self) -> str:
        """"start" or "end": what the window carrying this record reports."""
        return "start" if self.end_frame is None else "end"


@dataclass(frozen=True)
class Segment:
    """A stretch of ground truth: frames ``start`` .. ``end`` inclusive show ``label``."""

    label: str
    start: int
    end: int


class EventDetector:
    """Feed it one window at a time; it says when an event starts or ends. O(n) per window.

    ``active`` is the open event's label, or None: no gesture."""

    def __init__(self, policy: EventPolicy, classes: Sequence[str]):
        if policy.background is not None and policy.background not in classes:
            raise ContractMismatch(f"event background {policy.background!r} is not a class of the model")
        self.policy, self.classes = policy, tuple(classes)
        self._background = -1 if policy.background is None else self.classes.index(policy.background)
        self._votes: deque[tuple[int, int, float]] = deque(maxlen=policy.n)  # (frame, class or -1, p)
        self._open: Event | None = None
        self._last_vote = 0  # frame of the open event's newest vote
        self._silent = 0  # windows since the open event's class last voted
        self._window = -1  # windows pushed so far, minus one: the current window's number
        self._opened_at = 0  # the window that started the open event
        self._blocked_until: dict[int, int] = {}  # class -> last window of its cool-down

    @property
    def active(self) -> str | None:
        return None if self._open is None else self._open.label

    def push(self, frame: int, probs: np.ndarray) -> Event | None:
        """One scored window: ``frame`` its newest frame, ``probs`` (K,) its probabilities.
        Returns the Event that starts or ends at this window, else None."""
        best = int(np.argmax(probs))
        p = float(probs[best])
        vote = best if p >= self.policy.threshold and best != self._background else -1
        self._votes.append((frame, vote, p))
        self._window += 1
        if self._open is not None:
            return self._continue(frame, vote, p)
        return self._maybe_start()

    def finish(self) -> Event | None:
        """The stream ended: close the open event (ended at its last vote), if any."""
        if self._open is None:
            return None
        return self._end()

    def _continue(self, frame: int, vote: int, p: float) -> Event | None:
        current = self.classes.index(self._open.label)
        if vote == current:
            self._silent, self._last_vote = 0, frame
            if p > self._open.peak_score:
                self._open = dataclasses.replace(self._open, peak_score=p, peak_frame=frame)
            limit = self.policy.max_length
            if limit is not None and self._window - self._opened_at + 1 >= limit:
                return self._end(repeat=True)
            return None
        self._silent += 1
        return self._end() if self._silent >= self.policy.end_after else None

    def _end(self, repeat: bool = False) -> Event:
        """Close the open event; its class cools down unless the event ended for being long
        (``repeat``: the class still votes, and what follows is its repetition, counted from
        fresh votes so the next event starts after this one)."""
        ended = dataclasses.replace(self._open, end_frame=self._last_vote)
        if repeat:
            self._votes.clear()
        else:
            self._blocked_until[self.classes.index(ended.label)] = self._window + self.policy.cooldown
        self._open = None
        return ended

    def _maybe_start(self) -> Event | None:
        counts = np.bincount([v for _, v, _ in self._votes if v >= 0], minlength=len(self.classes))
        candidates = [c for c in np.argsort(-counts, kind="stable")
                      if counts[c] >= self.policy.k and self._blocked_until.get(int(c), -1) < self._window]
        if not candidates:
            return None
        c = int(candidates[0])
        mine = [(f, p) for f, v, p in self._votes if v == c]
        peak_frame, peak = max(mine, key=lambda fp: fp[1])
        self._open = Event(self.classes[c], mine[0][0], None, peak, peak_frame)
        self._last_vote, self._silent, self._opened_at = mine[-1][0], 0, self._window
        return self._open


def detect_events(policy: EventPolicy, classes: Sequence[str], frames: Sequence[int],
                  probs: np.ndarray) -> list[Event]:
    """Every finished event of one stream of windows: ``frames`` (W,) newest frames,
    ``probs`` (W, K). An event still open at the end is closed at its last vote."""
    detector = EventDetector(policy, classes)
    events = [e for f, p in zip(frames, probs) if (e := detector.push(int(f), p)) is not None and e.end_frame is not None]
    last = detector.finish()
    return events + ([last] if last is not None else [])


def segments_of(labels: Sequence[str], ids: Sequence[int] | None = None) -> list[Segment]:
    """Per-frame truth -> Segments (frames numbered 0, 1, ...). ``labels`` one per frame;
    ``ids``, when the source numbers its gestures, one per frame too: a new id starts a new
    segment even under the same label (two swipes in a row are two gestures to find), else
    runs of equal labels are segments."""
    out: list[Segment] = []
    start = 0
    for (label, _), group in itertools.groupby(zip(labels, labels if ids is None else ids)):
        length = len(list(group))
        out.append(Segment(label, start, start + length - 1))
        start += length
    return out


def match_events(events: Iterable[Event], segments: Sequence[Segment],
                 background: str | None = None) -> tuple[int, int, int]:
    """-> (tp, fp, fn). An event is a true positive when it overlaps a not yet matched truth
    segment of its own label (frames inclusive; an open event counts up to its peak frame);
    each segment is matched at most once, earliest first. Segments labelled ``background``
    have no event to find: they count as neither a hit nor a miss."""
    wanted = [s for s in segments if s.label != background]
    matched = [False] * len(wanted)
    tp = fp = 0
    for event in sorted(events, key=lambda e: e.start_frame):
        end = event.end_frame if event.end_frame is not None else event.peak_frame
        hit = next((i for i, s in enumerate(wanted) if not matched[i] and s.label == event.label
                    and event.start_frame <= s.end and s.start <= end), None)
        if hit is None:
            fp += 1
        else:
            matched[hit] = True
            tp += 1
    return tp, fp, len(wanted) - tp


@dataclass(frozen=True)
class ScoreStream:
    """Validation windows of one stream: ``frames`` (W,) newest frame of each window,
    ``probs`` (W, K) their probabilities, ``truth`` the stream's ground-truth segments."""

    frames: np.ndarray
    probs: np.ndarray
    truth: tuple[Segment, ...]


def evaluate_policy(policy: EventPolicy, classes: Sequence[str], streams: Sequence[ScoreStream]) -> dict:
    """Event precision, recall and F1 of ``policy`` summed over ``streams``."""
    tp = fp = fn = 0
    for stream in streams:
        events = detect_events(policy, classes, stream.frames, stream.probs)
        a, b, c = match_events(events, stream.truth, policy.background)
        tp, fp, fn = tp + a, fp + b, fn + c
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4)}


THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
K_OF_N = ((1, 1), (2, 3), (3, 4), (3, 5), (4, 6), (5, 8), (6, 8))
# None, or 1.6-2.4 s at hop 1 and 25 fps: a single gesture of 1.3-1.9 s votes for about that
# long, so a shorter limit would split one gesture in two.
MAX_LENGTHS = (None, 40, 50, 60)


def tune_policy(streams: Sequence[ScoreStream], classes: Sequence[str], base: EventPolicy, *,
                thresholds: Sequence[float] = THRESHOLDS,
                k_of_n: Sequence[tuple[int, int]] = K_OF_N,
                max_lengths: Sequence[int | None] = MAX_LENGTHS) -> tuple[EventPolicy, dict]:
    """Grid search of threshold, (k, n) and max_length on *validation* streams for the best
    event F1 (ties: higher precision, then the point nearest ``base``: where the data cannot
    tell, keep what was there); ``base`` gives the rest (background, end_after, cooldown).
    -> (policy, {"chosen": metrics, "grid": size})."""
    best, best_key, best_metrics = base, None, None
    grid = list(itertools.product(thresholds, k_of_n, max_lengths))
    for threshold, (k, n), max_length in grid:
        policy = dataclasses.replace(base, threshold=threshold, k=k, n=n, max_length=max_length)
        metrics = evaluate_policy(policy, classes, streams)
        distance = (abs(threshold - base.threshold) * 10 + abs(k - base.k) + abs(n - base.n)
                    + (max_length != base.max_length))
        key = (metrics["f1"], metrics["precision"], -distance)
        if best_key is None or key > best_key:
            best, best_key, best_metrics = policy, key, metrics
    return best, {"chosen": best_metrics, "grid": len(grid)}
