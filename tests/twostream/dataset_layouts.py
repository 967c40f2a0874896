"""Tiny copies of UCF101, HMDB51 and the pre-extracted JPEG layout, written by the tests.

Two classes; a bright disc moves right in class 0 and left in class 1, over noise, so the
towers have something to learn in a step or two. Files are as the datasets distribute them.
"""

from pathlib import Path

import cv2
import numpy as np

FRAMES = 14
SIZE = (64, 48)  # (w, h) of the written videos and JPEGs
UCF_CLASSES = ("ApplyEyeMakeup", "HandstandPushups")
HMDB_CLASSES = ("brush_hair", "cartwheel")
DIRECTIONS = (1, -1)


def frames(direction: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x, out = (10 if direction > 0 else 54), []
    for _ in range(FRAMES):
        frame = 60 + rng.integers(0, 20, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        cv2.circle(frame, (int(x), 24), 6, (255, 255, 255), -1)
        out.append(frame)
        x += 3 * direction
    return out


def write_video(path: Path, direction: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, SIZE)
    for frame in frames(direction, seed):
        writer.write(frame)
    writer.release()


def write_ucf101(root: Path, per_class: int = 3) -> Path:
    """ROOT/<Class>/v_<Class>_gGG_c01.avi and ROOT/ucfTrainTestlist/ with split 1: group 1 is
    the test group, the others train (as UCF101 splits by group). The HandstandPushups files
    are spelt v_HandStandPushups_..., as in the real dataset, and the lists spell them so too."""
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF_CLASSES)))
    train, test = [], []
    for label, (name, direction) in enumerate(zip(UCF_CLASSES, DIRECTIONS)):
        spelt = "HandStandPushups" if name == "HandstandPushups" else name
        for group in range(1, per_class + 1):
            relative = f"{name}/v_{spelt}_g{group:02d}_c01.avi"
            write_video(root / relative, direction, 10 * label + group)
            (test if group == 1 else train).append(relative)
    (lists / "trainlist01.txt").write_text("".join(f"{r} {UCF_CLASSES.index(r.split('/')[0]) + 1}\n" for r in train))
    (lists / "testlist01.txt").write_text("".join(f"{r}\n" for r in test))
    return root


def write_hmdb51(root: Path, per_class: int = 4) -> Path:
    """ROOT/<class>/<video>.avi and ROOT/testTrainMulti_7030_splits/<class>_test_split1.txt:
    video 0 unused (0), video 1 test (2), the rest train (1)."""
    lists = root / "testTrainMulti_7030_splits"
    lists.mkdir(parents=True)
    for label, (name, direction) in enumerate(zip(HMDB_CLASSES, DIRECTIONS)):
        rows = []
        for i in range(per_class):
            video = f"{name}_clip_{i}_f_cm_np1_le_med_{i}.avi"
            write_video(root / name / video, direction, 10 * label + i)
            rows.append(f"{video} {0 if i == 0 else 2 if i == 1 else 1} \n")
        (lists / f"{name}_test_split1.txt").write_text("".join(rows))
    return root


def flow_jpeg(pixels: float, bound: float = 20.0) -> int:
    """A displacement's JPEG value: round((f + bound) * 255 / (2 bound))."""
    return int(round((np.clip(pixels, -bound, bound) + bound) * 255 / (2 * bound)))


def write_jpegs(root: Path, videos: dict, flow_of=lambda direction: (3.0 * direction, 0.0)) -> Path:
    """JROOT/jpegs_256/v_<id>/frame%06d.jpg and JROOT/tvl1_flow/{u,v}/v_<id>/frame%06d.jpg
    (FRAMES - 1 flow images) for ``videos``: {video id: direction}. The flow is uniform,
    ``flow_of(direction)`` = (x, y) px, quantised as the extractors do."""
    for video, direction in videos.items():
        rgb_dir = root / "jpegs_256" / f"v_{video}"
        rgb_dir.mkdir(parents=True)
        for k, frame in enumerate(frames(direction, len(video)), 1):
            cv2.imwrite(str(rgb_dir / f"frame{k:06d}.jpg"), frame)
        x, y = flow_of(direction)
        for axis, value in (("u", x), ("v", y)):
            folder = root / "tvl1_flow" / axis / f"v_{video}"
            folder.mkdir(parents=True)
            image = np.full((SIZE[1], SIZE[0]), flow_jpeg(value), np.uint8)
            for k in range(1, FRAMES):
                cv2.imwrite(str(folder / f"frame{k:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    return root
