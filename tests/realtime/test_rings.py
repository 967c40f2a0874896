"""Rings and the feature cache: preallocated, contiguous stacks, loud on misuse."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.errors import PipelineError
from realtime.rings import FeatureCache, FlowRing, FrameRing, Ring


def _field(seq: int, size=(4, 5)) -> np.ndarray:
    """A recognisable (2, H, W) uint8 field for frame ``seq``: x plane, y plane."""
    field = np.empty((2, *size), np.uint8)
    field[0] = seq % 256
    field[1] = (seq * 7 + 1) % 256
    return field


@pytest.mark.parametrize("capacity", [3, 7, 12])
def test_flow_stack_interleaves_x_and_y_oldest_first_across_wraparound(capacity):
    length = 3
    ring = FlowRing(capacity, (4, 5))
    fields = [_field(seq) for seq in range(40)]
    for seq, field in enumerate(fields):
        ring.write(seq, field)
        if seq >= length - 1:
            expected = np.concatenate(fields[seq - length + 1:seq + 1])  # x, y of each, oldest first
            stack = ring.stack(seq, length)
            np.testing.assert_array_equal(stack, expected)
            assert stack.base is not None  # a view into the ring, no copy


def test_views_are_read_only_and_storage_never_grows():
    ring = FrameRing(4, (6, 6))
    storage = ring._data
    for seq in range(100):
        ring.write(seq, np.full((3, 6, 6), seq % 256, np.uint8))
    assert ring._data is storage and storage.shape == (8, 3, 6, 6)
    view = ring.rgb(99)
    assert view[0, 0, 0] == 99
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1


def test_reading_what_was_overwritten_or_not_written_raises():
    ring = Ring(4, (2,), name="test ring")
    for seq in range(10):
        ring.write(seq, np.array([seq, seq]))
    ring.window(9, 4)  # 6..9: held
    with pytest.raises(PipelineError, match="test ring"):
        ring.window(9, 5)  # 5 was overwritten
    with pytest.raises(PipelineError):
        ring.window(10, 1)  # not written yet


def test_writes_must_be_consecutive():
    ring = Ring(4, (1,))
    ring.write(0, np.zeros(1))
    with pytest.raises(PipelineError, match="consecutive"):
        ring.write(2, np.zeros(1))


def test_feature_cache_gathers_at_stride_without_allocating_and_detects_stale_slots():
    cache = FeatureCache(8, (2, 1, 1))
    for seq in range(20):
        cache.put(seq, np.full((2, 1, 1), seq, np.float32), np.full((2, 1, 1), -seq, np.float32))
    out_s = np.zeros((3, 2, 1, 1), np.float32)
    out_t = np.zeros_like(out_s)
    cache.gather(np.array([13, 16, 19]), out_s, out_t)
    np.testing.assert_array_equal(out_s[:, 0, 0, 0], [13, 16, 19])
    np.testing.assert_array_equal(out_t[:, 0, 0, 0], [-13, -16, -19])
    with pytest.raises(PipelineError, match="feature cache"):
        cache.gather(np.array([10, 13, 16]), out_s, out_t)  # 10 was overwritten by 18
