"""The procedural gesture generator: reproducible, and its motion means what its label says."""

import numpy as np
import pytest

from twostream.preprocess import OpticalFlow, resize_frame
from twostream.contract import GESTURE_CLASSES
from twostream.distractors import DriftingHand
from twostream.gestures import GestureStream, plan_clip, render_clip, render_scene, trajectory


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


def test_distractors_are_seeded_and_reproducible():
    kinds = []
    for seed in range(12):
        a, path_a = plan_clip("no_gesture", seed, size=(96, 72), frames=4)
        b, path_b = plan_clip("no_gesture", seed, size=(96, 72), frames=4)
        assert [d.kind for d in a.distractors] == [d.kind for d in b.distractors]
        assert np.array_equal(render_scene(a, path_a), render_scene(b, path_b))
        kinds.append(tuple(d.kind for d in a.distractors))
    assert len(set(kinds)) > 3  # the seed decides which distractors appear
    assert sum(bool(k) for k in kinds) >= 8  # most scenes have at least one


def _walker_no_gesture(size):
    for seed in range(300):
        scene, path = plan_clip("no_gesture", seed, size=size, frames=16)
        if not (scene.present and [d.kind for d in scene.distractors] == ["walker"]):
            continue
        walker = scene.distractors[0]
        # Walking briskly and in full view for the whole clip.
        travelled = walker.start + abs(walker.speed) * np.array([0, len(path)]) - walker.pw / 2
        if walker.walking and abs(walker.speed) > 0.007 * size[0] and (travelled > walker.pw / 2).all() \
                and (travelled < size[0] - walker.pw / 2).all():
            return scene, path
    raise AssertionError("no seed below 300 gives a brisk walker alone in view")


def test_no_gesture_with_a_walker_moves_a_lot_but_the_hand_idles():
    scene, path = _walker_no_gesture((160, 120))
    # The labelled hand only trembles: far below any gesture's travel.
    assert np.ptp(path[:, 0]) < 0.05 and np.ptp(path[:, 1]) < 0.05
    assert np.ptp(path[:, 2]) < 0.1
    clip = render_scene(scene, path)
    flow = OpticalFlow("dis-medium")
    greys = [resize_frame(f, (112, 112))[1] for f in clip]
    fields = np.stack([flow(greys[i - 1], greys[i]) for i in range(1, len(greys))])
    moving = np.linalg.norm(fields, axis=-1) > 0.3
    assert moving.mean() > 0.03  # a body-sized region moves in every frame on average
    assert (moving.mean(axis=(1, 2)) > 0.01).all()


def test_drifting_hand_never_gestures():
    """The second hand is slow, keeps turning and keeps its size: never a sweep, circle or push."""
    for seed in range(20):
        hand = DriftingHand(np.random.default_rng(seed), (160, 120))
        states = np.stack([hand.step() for _ in range(48)])
        step = np.linalg.norm(np.diff(states[:, :2], axis=0), axis=1)
        assert step.max() <= DriftingHand.MAX_SPEED + 1e-9
        assert np.linalg.norm(states[-1, :2] - states[0, :2]) < 0.2  # a swipe travels 0.45 or more
        assert states[:, 2].max() / states[:, 2].min() < 1.3  # a push or pull scales 2.4x or more


def test_backdrop_hook_is_used_and_frames_keep_shape():
    calls = []

    def grey(i):
        calls.append(i)
        return np.full((72, 96, 3), 128.0, np.float32)

    plain = render_clip("wave", 4, size=(96, 72), frames=5)
    over_grey = render_clip("wave", 4, size=(96, 72), frames=5, backdrop=grey)
    assert calls == list(range(5))
    assert over_grey.shape == plain.shape == (5, 72, 96, 3) and over_grey.dtype == np.uint8
    assert not np.array_equal(over_grey, plain)
    with pytest.raises(ValueError, match="backdrop frame"):
        render_clip("wave", 4, size=(96, 72), frames=2, backdrop=lambda i: np.zeros((10, 10, 3), np.float32))


def test_stream_uses_a_backdrop_per_scene_and_keeps_its_labels():
    made = []

    def factory(rng, size):
        assert isinstance(rng, np.random.Generator) and size == (64, 48)
        made.append(size)
        return lambda i: np.full((48, 64, 3), 30.0, np.float32)

    def first(stream):
        return [next(stream) for _ in range(40)]

    plain = first(iter(GestureStream(seed=3, size=(64, 48), segment_frames=(5, 8), segments_per_scene=(2, 3))))
    hooked = first(iter(GestureStream(seed=3, size=(64, 48), segment_frames=(5, 8), segments_per_scene=(2, 3),
                                      backdrop_factory=factory)))
    assert len(made) >= 2
    assert [f.label for f in hooked] == [f.label for f in plain]
    assert all(f.bgr.shape == (48, 64, 3) and f.bgr.dtype == np.uint8 for f in hooked)
