"""ui.overlay: annotate draws on a copy at display size, highlights the top label only past the
threshold, shows truth and accuracy for sources that know them, and keeps no state."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.messages import Prediction, StageTimes
from ui.overlay import HIGHLIGHT, OverlayInfo, OverlaySettings, annotate, encode_jpeg

CLASSES = ("wave", "push", "pull")


def _prediction(probs, true_label=None, active=None) -> Prediction:
    probs = np.asarray(probs, np.float32)
    order = np.argsort(-probs)
    return Prediction(index=40, seq=40, window_start=10, t_capture=1.0, t_scored=1.05, classes=CLASSES,
                      logits=np.log(probs), probs=probs,
                      topk=tuple((CLASSES[i], float(probs[i])) for i in order),
                      times=StageTimes(1.0, 2.0, 3.0, 4.0, 5.0, 50.0, 0.5), dropped=0,
                      true_label=true_label, window_pure=None if true_label is None else True, active=active)


def _frame(w=320, h=240, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)


def _has_highlight(image: np.ndarray) -> bool:
    return bool(np.all(image == np.array(HIGHLIGHT, np.uint8), axis=-1).any())


@pytest.mark.parametrize("size", [(320, 240), (160, 120), (640, 480)])
def test_output_is_a_new_display_size_frame_and_input_is_untouched(size):
    frame = _frame(*size)
    before = frame.copy()
    out = annotate(frame, _prediction([0.7, 0.2, 0.1]))
    assert out.shape == (480, 640, 3) and out.dtype == np.uint8
    assert out is not frame and not np.shares_memory(out, frame)
    np.testing.assert_array_equal(frame, before)


def test_draws_panel_and_latency_line():
    frame = np.full((480, 640, 3), 255, np.uint8)
    out = annotate(frame, _prediction([0.7, 0.2, 0.1]), OverlayInfo(fps=25.0, frame_index=7))
    assert (out[:60, :280] != 255).any(), "no top-k panel"
    assert (out[-20:, :] != 255).all(axis=-1).mean() > 0.9, "no latency bar along the bottom"
    assert (out[100:400, 320:600] == 255).all(), "the overlay covered the middle of the picture"


@pytest.mark.parametrize("score, highlighted", [(0.7, True), (0.45, False)])
def test_top_label_highlighted_only_past_threshold(score, highlighted):
    rest = (1 - score) / 2
    out = annotate(np.zeros((480, 640, 3), np.uint8), _prediction([score, rest, rest]),
                   settings=OverlaySettings(threshold=0.5))
    assert _has_highlight(out) == highlighted


def test_truth_line_only_for_sources_that_know_it():
    base = np.zeros((480, 640, 3), np.uint8)
    plain = annotate(base, _prediction([0.4, 0.35, 0.25]))
    with_truth = annotate(base, _prediction([0.4, 0.35, 0.25], true_label="push"), OverlayInfo(accuracy=0.8))
    assert not np.array_equal(plain, with_truth)
    assert (with_truth[76:95, :200] != 0).any() and not (plain[76:95, :200] != 0).any()


def test_active_event_row_only_while_an_event_is_on():
    base = np.zeros((480, 640, 3), np.uint8)
    quiet = annotate(base, _prediction([0.4, 0.35, 0.25]))
    active = annotate(base, _prediction([0.4, 0.35, 0.25], active="wave"))
    assert (active[76:95, :200] != 0).any() and not (quiet[76:95, :200] != 0).any()
    assert not _has_highlight(active)  # its own colour: an event is not the top-label highlight


def test_before_first_prediction_only_the_latency_line():
    out = annotate(np.zeros((240, 320, 3), np.uint8), None)
    assert not (out[:400] != 0).any() and (out[-20:] != 0).any()


def test_stateless_same_inputs_same_output():
    frame, prediction = _frame(), _prediction([0.6, 0.3, 0.1])
    first = annotate(frame, prediction, OverlayInfo(fps=24.0))
    annotate(_frame(seed=1), _prediction([0.1, 0.1, 0.8]), OverlayInfo(fps=3.0))
    np.testing.assert_array_equal(annotate(frame, prediction, OverlayInfo(fps=24.0)), first)


def test_jpeg_encode_roundtrip():
    data = encode_jpeg(annotate(_frame(), None))
    assert data[:2] == b"\xff\xd8" and 5_000 < len(data) < 400_000
