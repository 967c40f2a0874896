"""The procedural gesture generator: reproducible, and its motion means what its label says."""

import numpy as np
import pytest

from twostream.preprocess import OpticalFlow, resize_frame
from twostream.contract import GESTURE_CLASSES
from twostream.gestures import GestureStream, render_clip, trajectory


def test_same_seed_same_clip_other_seed_other_clip():
    a = render_clip("wave", 7, size=(96, 72), frames=6)
    b = render_clip("wave", 7, size=(96, 72), frames=6)
    c = render_clip("wave", 8, size=(96, 72), frames=6)
    assert a.shape == (6, 72, 96, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_label_is_refused():
    with pytest.raises(ValueError, match="unknown gesture"):
        render_clip("jump", 0)


@pytest.mark.parametrize("label,axis,sign", [
    ("swipe_left", 0, -1), ("swipe_right", 0, 1), ("swipe_up", 1, -1), ("swipe_down", 1, 1),
])
def test_swipes_move_toward_their_image_edge(label, axis, sign):
    for seed in range(20):
        path = trajectory(label, np.random.default_rng(seed), 30, 25.0)
        assert np.sign(path[-1, axis] - path[0, axis]) == sign


@pytest.mark.parametrize("label,sense", [("circle_clockwise", 1), ("circle_counterclockwise", -1)])
def test_circles_turn_the_right_way_as_seen_in_the_image(label, sense):
    """With y pointing down, the cross product of successive velocities is positive for a
    clockwise turn on screen."""
    for seed in range(20):
        path = trajectory(label, np.random.default_rng(seed), 40, 25.0)
        v = np.diff(path[:, :2], axis=0)
        cross = v[:-1, 0] * v[1:, 1] - v[:-1, 1] * v[1:, 0]
        assert np.sign(np.median(cross)) == sense


def test_push_grows_and_pull_shrinks():
    for seed in range(20):
        push = trajectory("push", np.random.default_rng(seed), 30, 25.0)
        pull = trajectory("pull", np.random.default_rng(seed), 30, 25.0)
        assert push[-1, 2] > 1.3 * push[0, 2]
        assert pull[-1, 2] < pull[0, 2] / 1.3


def test_rendered_swipe_left_has_leftward_flow():
    clip = render_clip("swipe_left", 3, size=(160, 120), frames=12)
    flow = OpticalFlow("dis-medium")
    greys = [resize_frame(f, (112, 112))[1] for f in clip]
    fields = np.stack([flow(greys[i - 1], greys[i]) for i in range(1, len(greys))])
    moving = np.linalg.norm(fields, axis=-1) > 1.0
    assert moving.mean() > 0.005
    assert fields[..., 0][moving].mean() < -0.5


def test_stream_segments_carry_labels():
    stream = iter(GestureStream(seed=3, size=(64, 48), segment_frames=(5, 8)))
    frames = [next(stream) for _ in range(40)]
    assert {f.label for f in frames} <= set(GESTURE_CLASSES)
    assert frames[-1].segment >= 4
    assert all(f.bgr.shape == (48, 64, 3) for f in frames)
