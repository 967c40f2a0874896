"""Frame pairs with known motion, to measure optical flow against the truth.

Each pair is two grey uint8 frames (H, W) and the true displacement (H, W, 2) px of every
pixel of the first frame (x then y): prev(x) = cur(x + truth(x)). The scenes are smooth random
textures (Gaussian-blurred noise: flow needs gradients, and TV-L1's linearisation needs them
smooth at the scale of the motion) moved by a sub-pixel translation, a rotation, a zoom, and a
textured object sliding over a static textured background. The tests (tests/twostream/
test_tvl1.py) and the flow benchmark (benchmarks/flowbench.py) use the same pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from twostream.preprocess import resize_frame

MOTIONS = ("translate", "rotate", "zoom", "object")


@dataclass(frozen=True)
class MotionPair:
    """prev, cur: grey uint8 (H, W); truth: float32 (H, W, 2) px, prev(x) = cur(x + truth(x))."""

    name: str
    prev: np.ndarray
    cur: np.ndarray
    truth: np.ndarray

    @property
    def magnitude(self) -> float:
        """Mean length of the true displacement, px."""
        return float(np.linalg.norm(self.truth, axis=-1).mean())


def smooth_texture(height: int, width: int, rng: np.random.Generator, sigma: float = 2.5) -> np.ndarray:
    """float32 (height, width) in 0..255: blurred white noise stretched to the full range."""
    noise = rng.uniform(0, 255, (height, width)).astype(np.float32)
    texture = cv2.GaussianBlur(noise, (0, 0), sigma)
    low, high = float(texture.min()), float(texture.max())
    return (texture - low) * (255.0 / max(high - low, 1e-6))


def _grey(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _affine_pair(name: str, size: tuple[int, int], matrix: np.ndarray, rng: np.random.Generator) -> MotionPair:
    """prev = a window on a larger texture; cur = the same texture moved by x -> A x (2x3,
    image coordinates of prev), sampled bicubically, so nothing enters from outside."""
    height, width = size
    texture = smooth_texture(2 * height, 2 * width, rng)
    offset = np.array([width / 2, height / 2])
    prev = texture[height // 2:height // 2 + height, width // 2:width // 2 + width]
    full = np.vstack([matrix, [0, 0, 1]])
    inverse = np.linalg.inv(full)[:2]  # y -> A^-1 y, then into the texture's coordinates
    inverse[:, 2] += offset
    cur = cv2.warpAffine(texture, inverse, (width, height), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    moved_x = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    moved_y = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    truth = np.stack([moved_x - xs, moved_y - ys], axis=-1).astype(np.float32)
    return MotionPair(name, _grey(prev), _grey(cur), truth)


def _about_centre(size: tuple[int, int], angle_deg: float, scale: float) -> np.ndarray:
    height, width = size
    return cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle_deg, scale)


def _object_pair(size: tuple[int, int], shift: tuple[float, float], rng: np.random.Generator) -> MotionPair:
    """A textured square (half the frame) moved by ``shift`` over a static textured background."""
    height, width = size
    background = smooth_texture(height, width, rng)
    side = min(height, width) // 2
    patch = smooth_texture(side + 8, side + 8, rng, sigma=2.0)  # margin for the sub-pixel shift
    top, left = (height - side) // 2, (width - side) // 2

    def paste(dx: float, dy: float) -> np.ndarray:
        """The background with the patch at (top, left) + (dx, dy): moved by the fraction of
        the shift (bicubic), placed at its whole part."""
        fx, fy = dx - math.floor(dx), dy - math.floor(dy)
        moved = cv2.warpAffine(patch, np.float32([[1, 0, 4 - fx], [0, 1, 4 - fy]]), (side, side),
                               flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
        frame = background.copy()
        y0, x0 = top + math.floor(dy), left + math.floor(dx)
        frame[y0:y0 + side, x0:x0 + side] = moved
        return frame

    truth = np.zeros((height, width, 2), np.float32)
    truth[top:top + side, left:left + side] = shift
    return MotionPair("object", _grey(paste(0.0, 0.0)), _grey(paste(*shift)), truth)


def motion_pairs(size: tuple[int, int] = (112, 112), seed: int = 0) -> tuple[MotionPair, ...]:
    """One pair per MOTIONS entry at ``size`` (H, W), about 1.5 to 3.5 px of motion each."""
    rng = np.random.default_rng(seed)
    scale = min(size) / 112  # the same motion relative to the frame at every size
    return (
        _affine_pair("translate", size, np.float64([[1, 0, 1.3 * scale], [0, 1, -0.7 * scale]]), rng),
        _affine_pair("rotate", size, _about_centre(size, 3.0, 1.0), rng),
        _affine_pair("zoom", size, _about_centre(size, 0.0, 1.04), rng),
        _object_pair(size, (2.6 * scale, -1.4 * scale), rng),
    )


def endpoint_error(flow: np.ndarray, truth: np.ndarray, margin: int = 8) -> float:
    """Mean |flow - truth| (H, W, 2) px, leaving out a ``margin`` px band at the frame border
    (where the true motion takes pixels out of view and no method can know it)."""
    error = np.linalg.norm(flow.astype(np.float64) - truth, axis=-1)
    return float(error[margin:-margin, margin:-margin].mean())


def video_pairs(paths, size: tuple[int, int], per_video: int = 2, gap: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive frames of real footage: from each video, frames 0 and 1, gap and gap + 1, ...
    (``per_video`` pairs), resized as every consumer of the contract resizes -> grey uint8 prev, cur (N, H, W).
    Videos that cannot be read are left out; no pairs at all gives (0, H, W) arrays."""
    prev, cur = [], []
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        frames = [capture.read()[1] for _ in range(gap * per_video)]
        capture.release()
        for start in range(0, len(frames) - 1, gap):
            if frames[start] is not None and frames[start + 1] is not None:
                prev.append(resize_frame(frames[start], size)[1])
                cur.append(resize_frame(frames[start + 1], size)[1])
    if not prev:
        return np.zeros((0, *size), np.uint8), np.zeros((0, *size), np.uint8)
    return np.stack(prev), np.stack(cur)
