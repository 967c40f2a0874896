"""The event decision layer on scripted window scores: when events start and end, what the
policy in a model file says, how events are matched to the truth, and that tuning helps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twostream.card import render_card
from twostream.checkpoint import read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import ContractMismatch
from twostream.events import (Event, EventDetector, EventPolicy, ScoreStream, Segment, detect_events,
                              evaluate_policy, match_events, segments_of, tune_policy)

CLASSES = ("no_gesture", "swipe_left", "wave")
POLICY = EventPolicy(threshold=0.6, k=3, n=4, end_after=2, cooldown=3)


def window(label: str, p: float = 0.9) -> np.ndarray:
    """(K,) probabilities with ``label`` on top at ``p``, the rest shared out."""
    probs = np.full(len(CLASSES), (1 - p) / (len(CLASSES) - 1), np.float32)
    probs[CLASSES.index(label)] = p
    return probs


def run(labels: list[str | tuple[str, float]], policy: EventPolicy = POLICY) -> list[tuple[int, Event]]:
    """Feed one window per entry (frame = position) -> [(frame, event)] transitions."""
    detector = EventDetector(policy, CLASSES)
    out = []
    for frame, entry in enumerate(labels):
        label, p = entry if isinstance(entry, tuple) else (entry, 0.9)
        event = detector.push(frame, window(label, p))
        if event is not None:
            out.append((frame, event))
    return out


def test_start_needs_k_of_n_votes():
    # 2 of 4: nothing; the 3rd vote inside the last 4 windows starts it, dated at its first vote.
    got = run(["no_gesture", "wave", "wave", "no_gesture", "wave"])
    assert len(got) == 1
    frame, event = got[0]
    assert frame == 4 and event.kind == "start" and event.label == "wave"
    assert event.start_frame == 1 and event.end_frame is None
    # Votes spread wider than n windows never start one.
    assert run(["wave", "no_gesture", "no_gesture", "wave", "no_gesture", "no_gesture", "wave"]) == []


def test_event_ends_after_end_after_silent_windows_with_its_peak():
    labels = ["wave", "wave", ("wave", 0.95), "wave", "no_gesture", "no_gesture", "no_gesture"]
    (f0, start), (f1, end) = run(labels)
    assert (f0, start.kind, start.start_frame) == (2, "start", 0)
    assert f1 == 5 and end.kind == "end"  # the 2nd silent window
    assert (end.label, end.start_frame, end.end_frame) == ("wave", 0, 3)
    assert end.peak_score == pytest.approx(0.95) and end.peak_frame == 2


def test_active_says_no_gesture_as_none():
    detector = EventDetector(POLICY, CLASSES)
    states = []
    for label in ["wave"] * 4 + ["no_gesture"] * 3:
        detector.push(len(states), window(label))
        states.append(detector.active)
    assert states == [None, None, "wave", "wave", "wave", None, None]


def test_one_stray_window_does_not_split_an_event():
    got = run(["wave"] * 4 + ["swipe_left"] + ["wave"] * 4 + ["no_gesture"] * 3)
    assert [(e.kind, e.label) for _, e in got] == [("start", "wave"), ("end", "wave")]


def test_cooldown_suppresses_a_restart_of_the_same_class_only():
    bounce = ["wave"] * 3 + ["no_gesture"] * 2 + ["wave"] * 3
    assert [e.kind for _, e in run(bounce)] == ["start", "end"]  # the 2nd burst falls in the cool-down
    no_cooldown = dataclasses.replace(POLICY, cooldown=0)
    assert [e.kind for _, e in run(bounce, no_cooldown)] == ["start", "end", "start"]
    other = ["wave"] * 3 + ["no_gesture"] * 2 + ["swipe_left"] * 3
    assert [(e.kind, e.label) for _, e in run(other)] == [("start", "wave"), ("end", "wave"), ("start", "swipe_left")]


def test_an_event_longer_than_max_length_is_reported_again_as_a_repetition():
    # POLICY: 3 of 4 votes start an event. 12 windows of wave without a pause:
    steady = ["wave"] * 12 + ["no_gesture"] * 3
    assert [(f, e.kind) for f, e in run(steady)] == [(2, "start"), (13, "end")]  # one long event
    repeating = dataclasses.replace(POLICY, max_length=5)
    got = run(steady, repeating)
    # Starts at window 2, ends at its 5th window (6); the repetition counts fresh votes (7, 8,
    # 9), so it starts after the first ended, without the cool-down; then the stream goes quiet.
    assert [(f, e.kind) for f, e in got] == [(2, "start"), (6, "end"), (9, "start"), (13, "end")]
    assert [(e.start_frame, e.end_frame) for _, e in got if e.kind == "end"] == [(0, 6), (7, 11)]


def test_below_threshold_and_background_make_no_event():
    assert run([("wave", 0.55)] * 20) == []  # confident enough to be top-1, not to vote
    assert run(["no_gesture"] * 20) == []
    everything = dataclasses.replace(POLICY, background=None)
    assert [e.label for _, e in run(["no_gesture"] * 4, everything)] == ["no_gesture"]


def test_detect_events_closes_the_open_event_at_the_end():
    probs = np.stack([window("wave")] * 5)
    assert detect_events(POLICY, CLASSES, range(10, 15), probs) == [Event("wave", 10, 14, pytest.approx(0.9), 10)]


def test_policy_is_validated_and_background_must_be_a_class():
    with pytest.raises(ContractMismatch):
        EventPolicy(k=7, n=6)
    with pytest.raises(ContractMismatch):
        EventPolicy(threshold=0.0)
    with pytest.raises(ContractMismatch):
        ModelContract(classes=("a", "b"), events=EventPolicy(background="no_gesture"))
    with pytest.raises(ContractMismatch):
        EventPolicy.from_dict({"threshold": 0.5, "hysteresis": 2})
    assert ModelContract(classes=("a", "b")).events.background is None  # defaults fit the classes
    assert ModelContract(classes=CLASSES).events == EventPolicy()


def test_policy_travels_in_the_model_file(make_perturbed_model, tmp_path):
    tuned = EventPolicy(threshold=0.75, k=3, n=5, end_after=3, cooldown=6, max_length=45)
    contract = ModelContract(classes=CLASSES, events=tuned)
    model = make_perturbed_model(contract)
    save_checkpoint(tmp_path / "m.pt", model)
    checkpoint = read_checkpoint(tmp_path / "m.pt")
    assert checkpoint.contract.events == tuned
    card = render_card(tmp_path / "m.pt", checkpoint)
    assert "3 votes of the last 5 windows" in card and "after 45 windows ends there" in card
    assert ModelContract.from_json(contract.to_json()).events == tuned  # ONNX metadata, engine.json
    # The policy is not part of the preprocessing contract: retuning needs no engine rebuild.
    assert contract == ModelContract(classes=CLASSES)
    # A model file from before events loads with the defaults.
    old = contract.to_dict()
    del old["events"]
    assert ModelContract.from_dict(old).events == EventPolicy()


def test_match_events():
    truth = [Segment("wave", 0, 9), Segment("no_gesture", 10, 19), Segment("wave", 20, 29),
             Segment("swipe_left", 30, 39)]
    events = [Event("wave", 3, 8, 0.9, 5),       # tp
              Event("wave", 6, 12, 0.9, 7),      # the first wave is taken: fp
              Event("swipe_left", 12, 15, 0.9, 13),  # overlaps only no_gesture: fp
              Event("wave", 28, 33, 0.9, 29)]    # overlaps the 2nd wave: tp
    assert match_events(events, truth, background="no_gesture") == (2, 2, 1)
    assert match_events([], truth, background="no_gesture") == (0, 0, 3)
    assert match_events([], truth) == (0, 0, 4)  # without a background every segment is wanted
    assert segments_of(["a", "a", "b", "a"]) == [Segment("a", 0, 1), Segment("b", 2, 2), Segment("a", 3, 3)]
    # Numbered gestures: two of one class in a row are two segments, each an event to find.
    assert segments_of(["a", "a", "a", "b"], [0, 0, 1, 2]) == [Segment("a", 0, 1), Segment("a", 2, 2),
                                                               Segment("b", 3, 3)]


def test_generated_stream_truth_is_one_whole_segment_per_gesture():
    from twostream.eventdata import generated_stream
    from twostream.gestures import GestureStream

    frames, truth = generated_stream(seed=11, frames=100, size=(64, 48))
    assert len(frames) >= 100 and frames.shape[1:] == (48, 64, 3)
    # The truth tiles the frames, and its last gesture is not cut short by the stream's end.
    assert truth[0].start == 0 and truth[-1].end == len(frames) - 1
    assert all(b.start == a.end + 1 for a, b in zip(truth, truth[1:]))
    low, high = GestureStream().segment_frames
    assert all(low <= s.end - s.start + 1 < high for s in truth), truth
    assert truth[-1].start < 100


def test_tuning_beats_a_bad_policy_on_a_synthetic_stream():
    rng = np.random.default_rng(0)
    labels = []
    for _ in range(30):
        labels += [str(rng.choice(CLASSES[1:]))] * int(rng.integers(25, 40)) + ["no_gesture"] * int(rng.integers(10, 20))
    probs = []
    for label in labels:
        # Noisy scores: mostly right at 0.5-0.95, one window in six a confident wrong class.
        wrong = rng.random() < 1 / 6
        shown = str(rng.choice([c for c in CLASSES if c != label])) if wrong else label
        probs.append(window(shown, float(rng.uniform(0.5, 0.95))))
    stream = ScoreStream(np.arange(len(labels)), np.stack(probs), tuple(segments_of(labels)))
    bad = EventPolicy(threshold=0.4, k=1, n=1)
    policy, report = tune_policy([stream], CLASSES, bad)
    tuned, worse = evaluate_policy(policy, CLASSES, [stream]), evaluate_policy(bad, CLASSES, [stream])
    assert tuned == report["chosen"]
    assert tuned["f1"] > worse["f1"] + 0.2 and tuned["f1"] > 0.8, (tuned, worse)
    assert (policy.end_after, policy.cooldown, policy.background) == (4, 8, "no_gesture")  # kept from base


def test_tune_events_writes_the_policy_into_the_model_file(make_perturbed_model, tmp_path):
    import train

    path = tmp_path / "m.pt"
    model = make_perturbed_model(ModelContract(classes=GESTURE_CLASSES, stack_length=2, num_segments=2, stride=2))
    save_checkpoint(path, model, metrics={"held_out": {"top1_fused": 0.5}})
    assert train.main(["tune-events", "--model", str(path), "--streams", "1", "--frames", "40",
                       "--width", "64", "--height", "48"]) == 0
    saved = read_checkpoint(path)
    report = saved.metrics["events"]
    assert saved.contract.events == EventPolicy.from_dict(report["policy"])
    assert saved.metrics["held_out"] == {"top1_fused": 0.5}  # the rest of the metrics kept
    assert "seeds 3000..3000" in report["data"]  # seeds.VALIDATION: never held-out data
    other = tmp_path / "other.pt"
    save_checkpoint(other, make_perturbed_model(ModelContract(classes=CLASSES, stack_length=2, num_segments=2)))
    assert train.main(["tune-events", "--model", str(other), "--frames", "40"]) == 2  # not a gesture model
