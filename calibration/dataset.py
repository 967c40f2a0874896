"""The calibration set: frames from video files, a folder or the demo stream, read by the
runtime's own sources (realtime.sources) and turned into tower inputs by the runtime's own
resize, flow and stack code (realtime.flow), so calibration sees exactly what inference sees.

    rgb      (M, 3, H, W)    float32 0..255, one sampled frame each       -> spatial tower
    flow     (M, 2L, H, W)   float32 0..255, that frame's flow stack      -> temporal tower
    windows  (clip, newest frame) at the contract's stride tau            -> fusion head, fed
             with the fp32 towers' features of the window's T frames
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.flow import OpticalFlow, quantise_flow, resize_frame, stack_fields
from realtime.sources import Source, SourceSettings, VideoFileSource, open_source
from twostream.contract import ModelContract
from twostream.data import VIDEO_SUFFIXES, Clip, ClipSet, first_window_end
from twostream.errors import DataError


@dataclass(frozen=True)
class CalibrationSettings:
    frames_per_source: int = 240  # frames read from each video, folder or the demo stream
    tower_samples: int = 256  # frames each tower is calibrated on
    head_windows: int = 128  # windows the head is calibrated on
    # The demo stream is rendered with a seed that neither training (0) nor the held-out
    # parity windows (1000) use, so parity is never measured on calibration data.
    demo_seed: int = 2000


def expand_source(spec: str, settings: CalibrationSettings) -> tuple[Source, ...]:
    """'demo', a video file, an image folder, or a folder holding videos (searched recursively,
    e.g. DIR/<class>/<video>) -> the runtime sources to read, not yet opened."""
    if spec == "demo":
        return (open_source("demo", SourceSettings(demo_seed=settings.demo_seed)),)
    path = Path(spec)
    if path.is_dir():
        videos = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        if videos:
            return tuple(VideoFileSource(v) for v in videos)
    return (open_source(spec),)


def read_clip(source: Source, contract: ModelContract, max_frames: int) -> Clip:
    """Up to ``max_frames`` frames of one source, resized, with their quantised flow fields, as
    the flow stage computes them: field 0 is zero motion, field i = flow(frame i-1 -> frame i).
    RGB (F, H, W, 3) and flow (F, H, W, 2) uint8; label -1 (unknown)."""
    flow = OpticalFlow(contract.flow_method)
    rgb, fields = [], []
    prev_grey = None
    source.open()  # SourceError (a RecognizerError) names the source when it cannot
    try:
        while len(rgb) < max_frames:
            item = source.read()
            if item is None:
                break
            frame_rgb, grey = resize_frame(item[0], contract.input_size)
            if prev_grey is None:
                fields.append(np.full((*contract.input_size, 2), 128, np.uint8))
            else:
                fields.append(quantise_flow(flow(prev_grey, grey), contract.flow_bound))
            rgb.append(frame_rgb)
            prev_grey = grey
    finally:
        source.close()
    if not rgb:
        return Clip(np.zeros((0, *contract.input_size, 3), np.uint8), np.zeros((0, *contract.input_size, 2), np.uint8), -1)
    return Clip(np.stack(rgb), np.stack(fields), -1)


def _spread(items: list, count: int) -> list:
    """``count`` items evenly spread over ``items`` (all when there are fewer)."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


@dataclass(frozen=True)
class CalibrationSet:
    """Clips of the calibration sources and the samples drawn from them."""

    clips: ClipSet
    tower_frames: tuple[tuple[int, int], ...]  # (clip, frame), frame >= L
    windows: tuple[tuple[int, int], ...]  # (clip, newest frame) at the contract's stride
    description: str

    def rgb(self) -> np.ndarray:
        """(M, 3, H, W) float32 0..255."""
        return np.stack([self.clips.clips[ci].rgb[f].transpose(2, 0, 1) for ci, f in self.tower_frames]
                        ).astype(np.float32)

    def flow(self, length: int) -> np.ndarray:
        """(M, 2L, H, W) float32 0..255: the L fields ending at each sampled frame."""
        return np.stack([stack_fields(self.clips.clips[ci].flow[f - length + 1:f + 1])
                         for ci, f in self.tower_frames]).astype(np.float32)


def build_calibration_set(specs: list[str] | tuple[str, ...], contract: ModelContract,
                          settings: CalibrationSettings = CalibrationSettings()) -> CalibrationSet:
    """Read every source named in ``specs``; DataError when they give no usable window."""
    if not specs:
        raise DataError("no calibration source given (a video file, a folder, or 'demo')")
    clips, names = [], []
    for spec in specs:
        for source in expand_source(spec, settings):
            clip = read_clip(source, contract, settings.frames_per_source)
            clips.append(clip)
            names.append(f"{source.description}: {len(clip.rgb)} frames")
    length = contract.stack_length
    frames = [(ci, f) for ci, clip in enumerate(clips) for f in range(length, len(clip.rgb))]
    first = first_window_end(contract, contract.stride)
    windows = [(ci, end) for ci, clip in enumerate(clips) for end in range(first, len(clip.rgb))]
    if not windows:
        longest = max((len(c.rgb) for c in clips), default=0)
        raise DataError(f"calibration source {', '.join(specs)} gave no usable window: a window needs "
                        f"{contract.window_span} consecutive frames, the longest source gave {longest}")
    return CalibrationSet(ClipSet(tuple(clips), tuple(contract.classes)), tuple(_spread(frames, settings.tower_samples)),
                          tuple(_spread(windows, settings.head_windows)), "; ".join(names))
