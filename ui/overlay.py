"""The overlay drawn on the live view: top-k labels with confidence bars, the current label
highlighted once it passes a threshold, a latency line, for sources that know the truth the
true label and the live accuracy, and the gesture event going on (if any).

Stateless: ``annotate`` returns a new display-size frame and never touches its input (the input
is the pipeline's own captured frame, which other threads may still read). A handful of cv2
calls per frame (well under a millisecond at 640x480): the 2-core budget belongs to the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from realtime.messages import Prediction

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
GREY = (170, 170, 170)
PANEL = (32, 32, 32)
BAR = (200, 140, 40)  # BGR: blue bars for plain scores
HIGHLIGHT = (60, 200, 60)  # green: the label passed the threshold
TRUTH_OK = (60, 200, 60)
TRUTH_BAD = (60, 60, 230)
EVENT = (0, 190, 255)  # orange: a gesture event is going on (twostream.events)


@dataclass(frozen=True)
class OverlaySettings:
    """``size`` is the display (W, H); ``threshold`` the score at which the top label is
    highlighted as the current one; ``topk`` rows at most."""

    size: tuple[int, int] = (640, 480)
    threshold: float = 0.5
    topk: int = 3
    font_scale: float = 0.5
    row_h: int = 22
    bar_w: int = 120
    panel_w: int = 360


@dataclass(frozen=True)
class OverlayInfo:
    """Numbers the overlay shows besides the prediction: input frame rate, live accuracy over
    windows wholly inside one gesture (None when the source knows no truth), and the frame
    index on screen (so a viewer can tell frames apart)."""

    fps: float = 0.0
    accuracy: float | None = None
    frame_index: int | None = None


def to_display(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A new (H, W, 3) uint8 array at display ``size`` (W, H); always a copy."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame.copy()
    return cv2.resize(frame, tuple(size), interpolation=cv2.INTER_LINEAR)


def _text(img: np.ndarray, text: str, org: tuple[int, int], color, scale: float, thick: int = 1) -> None:
    cv2.putText(img, text, org, FONT, scale, color, thick, cv2.LINE_AA)


def annotate(frame: np.ndarray, prediction: Prediction | None, info: OverlayInfo = OverlayInfo(),
             settings: OverlaySettings = OverlaySettings()) -> np.ndarray:
    """``frame`` (h, w, 3) BGR uint8 -> a new display-size frame with the overlay drawn on it.
    Before the first prediction only the latency line (with 'warming up') is drawn."""
    out = to_display(frame, settings.size)
    w, h = settings.size
    s = settings
    if prediction is not None:
        rows = prediction.topk[: s.topk]
        extra = (prediction.true_label is not None) + (prediction.active is not None)
        panel_h = 8 + s.row_h * (len(rows) + extra)
        cv2.rectangle(out, (0, 0), (min(s.panel_w, w - 1), panel_h), PANEL, cv2.FILLED)
        for row, (label, p) in enumerate(rows):
            y = 6 + s.row_h * row
            current = row == 0 and p >= s.threshold
            color = HIGHLIGHT if current else BAR
            cv2.rectangle(out, (6, y + 3), (6 + s.bar_w, y + s.row_h - 3), (70, 70, 70), cv2.FILLED)
            cv2.rectangle(out, (6, y + 3), (6 + int(round(s.bar_w * min(max(p, 0.0), 1.0))), y + s.row_h - 3),
                          color, cv2.FILLED)
            _text(out, f"{label} {p * 100:4.1f}%", (s.bar_w + 14, y + s.row_h - 7),
                  HIGHLIGHT if current else WHITE, s.font_scale, 2 if current else 1)
        if prediction.true_label is not None:
            y = 6 + s.row_h * len(rows)
            ok = prediction.true_label == prediction.label
            acc = "" if info.accuracy is None else f"   acc {info.accuracy * 100:.1f}%"
            _text(out, f"true: {prediction.true_label}{acc}", (8, y + s.row_h - 7),
                  TRUTH_OK if ok else TRUTH_BAD, s.font_scale)
        if prediction.active is not None:
            y = 6 + s.row_h * (len(rows) + (prediction.true_label is not None))
            _text(out, f"event: {prediction.active}", (8, y + s.row_h - 7), EVENT, s.font_scale, 2)
    latency = "warming up" if prediction is None else f"glass-to-label {prediction.latency_ms:.0f} ms"
    frame_no = "" if info.frame_index is None else f"   frame {info.frame_index}"
    line = f"{latency}   {info.fps:.1f} fps{frame_no}"
    cv2.rectangle(out, (0, h - s.row_h), (w - 1, h - 1), PANEL, cv2.FILLED)
    _text(out, line, (8, h - 7), GREY, s.font_scale)
    return out


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    """BGR uint8 -> JPEG bytes (once per new frame; every viewer gets the same bytes)."""
    ok, data = cv2.imencode(".jpg", frame, (cv2.IMWRITE_JPEG_QUALITY, int(quality)))
    if not ok:
        raise ValueError(f"JPEG encoding failed for a frame of shape {frame.shape}")
    return data.tobytes()
