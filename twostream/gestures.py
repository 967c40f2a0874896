"""Procedural gesture clips: a hand-sized textured object doing a motion gesture over a
textured, moving, noisy scene. Seeded and reproducible.

Everything a real scene varies is random per scene or per clip: object shape (hand silhouette,
ellipse, rounded box, blob), colour (skin tones and arbitrary colours), texture, size, speed,
position, background texture and pan, camera shake, lighting level, drift and gradient, motion
blur, sensor noise and JPEG artefacts. Only the motion pattern carries the label:

    swipe_left/right/up/down  one straight sweep toward that image edge
    wave                      left-right oscillation with a wrist wobble
    circle_(counter)clockwise circular path, direction as seen in the image (y points down)
    push / pull               the object grows (approaches) / shrinks (recedes)
    no_gesture                the object idles with a small tremor, or is absent
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from twostream import seeds
from twostream.contract import GESTURE_CLASSES

_SKIN_BGR = np.array([[60, 90, 160], [80, 120, 200], [100, 150, 225], [140, 180, 240],
                      [40, 60, 110], [70, 110, 180]], dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int, channels: int) -> np.ndarray:
    """Low-frequency colour noise in 0..1, (H, W, channels)."""
    h, w = shape
    small = rng.random((max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w)), channels))
    big = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return big.reshape(h, w, channels).clip(0, 1)


def _background(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A textured room-like backdrop, float32 BGR 0..255, (H, W, 3)."""
    h, w = shape
    base = rng.uniform(30, 220, 3).astype(np.float32)
    bg = base * (0.6 + 0.8 * _smooth_noise(rng, shape, int(rng.integers(2, 6)), 3))
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
    fine = _smooth_noise(rng, shape, max(8, max(h, w) // 6), 1)
    bg *= 0.85 + 0.3 * fine
    return bg.clip(0, 255)


def _sprite(rng: np.random.Generator, size: int) -> np.ndarray:
    """A hand-sized object, float32 BGRA (size, size, 4), premultiplied alpha in 0..1."""
    mask = np.zeros((size, size), np.uint8)
    c = size // 2
    kind = rng.choice(["hand", "hand", "ellipse", "box", "blob"])
    if kind == "hand":
        palm_w, palm_h = int(size * rng.uniform(0.2, 0.26)), int(size * rng.uniform(0.22, 0.28))
        py = c + size // 8
        cv2.ellipse(mask, (c, py), (palm_w, palm_h), 0, 0, 360, 255, -1)
        spread = rng.uniform(4, 14)
        for i in range(4):
            ang = np.deg2rad(-90 + (i - 1.5) * spread)
            length = size * rng.uniform(0.2, 0.3) * (0.85 if i in (0, 3) else 1.0)
            x0 = c + (i - 1.5) * palm_w * 0.55
            y0 = py - palm_h * 0.7
            x1, y1 = x0 + np.cos(ang) * length, y0 + np.sin(ang) * length
            cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), 255, max(2, int(size * 0.085)))
            cv2.circle(mask, (int(x1), int(y1)), max(1, int(size * 0.042)), 255, -1)
        side = rng.choice([-1, 1])
        cv2.line(mask, (int(c + side * palm_w * 0.8), py), (int(c + side * palm_w * 1.6), int(py - palm_h * 0.6)),
                 255, max(2, int(size * 0.09)))
    elif kind == "ellipse":
        cv2.ellipse(mask, (c, c), (int(size * rng.uniform(0.2, 0.42)), int(size * rng.uniform(0.2, 0.42))),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1)
    elif kind == "box":
        half = (int(size * rng.uniform(0.18, 0.38)), int(size * rng.uniform(0.18, 0.38)))
        cv2.rectangle(mask, (c - half[0], c - half[1]), (c + half[0], c + half[1]), 255, -1)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((size // 8 + 1,) * 2, np.uint8))
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radii = size * rng.uniform(0.2, 0.42, 9)
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0)
    colour = _SKIN_BGR[rng.integers(len(_SKIN_BGR))] if rng.random() < 0.6 else rng.uniform(20, 255, 3)
    texture = 0.75 + 0.5 * _smooth_noise(rng, (size, size), int(rng.integers(3, 12)), 1)[..., 0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    shade_dir = rng.uniform(0, 2 * np.pi)
    shading = 1 + rng.uniform(0.1, 0.4) * ((xx - 0.5) * np.cos(shade_dir) + (yy - 0.5) * np.sin(shade_dir))
    rgb = (colour[None, None, :] * (texture * shading)[..., None]).clip(0, 255)
    return np.dstack([rgb * alpha[..., None], alpha]).astype(np.float32)


def trajectory(label: str, rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    """Per-frame object state (frames, 4): x, y as fractions of width/height, scale, angle (deg).

    Each gesture spans the whole clip, so every window inside the clip shows it.
    """
    t = np.arange(frames, dtype=np.float64)
    u = t / max(frames - 1, 1)
    x = np.full(frames, rng.uniform(0.3, 0.7))
    y = np.full(frames, rng.uniform(0.3, 0.7))
    scale = np.ones(frames)
    angle = np.full(frames, rng.uniform(-20, 20))
    ease = u + rng.uniform(-0.12, 0.12) * np.sin(np.pi * u)  # uneven but monotonic speed
    if label.startswith("swipe_"):
        travel = rng.uniform(0.45, 1.1)
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
    """One camera view: background, lighting, noise, optics and one object. Renders frames
    of (W, H) = ``size`` as BGR uint8 (H, W, 3) from an object state (x, y, scale, angle)."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]):
        self.w, self.h = size
        self.rng = rng
        self.margin = int(0.08 * max(size)) + 4
        self.background = _background(rng, (self.h + 2 * self.margin, self.w + 2 * self.margin))
        self.pan = rng.normal(0, 0.15, 2) * max(size) / 320  # px per frame
        self.shake = rng.uniform(0, 1.2) * max(size) / 320
        self.sprite_px = max(16, int(self.h * rng.uniform(0.3, 0.55)))
        self.sprite = _sprite(rng, self.sprite_px)
        self.present = True
        self.gain = rng.uniform(0.6, 1.3)
        self.flicker = (rng.uniform(0, 0.08), rng.uniform(0.05, 0.5), rng.uniform(0, 2 * np.pi))
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

    def render(self, state: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        """The next frame. ``state`` = (x, y, scale, angle); ``velocity`` = its per-frame change."""
        index = self._frame
        self._frame += 1
        self._cam = 0.8 * self._cam + self.rng.normal(0, self.shake, 2)
        span = 2 * self.margin
        # The pan bounces inside the margin (a triangle wave), so the view never jumps.
        pos = (self.margin + self.pan * index) % (2 * span)
        ox, oy = np.clip(np.where(pos < span, pos, 2 * span - pos) + self._cam, 0, span)
        shift = np.float32([[1, 0, -ox], [0, 1, -oy]])
        frame = cv2.warpAffine(self.background, shift, (self.w, self.h), borderMode=cv2.BORDER_REFLECT)
        if self.present:
            frame = self._composite(frame, state, velocity)
        amp, freq, phase = self.flicker
        frame *= (self.gain * (1 + amp * np.sin(2 * np.pi * freq * index / 25.0 + phase))) * self.light[..., None]
        frame += self.noise[index % len(self.noise)]
        out = frame.clip(0, 255).astype(np.uint8)
        if self.jpeg_quality:
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return out

    def _composite(self, frame: np.ndarray, state: np.ndarray, velocity: np.ndarray) -> np.ndarray:
        x, y, scale, angle = state
        centre = (self.sprite_px / 2, self.sprite_px / 2)
        m = cv2.getRotationMatrix2D(centre, float(angle), float(max(scale, 0.05)))
        m[:, 2] += (x * self.w - centre[0], y * self.h - centre[1])
        layer = cv2.warpAffine(self.sprite, m, (self.w, self.h), flags=cv2.INTER_LINEAR)
        vx, vy = velocity[0] * self.w, velocity[1] * self.h
        length = float(np.hypot(vx, vy) * self.exposure)
        if length > 1.0:  # motion blur: average the premultiplied layer along the motion
            k = int(np.ceil(length)) | 1
            kernel = np.zeros((k, k), np.float32)
            cv2.line(kernel, (int(k / 2 - vx / np.hypot(vx, vy) * k / 2), int(k / 2 - vy / np.hypot(vx, vy) * k / 2)),
                     (int(k / 2 + vx / np.hypot(vx, vy) * k / 2), int(k / 2 + vy / np.hypot(vx, vy) * k / 2)), 1.0, 1)
            layer = cv2.filter2D(layer, -1, kernel / max(kernel.sum(), 1.0))
        alpha = layer[..., 3:4]
        return frame * (1 - alpha) + layer[..., :3]


def render_clip(label: str, seed: int, size: tuple[int, int] = (160, 120), frames: int = 40,
                fps: float = 25.0) -> np.ndarray:
    """One clip of one gesture: BGR uint8 (frames, H, W, 3), size = (W, H). Same seed, same clip."""
    if label not in GESTURE_CLASSES:
        raise ValueError(f"unknown gesture {label!r}; choose from {GESTURE_CLASSES}")
    rng = np.random.default_rng(seed)
    scene = Scene(rng, size)
    scene.present = label != "no_gesture" or rng.random() < 0.8
    path = trajectory(label, rng, frames, fps)
    velocity = np.gradient(path[:, :2], axis=0)
    return np.stack([scene.render(path[i], velocity[i]) for i in range(frames)])


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
    at the speeds the model was trained on."""

    def __init__(self, seed: int = seeds.DEMO_STREAM, size: tuple[int, int] = (640, 480), fps: float = 25.0,
                 segment_frames: tuple[int, int] = (32, 48), segments_per_scene: tuple[int, int] = (4, 9)):
        self.seed, self.size, self.fps = seed, size, fps
        self.segment_frames, self.segments_per_scene = segment_frames, segments_per_scene

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        segment = 0
        while True:
            scene = Scene(rng, self.size)
            for _ in range(int(rng.integers(*self.segments_per_scene))):
                label = GESTURE_CLASSES[int(rng.integers(len(GESTURE_CLASSES)))]
                frames = int(rng.integers(*self.segment_frames))
                scene.present = label != "no_gesture" or rng.random() < 0.8
                path = trajectory(label, rng, frames, self.fps)
                velocity = np.gradient(path[:, :2], axis=0)
                for i in range(frames):
                    yield StreamFrame(scene.render(path[i], velocity[i]), label, segment)
                segment += 1
