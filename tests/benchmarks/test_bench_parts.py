"""The benchmarks package's pieces, without running a benchmark: looped clips and which stream
plays what, the latency log, batch-size histograms between two snapshots, memory summaries,
drops between two moments of an overload run."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.clips import SAME_CLIP_OFFSET, Clip, ClipSet, LoopedFrames, decode, load_clips
from benchmarks.measure import LatencyLog, batch_sizes, machine, rss_mb, rss_summary, spread
from benchmarks.soak import _drops_between
from realtime.batching import BatchStats, PartBatchStats
from twostream.errors import DataError


def frames(count: int) -> np.ndarray:
    """(count, 4, 4, 3) frames whose first pixel is their number."""
    stack = np.zeros((count, 4, 4, 3), np.uint8)
    stack[:, 0, 0, 0] = np.arange(count)
    return stack


def numbers(iterable, count: int) -> list[int]:
    return [int(f[0, 0, 0]) for f in itertools.islice(iterable, count)]


def test_looped_frames_wrap_and_each_iteration_starts_at_the_offset():
    looped = LoopedFrames(frames(5), offset=3)
    assert numbers(looped, 8) == [3, 4, 0, 1, 2, 3, 4, 0]
    assert numbers(looped, 3) == [3, 4, 0]  # a reopened source replays from its offset
    with pytest.raises(DataError):
        LoopedFrames(frames(1))


def test_each_stream_gets_its_own_clip_then_its_own_offset():
    clips = ClipSet((Clip("a", frames(100)), Clip("b", frames(60))), "test")
    played = [(clip.name, offset) for clip, offset in map(clips.clip_of, range(6))]
    assert played == [("a", 0), ("b", 0), ("a", SAME_CLIP_OFFSET), ("b", SAME_CLIP_OFFSET),
                      ("a", 2 * SAME_CLIP_OFFSET), ("b", 2 * SAME_CLIP_OFFSET % 60)]
    source = clips.source(3, 25.0, live=True)
    assert source.live and source.paced and source.fps == 25.0
    assert source.description == f"b from frame {SAME_CLIP_OFFSET}, looped"
    source.open()
    assert numbers((f for f, _ in iter(source.read, None)), 2) == [SAME_CLIP_OFFSET, SAME_CLIP_OFFSET + 1]
    file_like = clips.source(0, None, live=False)
    assert not file_like.live and not file_like.paced


def test_clips_decode_from_files_and_a_named_missing_folder_is_an_error(tmp_path):
    import cv2

    writer = cv2.VideoWriter(str(tmp_path / "x.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 24))
    for k in range(12):
        writer.write(np.full((24, 32, 3), k * 20, np.uint8))
    writer.release()
    assert decode(tmp_path / "x.avi", 5).frames.shape == (5, 24, 32, 3)
    loaded = load_clips(tmp_path, count=3, max_frames=8, size=(32, 24), seed=0)
    assert [c.name for c in loaded.clips] == ["x.avi"] and loaded.data.startswith("real: 1 clip(s)")
    generated = load_clips(None, 2, 6, (40, 30), 0, generated=True)
    assert generated.clips[0].frames.shape == (6, 30, 40, 3) and generated.data.startswith("generated")
    with pytest.raises(DataError, match="no such folder"):
        load_clips(tmp_path / "absent", 1, 5, (32, 24), 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no video files"):
        load_clips(tmp_path / "empty", 1, 5, (32, 24), 0)


def prediction(t_scored: float, total: float, lag: float):
    return SimpleNamespace(t_scored=t_scored, times=SimpleNamespace(total=total, lag=lag))


def test_the_latency_log_keeps_what_fits_and_selects_by_time():
    log = LatencyLog(3)
    for k in range(5):
        log.add(prediction(10.0 + k, 20.0 + k, 1.0))
    assert log.count == 3 and log.overflow == 2
    rows = log.between(10.5, 12.0)
    assert rows[:, 0].tolist() == [11.0] and rows[:, 1].tolist() == [21.0]
    assert spread(log.between(0, 100)[:, 1]) == {"p50": 21.0, "p95": 21.9, "max": 22.0}
    assert spread(np.zeros(0)) == {"p50": None, "p95": None, "max": None}


def part(name: str, sizes: tuple[int, ...]) -> PartBatchStats:
    calls = sum(sizes)
    items = sum((n + 1) * c for n, c in enumerate(sizes))
    return PartBatchStats(name, calls, items, sizes, items / calls if calls else 0.0, 0, 0.0, 0.0, 0.0, 0.0)


def test_batch_sizes_count_only_the_calls_between_the_snapshots():
    before = BatchStats(4, 2.0, (part("spatial", (5, 0, 0, 0)), part("head", (0, 0, 0, 0))))
    after = BatchStats(4, 2.0, (part("spatial", (7, 3, 0, 1)), part("head", (0, 0, 0, 0))))
    sizes = batch_sizes(before, after)
    assert sizes["spatial"] == {"calls": 6, "mean": round((2 + 6 + 4) / 6, 3), "max": 4,
                                "histogram": {"1": 2, "2": 3, "4": 1}}
    assert sizes["head"] == {"calls": 0, "mean": None, "max": None, "histogram": {}}


def test_memory_summary_and_machine():
    summary = rss_summary([(0.0, 10, 100.0), (5.0, 20, 90.5), (10.0, 30, 120.0), (15.0, 40, 110.0)])
    assert (summary["start_mb"], summary["min_mb"], summary["max_mb"], summary["end_mb"]) == (100.0, 90.5, 120.0, 110.0)
    assert summary["growth_mb"] == 10.0 and summary["samples"][1] == [5.0, 20, 90.5]
    assert rss_summary([(0.0, 0, None)])["available"] is False
    now = rss_mb()
    assert now is None or now > 10
    assert machine()["cores"] >= 1


def test_drops_between_two_moments_read_the_last_sample_before_each():
    timeline = [(0.0, 0), (1.0, 4), (2.0, 9), (3.0, 9), (4.0, 15)]
    assert _drops_between(timeline, 0.0, 4.0) == 15
    assert _drops_between(timeline, 1.5, 3.5) == 5  # 9 at 3.5 (sample at 3.0) minus 4 at 1.5
    assert _drops_between(timeline, 2.0, 3.0) == 0
