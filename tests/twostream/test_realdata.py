"""Real footage (twostream.realdata, twostream.backdrops): the split by file, decoding,
augmentations, the mirror-with-relabel table, the real moving backdrops, and real no_gesture
clips from training files only. Tests that read ../shared/data skip cleanly where it is absent."""

import numpy as np
import pytest

import twostream.data as data
from twostream.backdrops import BackdropPool, RealBackdrop
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.realdata import (MIRRORED_LABEL, REAL_FILES, RealSplit, RealVideo, augment_clip, bounce,
                                default_real_dir, flip_clip, load_videos, read_video, split_of)

REAL = default_real_dir()
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"no real footage in {REAL}")
TINY = ModelContract(classes=GESTURE_CLASSES, input_size=(32, 32), stack_length=2, num_segments=2, stride=1)


def _video(frames=30, fps=30.0, seed=0) -> RealVideo:
    rng = np.random.default_rng(seed)
    return RealVideo("synthetic.mkv", rng.integers(0, 256, (frames, 48, 64, 3), dtype=np.uint8), fps)


def test_the_split_table_keeps_each_scene_in_one_split():
    names = [row.name for row in REAL_FILES]
    assert len(names) == len(set(names))
    assert {row.split for row in REAL_FILES} == {"train", "val"}
    for scene in {row.scene for row in REAL_FILES}:
        assert len({row.split for row in REAL_FILES if row.scene == scene}) == 1, scene
    val = [row.name for row in REAL_FILES if row.split == "val"]
    assert sum(n.startswith("asl_") for n in val) == 3  # signing hands, a signer never trained on
    assert "one-by-one-person-detection.mp4" in val  # false alarms on walking people
    assert split_of("my-own-clip.mp4") == split_of("my-own-clip.mp4") in ("train", "val")


@needs_real
def test_the_shared_files_are_read_and_split_by_file_as_recorded():
    split = RealSplit.of(REAL)
    assert not set(split.train) & set(split.val)
    assert split.unlisted == ()
    assert sorted(split.train + split.val) == sorted(row.name for row in REAL_FILES)  # every listed file exists
    recipe = split.to_recipe()
    assert recipe["train_files"] == list(split.train) and recipe["val_files"] == list(split.val)
    gif = read_video(REAL / "people-detection.gif", max_side=64)  # OpenCV reads the gifs here
    assert gif.frames.ndim == 4 and gif.frames.shape[-1] == 3 and max(gif.frames.shape[1:3]) == 64
    assert len(gif.frames) > 10 and gif.fps > 0


def test_bounce_plays_forward_then_backward():
    assert bounce(np.arange(10.0), 4).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]


def test_augmentations_keep_shape_and_dtype_and_are_seeded():
    video = _video()
    clips = [augment_clip(video, np.random.default_rng(seed), 40, 25.0) for seed in (1, 1, 2)]
    for clip in clips:
        assert clip.dtype == np.uint8 and clip.ndim == 4 and len(clip) == 40 and clip.shape[-1] == 3
        assert 8 <= clip.shape[1] <= 48 and 8 <= clip.shape[2] <= 64
    assert np.array_equal(clips[0], clips[1])
    assert clips[0].shape != clips[2].shape or not np.array_equal(clips[0], clips[2])
    short = augment_clip(_video(frames=5), np.random.default_rng(3), 40, 25.0)  # shorter than the clip: bounces
    assert len(short) == 40


def test_mirroring_swaps_left_right_and_circle_direction_only():
    assert MIRRORED_LABEL == {"swipe_left": "swipe_right", "swipe_right": "swipe_left",
                              "circle_clockwise": "circle_counterclockwise",
                              "circle_counterclockwise": "circle_clockwise"}
    frames = _video(frames=3).frames
    for label in GESTURE_CLASSES:
        flipped, new = flip_clip(frames, label)
        assert new in GESTURE_CLASSES and flip_clip(flipped, new)[1] == label
        assert np.array_equal(flipped[:, :, 0], frames[:, :, -1])
    for same in ("swipe_up", "swipe_down", "wave", "push", "pull", "no_gesture"):
        assert flip_clip(frames, same)[1] == same


def test_backdrop_serves_moving_float_frames_at_the_clip_size_reproducibly():
    frames = _video(frames=12).frames
    backdrop = RealBackdrop(frames, (40, 30), np.random.default_rng(5), step=1.3)
    shots = [backdrop(i) for i in range(30)]  # longer than the source: plays on, back and forth
    for shot in shots:
        assert shot.shape == (30, 40, 3) and shot.dtype == np.float32 and 0 <= shot.min() <= shot.max() <= 255
    assert np.abs(shots[5] - shots[0]).mean() > 1  # it moves
    again = RealBackdrop(frames, (40, 30), np.random.default_rng(5), step=1.3)
    assert np.array_equal(again(29), shots[29]) and np.array_equal(again(3), shots[3])  # any call order
    still = RealBackdrop(np.repeat(frames[:1], 12, 0), (40, 30), np.random.default_rng(6))
    assert np.abs(still(20) - still(0)).mean() > 0  # a still file still moves: pan, zoom, shake
    pool = BackdropPool((_video(), _video(frames=200, fps=10.0, seed=1)))
    sampled = pool.sample(np.random.default_rng(7), (40, 30), 40, 25.0)
    assert sampled(39).shape == (30, 40, 3)
    assert pool.factory(25.0)(np.random.default_rng(8), (64, 48))(100).shape == (48, 64, 3)


def test_generated_clips_get_real_backdrops_through_the_hook(monkeypatch):
    calls = []
    plain = data.render_clip

    def render_clip(label, seed, size=(160, 120), frames=40, fps=25.0, backdrop=None):  # records the hook's use
        calls.append(backdrop is not None)
        clip = plain(label, seed, size=size, frames=frames, fps=fps, backdrop=backdrop)
        if backdrop is not None:
            assert backdrop(frames - 1).shape == (size[1], size[0], 3)
        return clip

    monkeypatch.setattr(data, "render_clip", render_clip)  # forked workers inherit it
    pool = BackdropPool((_video(),))
    clips = data.generate_clips(TINY, 2, seed=3, frames=8, workers=1, backdrops=pool, backdrop_fraction=0.5)
    assert len(clips) == len(clips.sources) == 2 * len(GESTURE_CLASSES)
    with_real = [s for s in clips.sources if s != "generated"]
    assert 0 < len(with_real) < len(clips)
    without = data.generate_clips(TINY, 2, seed=3, frames=8, workers=1)
    for a, b, source in zip(clips.clips, without.clips, clips.sources):  # clips without a backdrop: unchanged
        assert source != "generated" or np.array_equal(a.flow, b.flow)


@needs_real
def test_real_clips_are_no_gesture_from_training_files_only():
    split = RealSplit.of(REAL)
    videos = load_videos(split, "train", max_side=64)
    assert [v.name for v in videos] == list(split.train)
    real = data.real_clips(TINY, videos, 1, seed=0, frames=8, workers=1)
    merged = data.merge_clips(data.generate_clips(TINY, 1, seed=0, frames=8, workers=1), real)
    from_files = [(c, s) for c, s in zip(merged.clips, merged.sources) if s != "generated"]
    assert len(from_files) == len(split.train)
    assert {s for _, s in from_files} == set(split.train) and not set(split.val) & {s for _, s in from_files}
    for clip, _ in from_files:
        assert clip.label == GESTURE_CLASSES.index("no_gesture")
        assert clip.rgb.shape == (8, 3, 32, 32) and clip.flow.shape == (8, 2, 32, 32) and clip.rgb.dtype == np.uint8
