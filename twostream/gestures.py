"""Procedural gesture clips: a hand with its forearm doing a motion gesture in a textured,
moving, noisy scene where other things move too. Seeded and reproducible.

Everything a real scene varies is random per scene or per clip: the hand (skin tone or glove,
finger spread and curl, shading, size, forearm and sleeve, where the arm comes from), speed,
position, background texture and pan (or frames from a ``backdrop`` hook), camera shake,
lighting level, flicker, drift and gradient, motion blur, sensor noise and JPEG artefacts, and
distractors (twostream.distractors: walkers, a swaying body, sliding objects, a second hand
drifting aimlessly, an occluding strip). Only the labelled hand's motion carries the label:

    swipe_left/right/up/down  one straight sweep toward that image edge (may enter or leave the view)
    wave                      left-right oscillation with a wrist wobble
    circle_(counter)clockwise circular path, direction as seen in the image (y points down)
    push / pull               the hand grows (approaches) / shrinks (recedes)
    no_gesture                the hand idles with a small tremor, or is absent
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from twostream import seeds
from twostream.contract import GESTURE_CLASSES
from twostream.distractors import random_distractors
from twostream.hands import Hand, child_rng, over, smooth_noise

Backdrop = Callable[[int], np.ndarray]  # frame index -> float32 BGR 0..255 (H, W, 3)
BackdropFactory = Callable[[np.random.Generator, tuple[int, int]], Backdrop]  # (rng, (W, H)) -> backdrop


def _background(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A textured room-like backdrop, float32 BGR 0..255, (H, W, 3)."""
    h, w = shape
    base = rng.uniform(30, 220, 3).astype(np.float32)
    bg = base * (0.6 + 0.8 * smooth_noise(rng, shape, int(rng.integers(2, 6)), 3))
    for _ in range(int(rng.integers(2, 9))):  # furniture-like blocks and discs
        colour = rng.uniform(0, 255, 3).tolist()
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.rectangle(bg, (x, y), (x + int(rng.integers(w // 10, w // 2)), y + int(rng.integers(h // 10, h // 2))),
                          colour, -1)
        else:
            cv2.circle(bg, (x, y), int(rng.integers(h // 20, h // 4)), colour, -1)
    if rng.random() < 0.5:  # stripes or tiles at a random angle
        period = rng.uniform(6, 40) * max(h, w) / 320
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        bg *= (1 + rng.uniform(0.05, 0.3) * wave)[..., None]
    fine = smooth_noise(rng, shape, max(8, max(h, w) // 6), 1)
    bg *= 0.85 + 0.3 * fine
    return bg.clip(0, 255)


def trajectory(label: str, rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Per-frame object state (frames, 4): x, y as fractions of width/height, scale, angle (deg).

    Each gesture spans the whole clip, so every window inside the clip shows it.
    """
    t = np.arange(frames, dtype=np.float64)
    u = t / max(frames - 1, 1)
    x = np.full(frames, rng.uniform(0.25, 0.75))
    y = np.full(frames, rng.uniform(0.25, 0.75))
    scale = np.ones(frames)
    angle = np.full(frames, rng.uniform(-20, 20))
    ease = u + rng.uniform(-0.12, 0.12) * np.sin(np.pi * u)  # uneven but monotonic speed
    if label.startswith("swipe_"):
        # A third of the swipes cross the whole view: the hand enters at one edge and leaves at
        # the other; the rest may still start or end partly outside.
        travel = rng.uniform(1.0, 1.4) if rng.random() < 0.33 else rng.uniform(0.45, 1.1)
        start = rng.uniform(0.5 + travel / 2 - 0.15, 0.5 + travel / 2 + 0.1)
        along = start - travel * ease  # decreasing coordinate
        across = rng.uniform(0.25, 0.75) + rng.uniform(-0.12, 0.12) * u
        if label in ("swipe_right", "swipe_down"):
            along = 1 - along
        x, y = (along, across) if label in ("swipe_left", "swipe_right") else (across, along)
    elif label == "wave":
        period = fps / rng.uniform(1.6, 3.5)
        amp = rng.uniform(0.07, 0.18)
        phase = rng.uniform(0, 2 * np.pi)
        x = x + amp * np.sin(2 * np.pi * t / period + phase)
        y = y + rng.uniform(0, 0.03) * np.sin(4 * np.pi * t / period + phase)
        angle = angle + rng.uniform(8, 25) * np.sin(2 * np.pi * t / period + phase)
    elif label.startswith("circle_"):
        period = fps * rng.uniform(0.6, 1.4)
        radius = rng.uniform(0.1, 0.22)
        aspect = rng.uniform(0.75, 1.3)
        sense = 1 if label == "circle_clockwise" else -1  # image y points down: +theta is clockwise
        theta = rng.uniform(0, 2 * np.pi) + sense * 2 * np.pi * t / period
        x = x + radius * aspect * np.cos(theta) * 0.75  # width is larger than height in 4:3
        y = y + radius * np.sin(theta)
    elif label in ("push", "pull"):
        # The object grows (or shrinks) 2.4-4x over the clip from a small end of 0.6-0.9 of
        # its base size: never so small that its edge flow (~0.2-0.6 px per frame at 112 px)
        # sinks below the tremor and shake. A real push toward a webcam
        # doubles the hand's size in about half a second.
        ratio = rng.uniform(2.4, 4.0)
        smallest = rng.uniform(0.6, 0.9)
        growth = ratio ** ease
        scale = smallest * growth if label == "push" else smallest * ratio / growth
        x = x + rng.uniform(-0.05, 0.05) * u
        y = y + rng.uniform(-0.05, 0.05) * u
    # Hand tremor on every class, far below the slowest gesture's speed.
    x = x + np.cumsum(rng.normal(0, 0.0015, frames))
    y = y + np.cumsum(rng.normal(0, 0.0015, frames))
    scale = scale * (1 + np.cumsum(rng.normal(0, 0.002, frames)))
    return np.stack([x, y, scale, angle], 1)


class Scene:
    """One camera view: background, lighting, noise, optics, distractors and the labelled hand.
    Renders frames of (W, H) = ``size`` as BGR uint8 (H, W, 3) from the hand's state
    (x, y, scale, angle).

    ``backdrop(i)``, when given, supplies frame i of a moving background (float32 BGR 0..255,
    (H, W, 3)) in place of the textured background and its pan: its frames carry their own camera
    motion. Distractors, the hand, lighting, noise and JPEG still go on top."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], backdrop: Backdrop | None = None):
        self.w, self.h = size
        self.rng = rng
        self.backdrop = backdrop
        # Parts draw from their own generators, so a backdrop (no background drawn) changes
        # nothing else: same seed, same hand, distractors, lighting with or without one.
        background_rng, hand_rng, distractor_rng = child_rng(rng), child_rng(rng), child_rng(rng)
        self.margin = int(0.08 * max(size)) + 4
        self.background = None if backdrop else _background(
            background_rng, (self.h + 2 * self.margin, self.w + 2 * self.margin))
        self.pan = rng.normal(0, 0.15, 2) * max(size) / 320  # px per frame
        self.shake = rng.uniform(0, 1.2) * max(size) / 320
        self.hand = Hand(hand_rng, size, max(16, int(self.h * rng.uniform(0.3, 0.55))))
        self.behind, self.in_front = random_distractors(distractor_rng, size)
        self.present = True
        self.gain = rng.uniform(0.6, 1.3)
        # Light flicker: mostly faint and slow; in 30 % of scenes strong and up to 3 Hz (a TV,
        # a failing tube), a whole-frame change that is never a gesture.
        strong = rng.random() < 0.3
        self.flicker = (rng.uniform(0.08, 0.25) if strong else rng.uniform(0, 0.08),
                        rng.uniform(0.2, 3.0) if strong else rng.uniform(0.05, 0.5), rng.uniform(0, 2 * np.pi))
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        light_dir = rng.uniform(0, 2 * np.pi)
        self.light = 1 + rng.uniform(0, 0.35) * ((xx / self.w - 0.5) * np.cos(light_dir)
                                                 + (yy / self.h - 0.5) * np.sin(light_dir))
        self.exposure = rng.uniform(0.2, 1.0)  # fraction of a frame interval the shutter is open
        sigma = rng.uniform(0, 9)
        self.noise = [rng.normal(0, sigma, (self.h, self.w, 3)).astype(np.float32) for _ in range(4)]
        self.jpeg_quality = int(rng.integers(25, 96)) if rng.random() < 0.8 else 0
        self._cam = np.zeros(2)
        self._frame = 0

    @property
    def distractors(self) -> list:
        """Every distractor of this scene (each has ``kind``), behind the hand then in front."""
        return self.behind + self.in_front

    def render(self, state: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """The next frame. ``state`` = (x, y, scale, angle); ``velocity`` = its per-frame change."""
        index = self._frame
        self._frame += 1
        frame = self._backdrop(index)
        for thing in self.behind:
            thing.draw(frame, index)
        if self.present:
            self._composite(frame, state, velocity)
        for thing in self.in_front:
            thing.draw(frame, index)
        amp, freq, phase = self.flicker
        frame *= (self.gain * (1 + amp * np.sin(2 * np.pi * freq * index / 25.0 + phase))) * self.light[..., None]
        frame += self.noise[index % len(self.noise)]
        out = frame.clip(0, 255).astype(np.uint8)
        if self.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return out

    def _backdrop(self, index: int) -> np.ndarray:
        """Frame ``index``'s background, a fresh float32 BGR (H, W, 3) to draw on."""
        if self.backdrop is not None:
            frame = np.array(self.backdrop(index), dtype=np.float32, copy=True)
            if frame.shape != (self.h, self.w, 3):
                raise ValueError(f"backdrop frame {index} has shape {frame.shape}, want {(self.h, self.w, 3)}")
            return frame
        self._cam = 0.8 * self._cam + self.rng.normal(0, self.shake, 2)
        span = 2 * self.margin
        # The pan bounces inside the margin (a triangle wave), so the view never jumps.
        pos = (self.margin + self.pan * index) % (2 * span)
        ox, oy = np.clip(np.where(pos < span, pos, 2 * span - pos) + self._cam, 0, span)
        shift = np.float32([[1, 0, -ox], [0, 1, -oy]])
        return cv2.warpAffine(self.background, shift, (self.w, self.h), borderMode=cv2.BORDER_REFLECT)

    def _composite(self, frame: np.ndarray, state: np.ndarray, velocity: np.ndarray) -> None:
        """Draw the labelled hand and forearm onto ``frame`` (H, W, 3) in place, blurred along its motion."""
        x, y, scale, angle = state
        vx, vy = velocity[0] * self.w, velocity[1] * self.h
        speed = float(np.hypot(vx, vy))
        length = speed * self.exposure
        k = int(np.ceil(length)) | 1 if length > 1.0 else 0
        drawn = self.hand.layer((self.h, self.w), x, y, max(scale, 0.05), float(np.clip(angle, -40, 40)), pad=k + 1)
        if drawn is None:
            return
        layer, x0, y0 = drawn
        if k:  # motion blur: average the premultiplied layer along the motion
            kernel = np.zeros((k, k), np.float32)
            dx, dy = vx / speed * k / 2, vy / speed * k / 2
            cv2.line(kernel, (int(k / 2 - dx), int(k / 2 - dy)), (int(k / 2 + dx), int(k / 2 + dy)), 1.0, 1)
            layer = cv2.filter2D(layer, -1, kernel / max(kernel.sum(), 1.0))
        over(frame, layer, x0, y0)


def plan_clip(label: str, seed: int, size: tuple[int, int] = (160, 120), frames: int = 40, fps: float = 25.0,
              backdrop: Backdrop | None = None) -> tuple[Scene, np.ndarray]:
    """The scene and the labelled hand's path (frames, 4) of render_clip's clip, before rendering
    (so tests can see which distractors a seed brings). Same seed, same plan."""
    if label not in GESTURE_CLASSES:
        raise ValueError(f"unknown gesture {label!r}; choose from {GESTURE_CLASSES}")
    rng = np.random.default_rng(seed)
    scene_rng, path_rng = child_rng(rng), child_rng(rng)
    scene = Scene(scene_rng, size, backdrop)
    scene.present = label != "no_gesture" or path_rng.random() < 0.8
    return scene, trajectory(label, path_rng, frames, fps)


def render_scene(scene: Scene, path: np.ndarray) -> np.ndarray:
    """Render ``path`` (frames, 4) in ``scene``: BGR uint8 (frames, H, W, 3)."""
    velocity = np.gradient(path[:, :2], axis=0)
    return np.stack([scene.render(path[i], velocity[i]) for i in range(len(path))])


def render_clip(label: str, seed: int, size: tuple[int, int] = (160, 120), frames: int = 40,
                fps: float = 25.0, backdrop: Backdrop | None = None) -> np.ndarray:
    """One clip of one gesture: BGR uint8 (frames, H, W, 3), size = (W, H). Same seed, same clip.
    ``backdrop(i)`` (float32 BGR 0..255, (H, W, 3)), if given, is the moving background (see Scene)."""
    return render_scene(*plan_clip(label, seed, size, frames, fps, backdrop))


@dataclass(frozen=True)
class StreamFrame:
    """One frame of the endless demo stream with its ground truth."""

    bgr: np.ndarray  # (H, W, 3) uint8
    label: str
    segment: int  # increments at every gesture change


class GestureStream:
    """Endless stream of gesture segments (``segment_frames`` long) in scenes that persist for
    several segments, so the view changes only now and then. Iterate for StreamFrame.

    Segments are about as long as training clips (train.py --frames 40), so each gesture runs
    at the speeds the model was trained on. ``backdrop_factory(rng, (W, H))``, if given, makes each
    scene's backdrop (see Scene). Scenes and backdrops draw from their own generators, so the
    sequence of labels and segment lengths depends on the seed alone."""

    def __init__(self, seed: int = seeds.DEMO_STREAM, size: tuple[int, int] = (640, 480), fps: float = 25.0,
                 segment_frames: tuple[int, int] = (32, 48), segments_per_scene: tuple[int, int] = (4, 9),
                 backdrop_factory: BackdropFactory | None = None):
        self.seed, self.size, self.fps = seed, size, fps
        self.segment_frames, self.segments_per_scene = segment_frames, segments_per_scene
        self.backdrop_factory = backdrop_factory

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        segment = 0
        while True:
            scene_rng, backdrop_rng = child_rng(rng), child_rng(rng)
            backdrop = self.backdrop_factory(backdrop_rng, self.size) if self.backdrop_factory else None
            scene = Scene(scene_rng, self.size, backdrop)
            for _ in range(int(rng.integers(*self.segments_per_scene))):
                label = GESTURE_CLASSES[int(rng.integers(len(GESTURE_CLASSES)))]
                frames = int(rng.integers(*self.segment_frames))
                scene.present = label != "no_gesture" or rng.random() < 0.8
                path = trajectory(label, rng, frames, self.fps)
                velocity = np.gradient(path[:, :2], axis=0)
                for i in range(frames):
                    yield StreamFrame(scene.render(path[i], velocity[i]), label, segment)
                segment += 1
