"""Real footage nobody gestures in: the files, their split by file, decoding, and the
augmentations that turn a handful of files into many ``no_gesture`` training clips.

The files (``../shared/data/videos/real``, see its README) are webcam clips of people signing
ASL (hard negatives: real hands in front of a real body), two long fixed-camera videos and gif
previews. Every frame of every file is a correct ``no_gesture``. They are split **by file**, and
files that show the same scene (a gif previewing an mp4) share a split, so validation never
sees a scene training saw. The split is data (``REAL_FILES``) and goes into the model file's
recipe. Files a folder holds that the table does not list are split by a hash of their name.

Arrays: a decoded video is BGR uint8 (N, h, w, 3); an augmented clip is BGR uint8 (F, h', w', 3)
of any size, which twostream.preprocess.preprocess_clip resizes to the model input.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from twostream.errors import DataError

# Suffixes OpenCV's FFmpeg backend decodes here (checked: it reads the .gif previews too).
REAL_SUFFIXES = (".avi", ".gif", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".webm")
SPLITS = ("train", "val")


def default_real_dir() -> Path:
    """``<repo>/../shared/data/videos/real``: the shared folder, never part of the project."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "real"


@dataclass(frozen=True)
class RealFile:
    """One row of the split: a file, the split it belongs to, the scene it shows (files of one
    scene always share a split) and why it sits where it does."""

    name: str
    split: str  # "train" or "val"
    scene: str  # the recording: a gif previewing an mp4 shows the same one
    why: str


# Validation holds a signer training never sees (the plaid-shirt man, both his clips, one with
# another background) plus one clip of a signer training does see, the long people-walking
# video with its gif preview (same room), and the corridor walk: false alarms on signing hands
# and on walking people are both measured on scenes the model never trained on. Training keeps
# the other three signers, hands moving bottles (video and preview), the street, the worker
# zone, a turning face and the conveyor clips.
REAL_FILES = (
    RealFile("asl_again.mkv", "train", "asl-again", "mask-shirt signer: signer also in asl_brother/help/no"),
    RealFile("asl_brother.mkv", "train", "asl-brother", "mask-shirt signer: signing hands, trained"),
    RealFile("asl_help.mkv", "train", "asl-help", "mask-shirt signer: signing hands, trained"),
    RealFile("asl_no.mkv", "train", "asl-no", "mask-shirt signer: signing hands, trained"),
    RealFile("asl_bird.mkv", "train", "asl-bird", "grey-shirt signer: his other clip validates"),
    RealFile("asl_milk.mkv", "val", "asl-milk", "grey-shirt signer: a trained signer, an unseen sign"),
    RealFile("asl_book.mkv", "train", "asl-book", "yellow-jacket signer: signing hands, trained"),
    RealFile("asl_learn.mkv", "train", "asl-learn", "yellow-jacket signer: signing hands, trained"),
    RealFile("asl_eat.mkv", "val", "asl-eat", "plaid-shirt signer: a signer never trained on"),
    RealFile("asl_hungry.mkv", "val", "asl-hungry", "plaid-shirt signer: a signer never trained on, other background"),
    RealFile("one-by-one-person-detection.mp4", "val", "room-people-walking",
             "people walking in and out: false alarms on walking people"),
    RealFile("people-detection.gif", "val", "room-people-walking", "preview of the same room"),
    RealFile("face-demographics-walking.gif", "val", "corridor-walking", "people walking toward the camera"),
    RealFile("bottle-detection.mp4", "train", "bottles", "hands moving objects on a table"),
    RealFile("bottle-detection.gif", "train", "bottles", "preview of bottle-detection.mp4"),
    RealFile("person-bicycle-car-detection.gif", "train", "street", "cars, bikes, pedestrians from above"),
    RealFile("worker-zone-detection.gif", "train", "worker-zone", "workers walking"),
    RealFile("head-pose-face-detection-female.gif", "train", "face-turning", "a face turning"),
    RealFile("fruit-and-vegetable-detection.gif", "train", "conveyor-fruit", "objects sliding past"),
    RealFile("bolt-multi-size-detection.gif", "train", "conveyor-bolts", "objects sliding past"),
)


def list_real_files(folder: Path) -> tuple[Path, ...]:
    """The video files directly in ``folder``, sorted by name (README, LICENSE left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"real footage folder not found: {folder}")
    return tuple(sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in REAL_SUFFIXES))


def _some_real_files(folder: Path) -> tuple[Path, ...]:
    """list_real_files, where an empty folder is an error."""
    found = list_real_files(folder)
    if not found:
        raise DataError(f"no video files in {folder} (looked for {', '.join(REAL_SUFFIXES)})")
    return found


def split_of(name: str) -> str:
    """The split of a file name: its row in REAL_FILES, else 3 in 10 by a hash of the name."""
    for row in REAL_FILES:
        if row.name == name:
            return row.split
    return "val" if zlib.crc32(name.encode()) % 10 < 3 else "train"


@dataclass(frozen=True)
class RealSplit:
    """Which files of a folder train and which validate (names, sorted); ``unlisted``: files
    not in REAL_FILES, split by name hash; ``extra``: paths of files from other folders that
    only ever train (``train.py fit --extra-real``), so the validation files, and every figure
    measured on them, stay those of the shared folder."""

    folder: str
    train: tuple[str, ...]
    val: tuple[str, ...]
    unlisted: tuple[str, ...]
    extra: tuple[str, ...] = ()

    @classmethod
    def of(cls, folder: Path, extra_folders: tuple[Path, ...] = ()) -> "RealSplit":
        names = [p.name for p in _some_real_files(folder)]
        extra = [str(p) for other in extra_folders for p in _some_real_files(other)]
        val = {n for n in names if split_of(n) == "val"}
        leaked = sorted(p for p in extra if Path(p).name in val)
        if leaked:  # a copy of a validation file (or the shared folder itself) must never train
            raise DataError(f"--extra-real holds validation files, which never train: {', '.join(leaked)}")
        listed = {row.name for row in REAL_FILES}
        return cls(str(folder), tuple(n for n in names if split_of(n) == "train"),
                   tuple(n for n in names if n in val), tuple(n for n in names if n not in listed),
                   tuple(extra))

    def names(self, split: str) -> tuple[str, ...]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; choose from {SPLITS}")
        return self.train if split == "train" else self.val

    def paths(self, split: str) -> tuple[Path, ...]:
        """The files of one split; the training-only extra files belong to "train"."""
        own = tuple(Path(self.folder) / name for name in self.names(split))
        return own + tuple(Path(p) for p in self.extra) if split == "train" else own

    def to_recipe(self) -> dict:
        return {"folder": self.folder, "train_files": list(self.train), "val_files": list(self.val),
                "unlisted_split_by_name_hash": list(self.unlisted),
                **({"extra_train_files": list(self.extra)} if self.extra else {})}


@dataclass(frozen=True)
class RealVideo:
    """One decoded file: BGR uint8 frames (N, h, w, 3) and the file's frame rate."""

    name: str
    frames: np.ndarray
    fps: float


def read_video(path: Path, max_side: int | None = None) -> RealVideo:
    """Every frame of ``path``, downscaled (INTER_AREA) so the longer side is at most
    ``max_side`` (None: as decoded). Training caches these in memory, so it downscales."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            h, w = frame.shape[:2]
            if max_side and max(h, w) > max_side:
                scale = max_side / max(h, w)
                frame = cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise DataError(f"cannot read any frame from {path}")
    return RealVideo(path.name, np.stack(frames), float(fps) if fps and fps > 0 else 25.0)


def load_videos(split: RealSplit, which: str, max_side: int | None = 256) -> tuple[RealVideo, ...]:
    """The decoded files of one split. Load once, before the clip workers fork: they share the
    parent's memory. 256 px keeps the training files at about 0.3 GB in all."""
    return tuple(read_video(path, max_side) for path in split.paths(which))


def validation_videos(folder: Path | None = None, max_side: int | None = None) -> tuple[RealVideo, ...]:
    """The validation files, unaugmented, for measuring false alarms on footage nobody gestures
    in. Full resolution by default, as a camera would deliver it (the long people-walking video
    is then about 1.4 GB; pass ``max_side`` to shrink it)."""
    return load_videos(RealSplit.of(folder or default_real_dir()), "val", max_side)


# Mirroring an image turns these gestures into each other; every other class is its own mirror
# (up/down move vertically, wave oscillates both ways, push/pull change scale).
MIRRORED_LABEL = {
    "swipe_left": "swipe_right",
    "swipe_right": "swipe_left",
    "circle_clockwise": "circle_counterclockwise",
    "circle_counterclockwise": "circle_clockwise",
}


def mirrored_label(label: str) -> str:
    """The label of a horizontally mirrored clip of ``label``."""
    return MIRRORED_LABEL.get(label, label)


def flip_clip(frames: np.ndarray, label: str) -> tuple[np.ndarray, str]:
    """Mirror a clip (F, h, w, 3) left-right and relabel it (swipe left <-> right, circle
    clockwise <-> counterclockwise)."""
    return np.ascontiguousarray(frames[:, :, ::-1]), mirrored_label(label)


@dataclass(frozen=True)
class Augment:
    """Ranges the augmentations draw from (uniformly unless said)."""

    speed: tuple[float, float] = (0.5, 2.0)  # playback speed, log-uniform; <1 repeats frames, >1 skips
    pingpong: float = 0.3  # chance the clip plays forward then backward (or back then forward)
    crop: tuple[float, float] = (0.55, 1.0)  # crop side as a share of the frame side
    flip: float = 0.5
    brightness: tuple[float, float] = (0.6, 1.4)  # gain on all channels
    channel_gain: tuple[float, float] = (0.85, 1.15)  # colour cast
    contrast: tuple[float, float] = (0.7, 1.3)
    offset: tuple[float, float] = (-20.0, 20.0)


def bounce(positions: np.ndarray, length: int) -> np.ndarray:
    """Positions (any float) -> frame indices in 0..length-1, playing forward then backward
    (a triangle wave), so a clip longer than its source never jumps."""
    if length < 2:
        return np.zeros(len(positions), np.int64)
    period = 2 * (length - 1)
    p = np.mod(np.floor(positions).astype(np.int64), period)
    return np.where(p < length, p, period - p)


def source_indices(rng: np.random.Generator, count: int, length: int, step: float, pingpong: float) -> np.ndarray:
    """``count`` frame indices into a source of ``length`` frames, ``step`` source frames apart:
    a random stretch played forward or backward, or (with chance ``pingpong``, or when the
    source is too short) bouncing off its ends."""
    span = (count - 1) * step
    if rng.random() < pingpong or span >= length - 1:
        # Bounce inside a stretch shorter than the clip, so it turns at least once.
        stretch = max(2, int(rng.uniform(0.3, 0.8) * min(span, length - 1)) + 1)
        start = int(rng.integers(0, length - stretch + 1))
        positions = rng.uniform(0, 2 * (stretch - 1)) + step * np.arange(count)
        return start + bounce(positions, stretch)
    start = rng.uniform(0, length - 1 - span)
    indices = np.floor(start + step * np.arange(count)).astype(np.int64)
    return indices[::-1].copy() if rng.random() < 0.5 else indices  # played backward: still no_gesture


def crop_box(rng: np.random.Generator, shape: tuple[int, int], share: tuple[float, float]) -> tuple[int, int, int, int]:
    """A random box (x, y, w, h) inside an (h, w) frame, each side ``share`` of the frame's."""
    h, w = shape
    cw = max(8, int(w * rng.uniform(*share)))
    ch = max(8, int(h * rng.uniform(*share)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return x, y, cw, ch


def jitter_colour(frames: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Brightness, contrast, colour cast and offset, one draw per clip: uint8 (F, h, w, 3) in
    and out."""
    gain = rng.uniform(*aug.brightness) * rng.uniform(*aug.channel_gain, 3)
    contrast = rng.uniform(*aug.contrast)
    mean = frames.mean(dtype=np.float64)
    out = (frames.astype(np.float32) - mean) * contrast + mean
    out = out * gain.astype(np.float32) + np.float32(rng.uniform(*aug.offset))
    return np.clip(out, 0, 255).astype(np.uint8)


def augment_clip(video: RealVideo, rng: np.random.Generator, count: int, fps: float,
                 aug: Augment = Augment()) -> np.ndarray:
    """One augmented clip of ``count`` frames at ``fps`` from a decoded video: speed change,
    forward/backward/ping-pong playback, a random crop, a mirror, colour jitter.
    BGR uint8 (count, h', w', 3), h' and w' the crop's; the model's resize happens in
    twostream.preprocess.preprocess_clip. No label change: mirrored no_gesture is no_gesture."""
    speed = float(np.exp(rng.uniform(*np.log(aug.speed))))
    step = speed * video.fps / fps  # source frames per clip frame
    indices = source_indices(rng, count, len(video.frames), step, aug.pingpong)
    x, y, w, h = crop_box(rng, video.frames.shape[1:3], aug.crop)
    frames = video.frames[indices, y:y + h, x:x + w]
    if rng.random() < aug.flip:
        frames = frames[:, :, ::-1]
    return np.ascontiguousarray(jitter_colour(frames, rng, aug))
