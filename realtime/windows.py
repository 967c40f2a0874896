"""Which frames a streaming run scores, and which frames it runs through the towers.

Positions are ``seq`` numbers (gapless processed-frame counts from the start of the stream).
A window ending at frame e samples T frames at stride tau, oldest first:
    e - (T-1)*tau, ..., e - tau, e
and sampled frame s reads RGB of s and the flow fields s-L+1 .. s (field i = flow(i-1 -> i)),
so it needs frames s-L .. s. Field 0 has no previous frame and is not real motion, hence the
first complete window ends at e = (T-1)*tau + L. Windows are scored every ``hop`` frames from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from realtime.errors import PipelineError
from twostream.contract import ModelContract


@dataclass(frozen=True)
class WindowPlan:
    segments: int  # T
    stride: int  # tau
    stack_length: int  # L
    hop: int = 1

    def __post_init__(self) -> None:
        if min(self.segments, self.stride, self.stack_length, self.hop) < 1:
            raise PipelineError(f"window plan needs T, tau, L and hop >= 1, got {self}")

    @classmethod
    def from_contract(cls, contract: ModelContract, hop: int = 1) -> "WindowPlan":
        return cls(contract.num_segments, contract.stride, contract.stack_length, hop)

    @property
    def first_end(self) -> int:
        """Seq of the newest frame of the first complete window."""
        return (self.segments - 1) * self.stride + self.stack_length

    @property
    def span(self) -> int:
        """Frames one window reads, oldest flow input to newest frame."""
        return self.first_end + 1

    @property
    def reach(self) -> int:
        """Frames from the oldest sampled frame to the newest, inclusive (feature history)."""
        return (self.segments - 1) * self.stride + 1

    @property
    def offsets(self) -> np.ndarray:
        """(T,) int64 offsets of the sampled frames from the newest, oldest first."""
        return np.arange(-(self.segments - 1) * self.stride, 1, self.stride, dtype=np.int64)

    def is_scored(self, seq: int) -> bool:
        return seq >= self.first_end and (seq - self.first_end) % self.hop == 0

    def needs_features(self, seq: int) -> bool:
        """True if some scored window samples frame ``seq`` (then its towers run, once)."""
        return any(self.is_scored(seq + j * self.stride) for j in range(self.segments))

    def sampled(self, end: int) -> np.ndarray:
        """(T,) seqs of the frames the window ending at ``end`` samples, oldest first."""
        return self.offsets + end
