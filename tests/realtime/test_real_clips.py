"""The two real clips in ../shared/data/videos (MPEG-4 in AVI, H.264 in MP4) run headless to
their end: no drop, no error, every frame past the first window scored, no memory growth.
Skipped cleanly where that folder is absent."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import cv2
import pytest

from engines.torch_backend import TorchBackend
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import VideoFileSource

ROOT = Path(__file__).resolve().parents[2]
VIDEOS = ROOT.parent / "shared" / "data" / "videos"
CLIPS = sorted(p for p in VIDEOS.glob("*") if p.suffix in (".avi", ".mp4")) if VIDEOS.is_dir() else []

pytestmark = pytest.mark.skipif(not CLIPS, reason=f"no real clips in {VIDEOS}")


def _frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


@pytest.mark.parametrize("clip", CLIPS, ids=lambda p: p.name)
def test_real_clip_runs_headless_to_its_end(clip, model_path):
    frames = _frame_count(clip)
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--no-ui", "--backend", "torch",
                           "--source", str(clip), "--model", str(model_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = [r for r in map(json.loads, done.stdout.splitlines()) if "status" not in r]  # predictions
    assert [r["frame"] for r in lines] == list(range(22, frames))
    assert all(r["dropped"] == 0 for r in lines)
    stderr = done.stderr.strip().splitlines()
    assert len(stderr) == 2 and stderr[0].startswith("engine: ") and stderr[1].startswith("summary: "), done.stderr
    summary = json.loads(stderr[1].removeprefix("summary: "))
    assert summary["frames"] == frames and summary["dropped"] == 0 and summary["threads_not_joined"] == []


@pytest.mark.parametrize("clip", CLIPS, ids=lambda p: p.name)
def test_real_clip_memory_is_flat_after_warm_up(clip, random_model):
    marks = []

    def sample(prediction):
        if prediction.seq in (60, 150) or prediction.seq % 100 == 0:
            marks.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        settings = PipelineSettings(history=16, stats_window=32)
        with Pipeline(VideoFileSource(clip), TorchBackend(random_model), settings, on_prediction=sample) as pipeline:
            assert pipeline.wait(timeout=300)
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert pipeline.stats().dropped == 0
    assert end - marks[0] < 512 * 1024, f"grew {(end - marks[0]) / 1024:.0f} KiB after warm-up"
