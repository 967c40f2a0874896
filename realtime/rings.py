"""Preallocated, bounded storage the stages share: frames, flow fields and tower features.

Nothing here grows per frame: every array is allocated once, at pipeline build time.

The frame and flow rings are written by the flow stage and read by the tower stage, which may
lag by at most the channel between them (plus one item in each thread's hands). The pipeline
sizes each ring as the history a read needs plus that lead, so a slot is never overwritten
while it can still be read; ``window`` still checks the range and raises on a sizing bug
rather than returning another frame's pixels.

Frame and flow rings live on the host (numpy) or, given a torch ``device``, on that device
(torch tensors: the GPU flow stage writes there and the towers read views there, with no host
round trip). Same slots, same mirroring, same checks; a window is a view either way.
"""

from __future__ import annotations

import numpy as np
import torch

from realtime.errors import PipelineError
from twostream.preprocess import stack_fields


class Ring:
    """``capacity`` slots of ``slot_shape``, addressed by a gapless sequence number.

    Mirrored: each slot is stored twice (at ``seq % capacity`` and that plus ``capacity``), so
    any run of up to ``capacity`` consecutive slots is one contiguous view: a 2L-channel flow
    stack is a slice, not a gather copy.

    uint8 slots; ``device`` None: a numpy array; a torch device ("cpu", "cuda"): a torch
    tensor there, written from tensors on that device.
    """

    def __init__(self, capacity: int, slot_shape: tuple[int, ...], name: str = "ring", device: str | None = None):
        if capacity < 1:
            raise PipelineError(f"{name}: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.name = name
        self.device = device
        shape = (2 * capacity, *slot_shape)
        self._data = np.zeros(shape, np.uint8) if device is None else torch.zeros(shape, dtype=torch.uint8,
                                                                                   device=device)
        self._newest = -1

    @property
    def newest(self) -> int:
        """Sequence number of the last slot written (-1 before the first write)."""
        return self._newest

    def write(self, seq: int, value: np.ndarray | torch.Tensor) -> None:
        """Store ``value`` (slot_shape uint8; a tensor on the ring's device for a device ring)
        as ``seq`` = newest + 1. On CUDA the copies are queued on the writer's stream: a reader
        on another stream must wait for it (realtime.deviceflow synchronises before handing
        ``seq`` on)."""
        if seq != self._newest + 1:
            raise PipelineError(f"{self.name}: write of seq {seq} after {self._newest} (writes must be consecutive)")
        slot = seq % self.capacity
        self._data[slot] = value
        self._data[slot + self.capacity] = value
        self._newest = seq  # published last: a reader that sees seq also sees its pixels

    def window(self, last: int, count: int) -> np.ndarray | torch.Tensor:
        """View (count, *slot_shape) of seqs last-count+1 .. last, oldest first (numpy: read-only;
        a tensor cannot be marked so: do not write into it)."""
        first = last - count + 1
        oldest_held = max(0, self._newest - self.capacity + 1)
        if count > self.capacity or first < oldest_held or last > self._newest:
            raise PipelineError(f"{self.name}: seqs {first}..{last} requested, but it holds "
                                f"{oldest_held}..{self._newest} (ring too small for the reader's lag?)")
        start = first % self.capacity
        view = self._data[start:start + count]
        if isinstance(view, np.ndarray):
            view.flags.writeable = False
        return view


class FrameRing(Ring):
    """Resized RGB frames, channel-first uint8 (3, H, W) per slot."""

    def __init__(self, capacity: int, size: tuple[int, int], device: str | None = None):
        super().__init__(capacity, (3, *size), "frame ring", device)

    def rgb(self, seq: int) -> np.ndarray | torch.Tensor:
        """(3, H, W) uint8 view of frame ``seq``."""
        return self.window(seq, 1)[0]


class FlowRing(Ring):
    """Quantised flow fields, channel-first uint8 (C, H, W) per slot; slot ``seq`` holds
    flow(frame seq-1 -> frame seq), and with ``channels`` 4 (a bidirectional contract,
    twostream.preprocess.field_channels) flow(frame seq -> frame seq-1) after it."""

    def __init__(self, capacity: int, size: tuple[int, int], device: str | None = None, channels: int = 2):
        super().__init__(capacity, (channels, *size), "flow ring", device)

    def stack(self, seq: int, length: int) -> np.ndarray | torch.Tensor:
        """(2L, H, W) uint8 stack of fields seq-L+1 .. seq (twostream.preprocess.stack_fields of
        a contiguous window: a view, no copy, for forward slots; a copy for bidirectional)."""
        return stack_fields(self.window(seq, length))


class FeatureCache:
    """Tower features per frame, float32 (C, h, w) for the spatial and (C', h', w') for the
    temporal tower (``temporal_shape``, default ``shape``: they differ only when the temporal
    tower has a backbone of its own), in slot ``seq % capacity``. Written by the tower stage,
    gathered at stride tau by the head."""

    def __init__(self, capacity: int, shape: tuple[int, int, int], temporal_shape: tuple[int, int, int] | None = None):
        self.capacity = capacity
        self.spatial = np.zeros((capacity, *shape), np.float32)
        self.temporal = np.zeros((capacity, *(temporal_shape or shape)), np.float32)
        self._seq = np.full(capacity, -1, np.int64)  # which frame each slot holds

    def put(self, seq: int, spatial: np.ndarray, temporal: np.ndarray) -> None:
        """Store frame ``seq``'s features, (C, h, w) and (C', h', w')."""
        slot = seq % self.capacity
        self._seq[slot] = -1  # invalid while half-written
        self.spatial[slot] = spatial
        self.temporal[slot] = temporal
        self._seq[slot] = seq

    def gather(self, seqs: np.ndarray, out_spatial: np.ndarray, out_temporal: np.ndarray) -> None:
        """Copy the features of frames ``seqs`` (T,) into ``out_*`` (T, C, h, w) / (T, C', h', w'), without
        allocating. Raises PipelineError if a frame is missing or was overwritten meanwhile."""
        slots = seqs % self.capacity
        self._check(seqs, slots)
        np.take(self.spatial, slots, axis=0, out=out_spatial)
        np.take(self.temporal, slots, axis=0, out=out_temporal)
        self._check(seqs, slots)  # still the same frames after the copy: no torn read

    def _check(self, seqs: np.ndarray, slots: np.ndarray) -> None:
        held = self._seq[slots]
        if not np.array_equal(held, seqs):
            raise PipelineError(f"feature cache: frames {seqs.tolist()} wanted, slots hold {held.tolist()}")
