"""Clips held in memory and played as many sources: real footage decoded once (or a generated
clip when it is absent), each stream a looped view of one clip from its own offset.

Decoding happens once, before any stream starts, so a benchmark measures the streams and the
engine and never the decoder; the frames are shared read-only by every stream that plays the
same clip (the runtime never writes into a frame it was handed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from realtime.sources import ArraySource
from twostream.errors import DataError
from twostream.gestures import GestureStream
from twostream.realdata import default_real_dir, list_real_files

# Offset between two streams that play the same clip: a prime, so they stay out of step
# whatever the clip's length.
SAME_CLIP_OFFSET = 37


@dataclass(frozen=True)
class Clip:
    """``frames``: BGR uint8 (F, h, w, 3), F >= 2; ``name``: the file (or 'generated')."""

    name: str
    frames: np.ndarray


@dataclass(frozen=True)
class ClipSet:
    """The clips streams play, and ``data``: one line saying what they are, for the report."""

    clips: tuple[Clip, ...]
    data: str

    def clip_of(self, stream: int) -> tuple[Clip, int]:
        """(clip, first frame) stream number ``stream`` plays: clip ``stream mod C``, and
        streams beyond the C clips start SAME_CLIP_OFFSET frames apart in theirs."""
        clip = self.clips[stream % len(self.clips)]
        return clip, (stream // len(self.clips)) * SAME_CLIP_OFFSET % len(clip.frames)

    def source(self, stream: int, fps: float | None, live: bool) -> ArraySource:
        """Stream ``stream``'s source: its clip looped forever from its offset, as a live camera
        paced at ``fps`` (``live``) or read as fast as the pipeline takes it (back-pressure)."""
        clip, offset = self.clip_of(stream)
        return ArraySource(LoopedFrames(clip.frames, offset), fps=fps, live=live,
                           name=f"{clip.name} from frame {offset}, looped")


class LoopedFrames:
    """An endless iterable over ``frames`` (F, h, w, 3) from ``offset``: F-1 wraps to 0. Each
    ``iter`` starts afresh at ``offset`` (a reopened source replays from there)."""

    def __init__(self, frames: np.ndarray, offset: int = 0):
        if len(frames) < 2:
            raise DataError(f"a looped clip needs at least 2 frames, got {len(frames)}")
        self.frames, self.offset = frames, offset % len(frames)

    def __iter__(self) -> Iterator[np.ndarray]:
        index, count = self.offset, len(self.frames)
        while True:
            yield self.frames[index]
            index = (index + 1) % count


def decode(path: Path, max_frames: int) -> Clip:
    """The first ``max_frames`` frames of video ``path``, as decoded (no resizing: streams
    should see what a camera would hand them). DataError when fewer than 2 decode."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    try:
        while len(frames) < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            frames.append(frame)
    finally:
        cap.release()
    if len(frames) < 2:
        raise DataError(f"cannot decode a clip from {path} ({len(frames)} frames)")
    return Clip(path.name, np.stack(frames))


def real_clips(folder: Path, count: int, max_frames: int) -> ClipSet:
    """Up to ``count`` clips from the video files in ``folder`` (animated .gif previews last:
    they mostly preview the videos), ``max_frames`` each. DataError when none decodes."""
    files = sorted(list_real_files(folder), key=lambda p: (p.suffix.lower() == ".gif", p.name))
    if not files:
        raise DataError(f"no video files in {folder}")
    clips = tuple(decode(path, max_frames) for path in files[:count])
    sizes = sorted({f"{c.frames.shape[2]}x{c.frames.shape[1]}" for c in clips})
    frames = sum(len(c.frames) for c in clips)
    return ClipSet(clips, f"real: {len(clips)} clip(s) from {folder} ({', '.join(c.name for c in clips)}; "
                          f"{frames} frames in memory, {'/'.join(sizes)})")


def generated_clip(size: tuple[int, int], frames: int, seed: int) -> ClipSet:
    """One generated gesture clip of ``frames`` frames, (W, H) = ``size``."""
    stack = np.stack([item.bgr for item, _ in zip(GestureStream(seed, size), range(frames))])
    return ClipSet((Clip("generated", stack),),
                   f"generated: one {size[0]}x{size[1]} gesture clip (seed {seed}, {frames} frames), "
                   "each stream from its own offset")


def load_clips(folder: Path | None, count: int, max_frames: int, size: tuple[int, int], seed: int,
               generated: bool = False) -> ClipSet:
    """The clips for ``count`` streams: from ``folder`` (None: the shared real footage, or a
    generated clip when that folder is absent), or a generated clip when ``generated``.
    A folder that was named but is missing is an error, not a fallback."""
    if generated:
        return generated_clip(size, max_frames, seed)
    if folder is None:
        folder = default_real_dir()
        if not folder.is_dir():
            clips = generated_clip(size, max_frames, seed)
            return ClipSet(clips.clips, f"{clips.data} ({folder} is absent)")
    elif not folder.is_dir():
        raise DataError(f"--clips {folder}: no such folder")
    return real_clips(folder, count, max_frames)
