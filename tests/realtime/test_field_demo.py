"""The shipped demo model through the whole runtime on a short real clip nobody gestures in
(a validation file, never trained on): no gesture event. Skipped cleanly where
../shared/data is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from building.load import prepare_model
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import VideoFileSource
from twostream.realdata import RealSplit, default_real_dir

ROOT = Path(__file__).resolve().parents[2]
CLIP = "asl_eat.mkv"  # a person signing before a webcam: real hands, no gesture of ours


def test_a_real_clip_nobody_gestures_in_makes_no_event():
    folder = default_real_dir()
    if not (folder / CLIP).is_file():
        pytest.skip(f"{folder / CLIP} is absent (../shared/data)")
    assert CLIP in RealSplit.of(folder).names("val"), "the clip must be a validation file, never trained on"
    backend = prepare_model(ROOT / "models" / "demo.pt", "torch", "fp32").open()
    with Pipeline(VideoFileSource(folder / CLIP), backend, PipelineSettings()) as pipeline:
        assert pipeline.wait(timeout=120)
    predictions = pipeline.history()
    assert len(predictions) > 10  # the clip was scored, window after window
    assert pipeline.events() == (), [(e.label, e.start_frame, e.peak_score) for e in pipeline.events()]
    assert all(p.active is None for p in predictions)
