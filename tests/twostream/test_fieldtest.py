"""The field test's counting (twostream/fieldtest.py) on a short generated stream: every gesture
of the truth is counted once, for segment accuracy and for event recall alike."""

from __future__ import annotations

import numpy as np
import pytest

from twostream.card import render_card
from twostream.checkpoint import read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.eventdata import generated_stream
from twostream.fieldtest import FieldSettings, stream_figures, streams_report
from twostream.preprocess import WindowPlan
from twostream.realdata import RealVideo


@pytest.mark.parametrize("seed, length", [(6, 130), (9, 140)])
def test_every_gesture_is_counted_once_for_accuracy_and_for_recall(make_perturbed_model, one_thread, seed, length):
    contract = ModelContract(classes=GESTURE_CLASSES, stack_length=2, num_segments=2, stride=2)
    model = make_perturbed_model(contract)
    frames, truth = generated_stream(seed=seed, frames=length, size=(64, 48))
    labels = [s.label for s in truth]
    # What the seeds hold: seed 6 two swipe_up gestures in a row, seed 9 a quiet stretch; in both
    # the last gesture runs past ``length``.
    assert (labels[:2] == ["swipe_up", "swipe_up"]) if seed == 6 else ("no_gesture" in labels)
    assert truth[-1].start < length < truth[-1].end == len(frames) - 1
    figures = stream_figures(model, frames, truth)

    gestures = [s for s in truth if s.label != "no_gesture"]
    # Whole gestures only, each its own segment, so each has windows wholly inside it and is one
    # segment to name and one event to find: none is a miss that no model could avoid.
    assert figures["gesture_segments"] == len(gestures)
    assert figures["tp"] + figures["fn"] == len(gestures)
    plan = WindowPlan.of(contract)
    quiet = sum(max(0, s.end - max(s.start + plan.span - 1, plan.first_end) + 1)
                for s in truth if s.label == "no_gesture")
    assert figures["quiet_windows"] == quiet and (quiet > 0 or seed == 6)
    assert figures["frames"] == len(frames)


def test_streams_report_sums_its_streams_and_keeps_each_streams_counts(make_perturbed_model, one_thread, tmp_path):
    contract = ModelContract(classes=GESTURE_CLASSES, stack_length=2, num_segments=2, stride=2)
    model = make_perturbed_model(contract)
    rng = np.random.default_rng(0)
    footage = RealVideo("noise.mp4", rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8), 25.0)
    report = streams_report(model, (footage,), FieldSettings(streams=2, frames=130, size=(64, 48), seed=8))
    for kind in ("moving", "still"):
        figures = report[kind]
        assert list(figures["per_stream"]) == ["8", "9"]
        for key in ("gesture_segments", "segments_right", "quiet_windows", "quiet_alarms", "tp", "fp", "fn"):
            assert figures[key] == sum(counts[key] for counts in figures["per_stream"].values())
        assert figures["quiet_windows"] > 0  # seeds 8 and 9 both hold a quiet stretch
    # The card lists each stream's quiet false alarms, so a run of them in one scene shows.
    save_checkpoint(tmp_path / "m.pt", model, metrics={"field": {"streams": report, "real_clips": {}, "data": "d"}})
    card = render_card(tmp_path / "m.pt", read_checkpoint(tmp_path / "m.pt"))
    moving = report["moving"]["per_stream"]["8"]
    assert f"by stream (seed alarms/windows): moving: 8 {moving['quiet_alarms']}/{moving['quiet_windows']}, 9 " in card
