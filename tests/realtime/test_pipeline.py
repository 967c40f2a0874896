"""The wired pipeline: what it scores, how it stops, how errors surface, what it measures,
and that a long run does not grow memory."""

from __future__ import annotations

import itertools
import threading
import tracemalloc

import cv2
import numpy as np
import pytest

from engines.torch_backend import TorchBackend
from realtime.capture import CaptureSettings
from realtime.flowstage import FlowSettings
from realtime.messages import Truth
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.scorer import ScorerSettings
from realtime.sources import ArraySource, ImageFolderSource
from twostream.errors import ContractMismatch, SourceError


@pytest.fixture(scope="module")
def backend(random_model):
    return TorchBackend(random_model)


def _pipeline_threads() -> set[str]:
    return {t.name for t in threading.enumerate()} & {"capture", "flow", "towers", "head"}


def test_hop_two_scores_every_other_frame_with_the_right_window(backend, short_clip):
    frames, labels, segments = short_clip
    truths = [Truth(label, segment) for label, segment in zip(labels, segments)]
    settings = PipelineSettings(scorer=ScorerSettings(hop=2, topk=4))
    with Pipeline(ArraySource(frames, truths), backend, settings) as pipeline:
        assert pipeline.wait(timeout=60)
    predictions = pipeline.history()
    assert [p.index for p in predictions] == list(range(22, len(frames), 2))
    for p in predictions:
        assert p.window_start == p.index - 22
        assert len(p.topk) == 4 and p.topk[0] == (p.label, p.score)
        assert p.probs.sum() == pytest.approx(1.0, abs=1e-5) and p.score == pytest.approx(p.probs.max())
        assert p.true_label == labels[p.index]
        assert p.window_pure == (len(set(segments[p.window_start:p.index + 1])) == 1)
        assert p.t_scored >= p.t_capture and p.times.total > 0 and p.dropped == 0
    stats = pipeline.stats()
    assert stats.predictions == len(predictions) and stats.frames == len(frames) and stats.dropped == 0
    assert stats.accuracy_windows == sum(bool(p.window_pure) for p in predictions)
    for name in ("flow", "spatial", "temporal", "head", "total"):
        summary = stats.stage(name)
        assert 0 < summary.p50 <= summary.p95 <= summary.p99
    assert stats.input_fps > 0 and stats.scored_fps > 0


def test_stop_joins_every_thread_of_an_endless_live_stream(backend, short_clip):
    source = ArraySource(itertools.cycle(short_clip[0]), live=True, fps=50)
    pipeline = Pipeline(source, backend)
    with pipeline:
        first = pipeline.next_prediction(timeout=30)
        assert first is not None
        later = pipeline.next_prediction(after_seq=first.seq, timeout=10)
        assert later is not None and later.seq > first.seq and pipeline.latest.seq >= later.seq
        assert pipeline.latest_frame.index >= later.index  # the live view is never behind the label
    assert pipeline.stop() == () and pipeline.done
    assert not _pipeline_threads()


def test_an_error_in_any_stage_aborts_and_is_raised_by_wait(backend, short_clip):
    def explode(prediction):
        raise RuntimeError("consumer failed")

    pipeline = Pipeline(ArraySource(itertools.cycle(short_clip[0])), backend, on_prediction=explode)
    with pipeline:
        with pytest.raises(RuntimeError, match="consumer failed"):
            pipeline.wait(timeout=60)
    assert pipeline.stop() == () and not _pipeline_threads()


def test_a_source_that_fails_mid_stream_is_an_error(backend, short_clip, tmp_path):
    for i, bgr in enumerate(short_clip[0][:30]):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), bgr)
    (tmp_path / "025.png").write_bytes(b"truncated")
    with Pipeline(ImageFolderSource(tmp_path), backend) as pipeline:
        with pytest.raises(SourceError, match="025.png"):
            pipeline.wait(timeout=60)


def test_contract_mismatch_is_refused_at_build(backend, short_clip):
    settings = PipelineSettings(flow=FlowSettings(method="farneback"))
    with pytest.raises(ContractMismatch):
        Pipeline(ArraySource(short_clip[0]), backend, settings)


def test_a_long_run_does_not_grow_memory(backend, short_clip):
    """After warm-up, Python and numpy allocations stay flat: rings, caches, stats and the
    history are preallocated or bounded."""
    marks = {}

    def sample(prediction):
        if prediction.seq in (150, 349):
            marks[prediction.seq] = tracemalloc.get_traced_memory()[0]

    frames = itertools.islice(itertools.cycle(short_clip[0]), 350)
    settings = PipelineSettings(history=16, stats_window=32)
    tracemalloc.start()
    try:
        with Pipeline(ArraySource(frames), backend, settings, on_prediction=sample) as pipeline:
            assert pipeline.wait(timeout=180)
    finally:
        tracemalloc.stop()
    assert pipeline.stats().predictions == 350 - 22
    growth = marks[349] - marks[150]
    assert growth < 256 * 1024, f"memory grew by {growth / 1024:.0f} KiB over 200 frames"
