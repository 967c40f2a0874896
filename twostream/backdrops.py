"""Real moving backgrounds for generated gestures: real footage playing on behind the
generator's object, seen through a synthetic camera that pans, zooms and shakes.

The generator's hook (twostream.gestures):
    render_clip(label, seed, size, frames, fps, backdrop=None)
    GestureStream(..., backdrop_factory=None)
where ``backdrop(i)`` is frame i of the background, float32 BGR 0..255, (H, W, 3) at the clip
size (W, H), and ``backdrop_factory(rng, size)`` makes one backdrop per scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from twostream.errors import DataError
from twostream.realdata import RealVideo, bounce


@dataclass(frozen=True)
class Camera:
    """Ranges of the synthetic camera's motion (per clip frame; shares of the view)."""

    zoom: tuple[float, float] = (1.0, 1.6)  # 1: the largest view of the clip's aspect the frame holds
    zoom_walk: float = 0.004  # standard deviation of the zoom's velocity change per frame
    pan_walk: float = 0.002  # of the centre's velocity change per frame, as a share of the frame
    damping: float = 0.92  # velocities decay, so the walk is smooth and does not run off
    shake: tuple[float, float] = (0.0, 0.006)  # per-clip shake amplitude, share of the view


class RealBackdrop:
    """Frame i of a moving real background, callable: ``backdrop(i)`` -> float32 BGR 0..255
    (H, W, 3), size = (W, H).

    ``frames`` (N, h, w, 3) uint8 BGR plays on at ``step`` source frames per clip frame, forward
    then backward when the clip outlasts it. A camera walks smoothly over the frame (centre and
    zoom with damped random velocities) and shakes; the walk is drawn from ``rng`` step by step
    up to the largest i asked for, so the same rng gives the same frames in any call order."""

    def __init__(self, frames: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                 step: float = 1.0, camera: Camera = Camera()):
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise DataError(f"backdrop frames must be (N, h, w, 3), got {frames.shape}")
        self.frames, self.size, self.step, self.camera = frames, tuple(size), float(step), camera
        self._rng = np.random.default_rng(rng.integers(2 ** 63))  # its own stream: call order is free
        self._flip = bool(self._rng.random() < 0.5)
        self._phase = float(self._rng.uniform(0, max(1, 2 * (len(frames) - 1))))
        self._shake = float(self._rng.uniform(*camera.shake))
        zoom = float(self._rng.uniform(*camera.zoom))
        self._state = np.array([self._rng.uniform(0.35, 0.65), self._rng.uniform(0.35, 0.65), zoom])
        self._velocity = np.zeros(3)
        self._path: list[np.ndarray] = []  # (cx, cy, zoom, shake x, shake y) per clip frame

    def _pose(self, i: int) -> np.ndarray:
        cam = self.camera
        while len(self._path) <= i:
            kick = self._rng.normal(0, [cam.pan_walk, cam.pan_walk, cam.zoom_walk])
            self._velocity = cam.damping * self._velocity + kick
            self._state = self._state + self._velocity
            low, high = cam.zoom
            if not low <= self._state[2] <= high:  # zoom bounces off its range
                self._state[2] = np.clip(self._state[2], low, high)
                self._velocity[2] = -self._velocity[2]
            shake = self._rng.normal(0, self._shake, 2)
            self._path.append(np.concatenate([self._state, shake]))
        return self._path[i]

    def __call__(self, i: int) -> np.ndarray:
        if i < 0:
            raise DataError(f"backdrop frame {i} < 0")
        cx, cy, zoom, sx, sy = self._pose(i)
        src = self.frames[int(bounce(np.array([self._phase + i * self.step]), len(self.frames))[0])]
        h, w = src.shape[:2]
        out_w, out_h = self.size
        # The largest view of the clip's aspect inside the frame, shrunk by the zoom; its centre
        # is kept inside the frame so the border (reflected) stays thin.
        base = min(w / out_w, h / out_h)
        view_w, view_h = out_w * base / zoom, out_h * base / zoom
        half_x, half_y = view_w / 2, view_h / 2
        centre_x = np.clip(cx * w, half_x, w - half_x) + sx * view_w
        centre_y = np.clip(cy * h, half_y, h - half_y) + sy * view_h
        scale = out_w / view_w
        matrix = np.float32([[scale, 0, out_w / 2 - scale * centre_x], [0, scale, out_h / 2 - scale * centre_y]])
        frame = cv2.warpAffine(src, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if self._flip:
            frame = frame[:, ::-1]
        return np.ascontiguousarray(frame, dtype=np.float32)


@dataclass(frozen=True)
class BackdropPool:
    """The decoded training files real backgrounds are drawn from."""

    videos: tuple[RealVideo, ...]
    camera: Camera = Camera()
    speed: tuple[float, float] = (0.6, 1.6)  # playback speed of the background, log-uniform

    def __post_init__(self) -> None:
        if not self.videos:
            raise DataError("a backdrop pool needs at least one decoded video")

    def _draw(self, rng: np.random.Generator, fps: float) -> tuple[RealVideo, float]:
        video = self.videos[int(rng.integers(len(self.videos)))]
        speed = float(np.exp(rng.uniform(*np.log(self.speed))))
        return video, speed * video.fps / fps

    def sample(self, rng: np.random.Generator, size: tuple[int, int], frames: int, fps: float) -> RealBackdrop:
        """A backdrop for one clip of ``frames`` frames at ``fps``, holding only the stretch of
        source frames the clip plays (so it is cheap to send to a worker process)."""
        video, step = self._draw(rng, fps)
        needed = int(np.ceil((frames - 1) * step)) + 2
        start = int(rng.integers(0, max(1, len(video.frames) - needed + 1)))
        return RealBackdrop(video.frames[start:start + needed], size, rng, step, self.camera)

    def factory(self, fps: float):
        """``backdrop_factory(rng, size)`` for GestureStream: one whole file per scene,
        playing on for as long as the scene lasts."""

        def make(rng: np.random.Generator, size: tuple[int, int]) -> RealBackdrop:
            video, step = self._draw(rng, fps)
            return RealBackdrop(video.frames, size, rng, step, self.camera)

        return make
