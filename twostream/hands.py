"""Drawing helpers shared by the gesture scene and its distractors, and the hand: a jointed,
skin-toned, shaded hand with its forearm. Sprites are premultiplied BGRA float32 (h, w, 4)
with alpha in 0..1; frames are float32 BGR (H, W, 3) in 0..255, drawn on in place.
"""

from __future__ import annotations

import cv2
import numpy as np

_SKIN_DARK = np.array([45, 62, 98], np.float32)  # BGR
_SKIN_LIGHT = np.array([168, 192, 235], np.float32)


def child_rng(rng: np.random.Generator) -> np.random.Generator:
    """A generator seeded from ``rng``: what it draws never shifts ``rng``'s later draws."""
    return np.random.default_rng(int(rng.integers(0, 2**62)))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int, channels: int) -> np.ndarray:
    """Low-frequency colour noise in 0..1, (H, W, channels)."""
    h, w = shape
    small = rng.random((max(2, cells * h // max(h, w)), max(2, cells * w // max(h, w)), channels))
    big = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return big.reshape(h, w, channels).clip(0, 1)


def skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A skin tone between dark and light, BGR float32 (3,)."""
    tone = _SKIN_DARK + rng.random() * (_SKIN_LIGHT - _SKIN_DARK)
    return (tone * rng.uniform(0.95, 1.05, 3)).clip(0, 255).astype(np.float32)


def non_skin_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour whose channels are not ordered like skin (R > G > B), BGR float32 (3,)."""
    colour = rng.uniform(20, 250, 3).astype(np.float32)
    return colour[::-1].copy() if colour[2] > colour[1] > colour[0] else colour


def shade(rng: np.random.Generator, mask: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """Colour a mask uint8 (h, w) with texture, a light gradient and darker rims.
    Returns premultiplied BGRA float32 (h, w, 4), alpha in 0..1."""
    h, w = mask.shape
    texture = 0.82 + 0.36 * smooth_noise(rng, (h, w), int(rng.integers(3, 12)), 1)[..., 0]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = rng.uniform(0, 2 * np.pi)
    gradient = 1 + rng.uniform(0.15, 0.5) * ((xx / w - 0.5) * np.cos(d) + (yy / h - 0.5) * np.sin(d))
    # Rounded things are darker at their silhouette: shade by distance to the edge.
    inside = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 3)
    rim = 0.7 + 0.3 * np.clip(inside / (0.03 * max(h, w) + 1), 0, 1)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (3, 3), 0)
    rgb = (colour[None, None, :] * (texture * gradient * rim)[..., None]).clip(0, 255)
    return np.dstack([rgb * alpha[..., None], alpha]).astype(np.float32)


def affine(pivot, at, sx: float, sy: float, angle_deg: float) -> np.ndarray:
    """2x3 map taking sprite point ``pivot`` to frame point ``at``: scale (sx, sy), then rotate
    by ``angle_deg`` counterclockwise on screen (as cv2.getRotationMatrix2D)."""
    a = np.deg2rad(angle_deg)
    lin = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) @ np.diag([sx, sy])
    shift = np.asarray(at, np.float64) - lin @ np.asarray(pivot, np.float64)
    return np.hstack([lin, shift[:, None]]).astype(np.float32)


def bounds(points: np.ndarray, frame_hw: tuple[int, int], pad: int) -> tuple[int, int, int, int] | None:
    """Integer box (x0, y0, x1, y1) around points (n, 2), padded, clipped to the frame; None if empty."""
    h, w = frame_hw
    x0, y0 = np.floor(points.min(0)).astype(int) - pad
    x1, y1 = np.ceil(points.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def corners(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Frame positions (4, 2) of the corners of a sprite of ``shape`` (h, w, ...) under ``m``."""
    h, w = shape[:2]
    return np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float32) @ m.T


def blit(frame: np.ndarray, sprite: np.ndarray, m: np.ndarray) -> None:
    """Warp premultiplied BGRA ``sprite`` by ``m`` and composite it onto ``frame`` in place,
    touching only the box it covers (cheap for small or partly visible sprites)."""
    box = bounds(corners(m, sprite.shape), frame.shape[:2], 1)
    if box is None:
        return
    x0, y0, x1, y1 = box
    shifted = m.copy()
    shifted[:, 2] -= (x0, y0)
    over(frame, cv2.warpAffine(sprite, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR), x0, y0)


def over(frame: np.ndarray, layer: np.ndarray, x0: int, y0: int) -> None:
    """Composite premultiplied BGRA ``layer`` (h, w, 4) onto ``frame`` (H, W, 3) at (x0, y0), in place."""
    h, w = layer.shape[:2]
    roi = frame[y0:y0 + h, x0:x0 + w]
    # Contiguous 3-channel operands: numpy broadcasting an (h, w, 1) alpha is ~7x slower.
    roi *= cv2.cvtColor(np.ascontiguousarray(1 - layer[..., 3]), cv2.COLOR_GRAY2BGR)
    roi += cv2.cvtColor(layer, cv2.COLOR_BGRA2BGR)


def hand_sprite(rng: np.random.Generator, size: int, colour: np.ndarray) -> tuple[np.ndarray, tuple, float]:
    """An open-ish hand, fingers up: palm, four jointed fingers with random spread and curl, and a
    thumb. Returns (premultiplied BGRA (size, size, 4), wrist (x, y) in sprite px, palm half-width px).
    The palm's centre is near the sprite's centre, so a trajectory's (x, y) is the hand's."""
    mask = np.zeros((size, size), np.uint8)
    c = size / 2
    palm_w, palm_h = size * rng.uniform(0.15, 0.19), size * rng.uniform(0.16, 0.2)
    py = c + 0.08 * size
    cv2.ellipse(mask, (int(c), int(py)), (int(palm_w), int(palm_h)), 0, 0, 360, 255, -1, cv2.LINE_AA)
    side = 1 if rng.random() < 0.5 else -1  # thumb on the right or the left (back or palm view)
    spread = rng.uniform(2, 12)
    width = size * rng.uniform(0.06, 0.075)
    finger_len = size * rng.uniform(0.24, 0.3)
    relative = np.array([0.92, 1.0, 0.94, 0.76])  # index, middle, ring, little
    for i in range(4):
        anatomical = i if side == -1 else 3 - i
        curl = min(rng.random() ** 2 * 1.3, 1.0)  # mostly extended, now and then folded
        length = finger_len * relative[anatomical] * (1 - 0.55 * curl)  # a curled finger looks shorter
        ang = np.deg2rad(-90 + (i - 1.5) * spread + rng.normal(0, 3))
        p = np.array([c + (i - 1.5) * palm_w * 0.62, py - palm_h * 0.75])
        for j, frac in enumerate((0.45, 0.32, 0.23)):  # three phalanges, each bending a little more
            ang += np.deg2rad(rng.uniform(-4, 4) + side * curl * 10)
            q = p + frac * length * np.array([np.cos(ang), np.sin(ang)])
            thick = max(2, int(width * (1 - 0.12 * j)))
            cv2.line(mask, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, thick, cv2.LINE_AA)
            cv2.circle(mask, (int(q[0]), int(q[1])), max(1, thick // 2), 255, -1, cv2.LINE_AA)
            p = q
    p = np.array([c + side * palm_w * 0.7, py + palm_h * 0.15])
    ang = np.deg2rad(-90 + side * rng.uniform(35, 75))
    for frac in (0.14, 0.11):
        q = p + frac * size * np.array([np.cos(ang), np.sin(ang)])
        cv2.line(mask, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 255, max(2, int(width * 1.15)), cv2.LINE_AA)
        p = q
        ang -= np.deg2rad(side * rng.uniform(0, 25))
    return shade(rng, mask, colour), (c, py + palm_h * 0.92), palm_w


class Hand:
    """A hand with its forearm. The forearm runs from the wrist toward ``anchor``, a point outside
    the frame (below or to a side) where the elbow and body are, so it pivots as the hand moves
    and the hand's fingers point away from it."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int], px: int):
        w, h = size
        self.px = px
        self.colour = skin_colour(rng) if rng.random() < 0.88 else non_skin_colour(rng)  # else a glove
        self.sprite, self.wrist, palm_half = hand_sprite(rng, px, self.colour)
        self.arm_half = palm_half * rng.uniform(0.72, 0.88)
        self.arm_length = px * rng.uniform(1.2, 1.9)
        self.sleeve = (rng.uniform(0.2, 0.8), non_skin_colour(rng)) if rng.random() < 0.6 else None
        where = rng.random()
        if where < 0.6:
            self.anchor = np.array([w * rng.uniform(0.1, 0.9), h * rng.uniform(1.3, 1.8)])
        else:
            self.anchor = np.array([w * (-0.4 if where < 0.8 else 1.4), h * rng.uniform(0.8, 1.6)])

    def layer(self, frame_hw: tuple[int, int], x: float, y: float, scale: float, bend: float,
              pad: int = 1) -> tuple[np.ndarray, int, int] | None:
        """Hand and forearm at (x, y) (fractions of width, height), ``scale`` times its size, the hand
        bent ``bend`` degrees at the wrist. Returns (premultiplied BGRA (h, w, 4), x0, y0) covering
        the visible part padded by ``pad`` px, or None when nothing shows."""
        fh, fw = frame_hw
        centre = np.array([x * fw, y * fh])
        to_body = self.anchor - centre
        direction = to_body / max(float(np.hypot(*to_body)), 1e-3)
        angle = float(np.degrees(np.arctan2(direction[0], direction[1]))) + bend
        m = affine((self.px / 2, self.px / 2), centre, scale, scale, angle)
        wrist = m[:, :2] @ np.array(self.wrist) + m[:, 2]
        perp = np.array([-direction[1], direction[0]])
        half0, half1 = self.arm_half * scale, self.arm_half * scale * 1.25
        start = wrist - direction * half0  # overlap the palm so no gap shows at the wrist
        elbow = wrist + direction * self.arm_length * scale
        arm = np.array([start + perp * half0, start - perp * half0, elbow - perp * half1, elbow + perp * half1])
        box = bounds(np.vstack([arm, corners(m, self.sprite.shape)]), frame_hw, pad)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        origin = np.array([x0, y0])
        under = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
        # Fixed-point polygon corners (shift=4) keep the arm's motion sub-pixel smooth.
        cv2.fillConvexPoly(under, np.int32((arm - origin) * 16), (*self.colour.tolist(), 1.0), cv2.LINE_8, 4)
        lit = 0.45 * perp * half0  # a lighter band along one side: a round forearm catches the light
        band = np.array([start + lit + perp * half0 * 0.3, start + lit - perp * half0 * 0.3,
                         elbow + lit * 1.25 - perp * half1 * 0.3, elbow + lit * 1.25 + perp * half1 * 0.3])
        cv2.fillConvexPoly(under, np.int32((band - origin) * 16), (*(self.colour * 1.12).clip(0, 255).tolist(), 1.0),
                           cv2.LINE_8, 4)
        if self.sleeve is not None:
            at, cloth = self.sleeve
            cuff = wrist + direction * self.arm_length * scale * at
            grow = 1 + 0.25 * at
            sleeve = np.array([cuff + perp * half0 * grow * 1.1, cuff - perp * half0 * grow * 1.1,
                               elbow - perp * half1 * 1.1, elbow + perp * half1 * 1.1])
            cv2.fillConvexPoly(under, np.int32((sleeve - origin) * 16), (*cloth.tolist(), 1.0), cv2.LINE_8, 4)
        shifted = m.copy()
        shifted[:, 2] -= origin
        hand = cv2.warpAffine(self.sprite, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR)
        return hand + under * (1 - hand[..., 3:4]), x0, y0
