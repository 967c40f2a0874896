"""Gesture events through the runtime: the head stage runs the model file's event policy, each
Prediction carries the event starting or ending at its window, the pipeline keeps an event
log, and app.py's JSON lines carry them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.torch_backend import TorchBackend
from realtime.pipeline import Pipeline
from realtime.sources import ArraySource
from twostream.checkpoint import save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.events import EventDetector, EventPolicy

ROOT = Path(__file__).resolve().parents[2]

# Every window votes for its top-1 (background None, threshold near 0), one vote starts an
# event and one silent window ends it: a random model's label changes make events.
EAGER = EventPolicy(background=None, threshold=0.01, k=1, n=1, end_after=1, cooldown=0)


@pytest.fixture(scope="module")
def eager_model(make_perturbed_model):
    return make_perturbed_model(ModelContract(classes=GESTURE_CLASSES, events=EAGER))


def replay(labels: list[str], frames: list[int]) -> list[tuple[int, str, str]]:
    """The events an EventDetector with EAGER makes from these top-1 labels: (frame, kind, label)."""
    detector = EventDetector(EAGER, GESTURE_CLASSES)
    out = []
    for frame, label in zip(frames, labels):
        probs = np.full(len(GESTURE_CLASSES), 0.0, np.float32)
        probs[GESTURE_CLASSES.index(label)] = 1.0
        event = detector.push(frame, probs)
        if event is not None:
            out.append((frame, event.kind, event.label))
    return out


def test_predictions_carry_the_events_of_the_model_files_policy(eager_model, short_clip):
    frames, _, _ = short_clip
    with Pipeline(ArraySource(frames), TorchBackend(eager_model)) as pipeline:
        assert pipeline.wait(timeout=60)
    predictions = pipeline.history()
    got = [(p.index, p.event.kind, p.event.label) for p in predictions if p.event is not None]
    assert got and got == replay([p.label for p in predictions], [p.index for p in predictions])
    assert got[0] == (predictions[0].index, "start", predictions[0].label)
    # `active` is the open event after each window: here the window's own label, except on an end.
    for p in predictions:
        ending = p.event is not None and p.event.kind == "end"
        assert p.active == (None if ending else p.label)
    # The log has one entry per gesture: an end replaces its start.
    log = pipeline.events()
    starts = [e for _, kind, e in got if kind == "start"]
    assert [e.label for e in log] == starts
    assert all(e.end_frame is not None for e in log[:-1])


def test_the_default_policy_of_a_random_model_is_quiet(random_model, short_clip):
    """A random model is never confident: no window votes, no event, nothing active."""
    frames, _, _ = short_clip
    with Pipeline(ArraySource(frames), TorchBackend(random_model)) as pipeline:
        assert pipeline.wait(timeout=60)
    assert max(p.score for p in pipeline.history()) < EventPolicy().threshold
    assert all(p.event is None and p.active is None for p in pipeline.history())
    assert pipeline.events() == ()


def test_headless_json_lines_carry_event_and_active(eager_model, short_clip, tmp_path):
    model, clip = tmp_path / "eager.pt", tmp_path / "clip.mp4"
    save_checkpoint(model, eager_model)
    frames = short_clip[0]
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, frames.shape[2:0:-1])
    for bgr in frames:
        writer.write(bgr)
    writer.release()
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--no-ui", "--backend", "torch", "--source",
                           str(clip), "--model", str(model)], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = [r for r in map(json.loads, done.stdout.splitlines()) if "status" not in r]  # predictions
    assert all("active" in r for r in lines)
    with_event = [(r["frame"], r["event"]["type"], r["event"]["label"]) for r in lines if "event" in r]
    assert with_event and with_event == replay([r["label"] for r in lines], [r["frame"] for r in lines])
    for r in lines:
        if "event" in r:
            event = r["event"]
            assert set(event) == {"type", "label", "start_frame", "end_frame", "peak_score"}
            assert (event["end_frame"] is None) == (event["type"] == "start")
            assert event["start_frame"] <= r["frame"] and 0 < event["peak_score"] <= 1
