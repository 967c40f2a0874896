"""The browser's own webcam as a live Source. Gradio's streaming image input calls ``push``
(from a request thread) with each frame; the capture thread ``read``s them.

Newest wins, as for a camera: a slot of one frame, replaced on every push, so a slow pipeline
never scores stale frames. ``finish`` makes ``read`` return None (end of source) so that the
pipeline's capture thread ends at once when the session switches source or closes.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from realtime.sources import Source
from twostream.errors import SourceDisconnected, SourceError


class BrowserWebcamSource(Source):
    """Frames pushed by the page. ``read_timeout_s`` without a frame counts as disconnected
    (the user stopped the webcam or closed the tab)."""

    live = True

    def __init__(self, fps: float = 25.0, read_timeout_s: float = 10.0):
        self.fps = fps
        self.read_timeout_s = read_timeout_s
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._finished = False
        self.pushed = 0

    @property
    def description(self) -> str:
        return "browser webcam"

    def _open(self) -> None:
        pass  # frames arrive by push; nothing to open

    def push(self, rgb: np.ndarray) -> None:
        """One webcam frame as Gradio delivers it: (h, w, 3) RGB uint8 (RGBA and grey accepted)."""
        if not isinstance(rgb, np.ndarray) or rgb.ndim not in (2, 3) or rgb.dtype != np.uint8:
            raise SourceError(f"webcam frame: expected an (h, w, 3) uint8 image, got "
                              f"{getattr(rgb, 'shape', type(rgb).__name__)}")
        if rgb.ndim == 2:
            bgr = cv2.cvtColor(rgb, cv2.COLOR_GRAY2BGR)
        elif rgb.shape[2] == 4:
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGR)
        else:
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        with self._cond:
            self._frame = bgr
            self.pushed += 1
            self._cond.notify_all()

    def read(self) -> tuple[np.ndarray, None] | None:
        with self._cond:
            got = self._cond.wait_for(lambda: self._frame is not None or self._finished, self.read_timeout_s)
            if self._finished:
                return None
            if not got:
                raise SourceDisconnected(f"{self.description} sent no frame for {self.read_timeout_s:g} s "
                                         "(stopped, or the tab went away)")
            frame, self._frame = self._frame, None
        return frame, None

    def finish(self) -> None:
        """End the stream: a blocked ``read`` returns None now."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()
