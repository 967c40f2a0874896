"""The calibration set: frames from video files, a folder or the demo stream, read by the
runtime's own sources (realtime.sources) and turned into tower inputs by the runtime's own
preprocessing (twostream.preprocess), so calibration sees exactly what inference sees.

    rgb      (M, 3, H, W)    float32 0..255, one sampled frame each       -> spatial tower
    flow     (M, 2L, H, W)   float32 0..255, that frame's flow stack      -> temporal tower
    windows  (clip, newest frame) at the contract's stride tau            -> fusion head, fed
             with the fp32 towers' features of the window's T frames
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realtime.sources import Source, SourceSettings, VideoFileSource, open_source
from twostream import seeds
from twostream.contract import ModelContract
from twostream.data import VIDEO_SUFFIXES, Clip, ClipSet
from twostream.errors import DataError
from twostream.preprocess import FlowSpec, FlowTracker, WindowPlan, tower_inputs


@dataclass(frozen=True)
class CalibrationSettings:
    frames_per_source: int = 240  # frames read from each video, folder or the demo stream
    tower_samples: int = 256  # frames each tower is calibrated on
    head_windows: int = 128  # windows the head is calibrated on
    # The demo stream's own seed: parity is never measured on calibration data (twostream.seeds).
    demo_seed: int = seeds.DEMO_CALIBRATION


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
    """Up to ``max_frames`` frames of one source through the flow stage's own FlowTracker:
    rgb (F, 3, H, W) and flow (F, C, H, W) uint8 (C = FlowSpec.channels); label -1 (unknown)."""
    spec = FlowSpec.of(contract)
    tracker = FlowTracker(spec)
    pairs = []  # preprocessed as read: a long source never holds its full-size frames
    source.open()  # SourceError (a RecognizerError) names the source when it cannot
    try:
        while len(pairs) < max_frames:
            item = source.read()
            if item is None:
                break
            pairs.append(tracker.push(item[0]))
    finally:
        source.close()
    if not pairs:
        return Clip(np.zeros((0, 3, *spec.size), np.uint8), np.zeros((0, spec.channels, *spec.size), np.uint8), -1)
    return Clip(np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), -1)


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

    def tower_inputs(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The sampled frames' tower inputs: rgb (M, 3, H, W) and flow stacks (M, 2L, H, W),
        float32 0..255."""
        pairs = [tower_inputs(self.clips.clips[ci].rgb, self.clips.clips[ci].flow, [f], length)
                 for ci, f in self.tower_frames]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


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
    plan = WindowPlan.of(contract)
    first = plan.first_end
    windows = [(ci, end) for ci, clip in enumerate(clips) for end in range(first, len(clip.rgb))]
    if not windows:
        longest = max((len(c.rgb) for c in clips), default=0)
        raise DataError(f"calibration source {', '.join(specs)} gave no usable window: a window needs "
                        f"{plan.span} consecutive frames, the longest source gave {longest}")
    return CalibrationSet(ClipSet(tuple(clips), tuple(contract.classes)), tuple(_spread(frames, settings.tower_samples)),
                          tuple(_spread(windows, settings.head_windows)), "; ".join(names))
