"""Things that move in a gesture scene without carrying the label.

Each differs from a gesture in kind (size, speed, regularity), so the label stays the labelled
hand's gesture:

    Walker         a person-sized silhouette walking across the view (and back after a gap), or
                   turning and swaying in place: body-sized, walking speed
    SwayingBody    a close, large body (head and torso fill part of the view) swaying slowly
                   and irregularly, 0.08-0.35 Hz, against a wave's 1.6-3.5 Hz
    SlidingObject  a non-hand object (box, disc, blob, never skin-coloured) sliding slowly across
    DriftingHand   a second hand drifting aimlessly: its velocity wanders (no straight sweep, no
                   circle, no oscillation), slower than any gesture, its size never ramps
    Occluder       a static strip in front of the labelled hand (partial occlusion)

Each has ``kind`` and ``draw(frame, index)``: draw onto float32 BGR (H, W, 3) in place, at the
scene's frame ``index`` (0, 1, 2, ... in order).
"""

from __future__ import annotations

import cv2
import numpy as np

from twostream.hands import Hand, affine, blit, child_rng, non_skin_colour, over, shade, skin_colour

FPS = 25.0  # nominal frame rate for distractor timing (as the scene's flicker)
# Chance that a scene has each distractor, drawn independently (the same for every label, so a
# distractor never hints at one): 1 - 0.55*0.7*0.65*0.65 = 84 % of scenes have at least one mover.
PRESENCE = {"object": 0.35, "walker": 0.45, "body": 0.3, "hand": 0.35, "occluder": 0.25}


def person_sprite(rng: np.random.Generator, height: int) -> np.ndarray:
    """A standing person seen from the front: head, torso, arms, legs, in clothes and skin colours.
    Premultiplied BGRA float32 (height, height // 2, 4); the feet are at the bottom centre."""
    p, w = height, max(8, height // 2)
    cx = w / 2
    colours = {"skin": skin_colour(rng), "shirt": non_skin_colour(rng), "legs": rng.uniform(15, 170, 3)}
    parts = {k: np.zeros((p, w), np.uint8) for k in colours}
    shoulder, hip = p * rng.uniform(0.12, 0.15), p * rng.uniform(0.08, 0.11)
    top, waist = p * 0.19, p * 0.55
    torso = np.int32([[cx - shoulder, top], [cx + shoulder, top], [cx + hip, waist], [cx - hip, waist]])
    cv2.fillConvexPoly(parts["shirt"], torso, 255, cv2.LINE_AA)
    limb = max(2, int(p * 0.055))
    for s in (-1, 1):
        out = np.deg2rad(rng.uniform(2, 25))  # arms hang a little away from the body
        elbow = (cx + s * (shoulder + p * 0.17 * np.sin(out)), top + p * 0.17 * np.cos(out))
        bend = np.deg2rad(rng.uniform(-40, 20))
        hand = (elbow[0] + s * p * 0.16 * np.sin(out + bend), elbow[1] + p * 0.16 * np.cos(out + bend))
        cv2.line(parts["shirt"], (int(cx + s * shoulder * 0.85), int(top + limb / 2)), (int(elbow[0]), int(elbow[1])),
                 255, limb, cv2.LINE_AA)
        cv2.line(parts["shirt"], (int(elbow[0]), int(elbow[1])), (int(hand[0]), int(hand[1])), 255, limb, cv2.LINE_AA)
        cv2.circle(parts["skin"], (int(hand[0]), int(hand[1])), max(1, int(p * 0.03)), 255, -1, cv2.LINE_AA)
        foot = (cx + s * p * rng.uniform(0.03, 0.1), p * 0.98)
        cv2.line(parts["legs"], (int(cx + s * hip * 0.5), int(waist)), (int(foot[0]), int(foot[1])), 255,
                 max(2, int(p * 0.07)), cv2.LINE_AA)
    head = p * rng.uniform(0.06, 0.075)
    cv2.rectangle(parts["skin"], (int(cx - head * 0.4), int(head * 1.8)), (int(cx + head * 0.4), int(top + 2)), 255, -1)
    cv2.ellipse(parts["skin"], (int(cx), int(p * 0.01 + head)), (int(head * 0.85), int(head)), 0, 0, 360, 255, -1,
                cv2.LINE_AA)
    out = np.zeros((p, w, 4), np.float32)
    for name in ("legs", "shirt", "skin"):  # later parts in front
        layer = shade(rng, parts[name], colours[name])
        out = layer + out * (1 - layer[..., 3:4])
    return out


class Walker:
    """A person-sized silhouette that walks across the view, comes back after a gap, or turns
    (its width narrows and widens) and sways in place."""

    kind = "walker"

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]):
        self.w, self.h = size
        self.sprite = person_sprite(rng, max(16, int(self.h * rng.uniform(0.7, 1.4))))
        self.ph, self.pw = self.sprite.shape[:2]
        self.foot = self.h * rng.uniform(0.85, 1.3)  # feet may be below the view: only head and torso show
        self.walking = rng.random() < 0.65
        self.speed = self.w * rng.uniform(0.004, 0.012) * (1 if rng.random() < 0.5 else -1)  # px per frame
        self.lap = self.w + self.pw + self.w * rng.uniform(0.1, 0.8)  # the view, the body, then a gap
        self.start = rng.uniform(0, self.lap)
        self.step = FPS / rng.uniform(1.6, 2.2)  # frames per step
        self.x = self.w * rng.uniform(0.15, 0.85)
        self.turn = (rng.uniform(0, 2 * np.pi), rng.uniform(0.02, 0.08), rng.uniform(0, 0.8), rng.uniform(0, 6))
        self.sway = (rng.uniform(1, 5), 2 * np.pi * rng.uniform(0.1, 0.4) / FPS, rng.uniform(0, 2 * np.pi))

    def draw(self, frame: np.ndarray, index: int) -> None:
        amp, omega, phase = self.sway
        if self.walking:
            travelled = (self.start + abs(self.speed) * index) % self.lap - self.pw / 2
            x = travelled if self.speed > 0 else self.w - travelled
            y = self.foot - 0.012 * self.ph * abs(np.sin(np.pi * index / self.step))  # the bob of each step
            squeeze, angle = 1.0, 1.5 * np.sin(np.pi * index / self.step)
        else:
            start, rate, wobble, wobble_phase = self.turn
            facing = start + rate * index + wobble * np.sin(0.05 * index + wobble_phase)  # uneven turning
            x, y = self.x + 0.02 * self.w * np.sin(omega * 0.7 * index), self.foot
            squeeze, angle = 0.55 + 0.45 * abs(np.cos(facing)), amp * np.sin(omega * index + phase)
        blit(frame, self.sprite, affine((self.pw / 2, self.ph), (x, y), squeeze, 1.0, angle))


class SwayingBody:
    """A close person (larger than the view) whose head and torso sway slowly about the feet."""

    kind = "body"

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]):
        self.w, self.h = size
        self.sprite = person_sprite(rng, max(16, int(self.h * rng.uniform(1.6, 2.6))))
        self.ph, self.pw = self.sprite.shape[:2]
        self.x = self.w * rng.uniform(0.05, 0.95)
        self.foot = self.h * rng.uniform(-0.1, 0.3) + self.ph  # head top near the top of the view
        # Two incommensurate slow sways: irregular, never one clean oscillation.
        self.waves = [(rng.uniform(1.5, 4), 2 * np.pi * rng.uniform(0.08, 0.35) / FPS, rng.uniform(0, 2 * np.pi)),
                      (rng.uniform(0.5, 2), 2 * np.pi * rng.uniform(0.08, 0.35) / FPS, rng.uniform(0, 2 * np.pi))]

    def draw(self, frame: np.ndarray, index: int) -> None:
        angle = sum(a * np.sin(omega * index + phase) for a, omega, phase in self.waves)
        blit(frame, self.sprite, affine((self.pw / 2, self.ph), (self.x, self.foot), 1.0, 1.0, angle))


def object_sprite(rng: np.random.Generator, size: int) -> np.ndarray:
    """A box, disc or blob in a non-skin colour, premultiplied BGRA float32 (size, size, 4)."""
    mask = np.zeros((size, size), np.uint8)
    c = size // 2
    kind = rng.integers(3)
    if kind == 0:
        half = (int(size * rng.uniform(0.2, 0.48)), int(size * rng.uniform(0.2, 0.48)))
        cv2.rectangle(mask, (c - half[0], c - half[1]), (c + half[0], c + half[1]), 255, -1)
    elif kind == 1:
        cv2.ellipse(mask, (c, c), (int(size * rng.uniform(0.2, 0.48)), int(size * rng.uniform(0.2, 0.48))),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radii = size * rng.uniform(0.25, 0.48, 9)
        cv2.fillPoly(mask, [np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1).astype(np.int32)],
                     255, cv2.LINE_AA)
    return shade(rng, mask, non_skin_colour(rng))


class SlidingObject:
    """A non-hand object sliding slowly across the view (a chair, a bag, a passing car), back
    after a gap."""

    kind = "object"

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]):
        self.w, self.h = size
        self.px = max(8, int(self.h * rng.uniform(0.25, 0.8)))
        self.sprite = object_sprite(rng, self.px)
        self.vertical = rng.random() < 0.25
        extent = self.h if self.vertical else self.w
        # At most 0.008 of the view per frame: slower than the slowest swipe (0.45 over 48 frames).
        self.speed = extent * rng.uniform(0.002, 0.008) * (1 if rng.random() < 0.5 else -1)
        self.lap = extent + self.px * 1.5 + extent * rng.uniform(0.1, 1.0)
        self.start = rng.uniform(0, self.lap)
        self.across = rng.uniform(0.15, 0.85) * (self.w if self.vertical else self.h)
        self.angle, self.spin = rng.uniform(0, 360), rng.uniform(-0.3, 0.3)

    def draw(self, frame: np.ndarray, index: int) -> None:
        extent = self.h if self.vertical else self.w
        along = (self.start + abs(self.speed) * index) % self.lap - self.px * 0.75
        if self.speed < 0:
            along = extent - along
        at = (self.across, along) if self.vertical else (along, self.across)
        centre = (self.px / 2, self.px / 2)
        blit(frame, self.sprite, affine(centre, at, 1.0, 1.0, self.angle + self.spin * index))


class DriftingHand:
    """A second hand (with forearm) moving aimlessly. Its velocity is a damped random walk, capped
    at ``MAX_SPEED``; its size wanders within +-12 % and reverts: no sweep, circle, wave or push."""

    kind = "hand"
    MAX_SPEED = 0.005  # fraction of width/height per frame; the slowest swipe averages ~0.0094

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]):
        self.w, self.h = size
        self.rng = rng
        self.hand = Hand(rng, size, max(16, int(self.h * rng.uniform(0.25, 0.5))))
        self.pos = rng.uniform(0.1, 0.9, 2)
        self.vel = np.zeros(2)
        self.log_scale, self.bend = 0.0, rng.uniform(-20, 20)
        self.index = -1

    def step(self) -> np.ndarray:
        """Advance one frame; returns the state (x, y, scale, bend)."""
        self.vel = 0.8 * self.vel + self.rng.normal(0, 0.0015, 2)  # forgets its direction in ~5 frames
        speed = float(np.hypot(*self.vel))
        if speed > self.MAX_SPEED:
            self.vel *= self.MAX_SPEED / speed
        self.pos = self.pos + self.vel
        leaving = ((self.pos < -0.05) & (self.vel < 0)) | ((self.pos > 1.05) & (self.vel > 0))
        self.vel[leaving] *= -1  # turn back near the edges, so it stays around
        self.log_scale = float(np.clip(0.95 * self.log_scale + self.rng.normal(0, 0.006), -0.12, 0.12))
        self.bend = float(np.clip(self.bend + self.rng.normal(0, 1.0), -30, 30))
        self.index += 1
        return np.array([self.pos[0], self.pos[1], np.exp(self.log_scale), self.bend])

    def draw(self, frame: np.ndarray, index: int) -> None:
        state = self.step()
        while self.index < index:  # frames skipped: keep the walk in step with the scene
            state = self.step()
        drawn = self.hand.layer(frame.shape[:2], *state)
        if drawn is not None:
            over(frame, *drawn)


class Occluder:
    """A static strip (a pole, a cup, a monitor edge) in front of the labelled hand."""

    kind = "occluder"

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]):
        w, h = size
        mask = np.zeros((h, w), np.uint8)
        half = w * rng.uniform(0.015, 0.04)
        if rng.random() < 0.75:  # upright, slanted up to 25 degrees
            x, lean = w * rng.uniform(0.25, 0.75), h * np.tan(np.deg2rad(rng.uniform(-25, 25)))
            pts = [[x - half, 0], [x + half, 0], [x + half + lean, h], [x - half + lean, h]]
        else:  # an edge along the bottom
            y = h * rng.uniform(0.75, 0.95)
            pts = [[0, y], [w, y + rng.uniform(-0.1, 0.1) * h], [w, h], [0, h]]
        cv2.fillConvexPoly(mask, np.int32(pts), 255, cv2.LINE_AA)
        layer = shade(rng, mask, non_skin_colour(rng))
        ys, xs = np.nonzero(layer[..., 3] > 0)
        self.x0, self.y0 = (int(xs.min()), int(ys.min())) if len(xs) else (0, 0)
        self.layer = layer[self.y0:int(ys.max()) + 1, self.x0:int(xs.max()) + 1] if len(xs) else layer[:0, :0]

    def draw(self, frame: np.ndarray, index: int) -> None:
        over(frame, self.layer, self.x0, self.y0)


def random_distractors(rng: np.random.Generator, size: tuple[int, int]) -> tuple[list, list]:
    """The distractors of one scene of (W, H) = ``size``, each present by chance (``PRESENCE``).
    Returns (behind, in_front): drawn behind and in front of the labelled hand, in order."""
    present = {kind: rng.random() < p for kind, p in PRESENCE.items()}  # drawn first: fixed order
    seeds = {kind: child_rng(rng) for kind in PRESENCE}
    made = {kind: cls(seeds[kind], size) for kind, cls in (("object", SlidingObject), ("walker", Walker),
                                                           ("body", SwayingBody), ("hand", DriftingHand),
                                                           ("occluder", Occluder)) if present[kind]}
    behind = [made[k] for k in ("object", "walker", "body", "hand") if k in made]
    return behind, [made["occluder"]] if "occluder" in made else []
