"""Fixtures for the page's tests: a model file (the trained demo model when it exists, so the
screenshots show real predictions; a random-weight one otherwise) and a short generated clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import torch

from twostream.checkpoint import save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.gestures import GestureStream
from twostream.model import TwoStreamNet

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "models" / "demo.pt"


@pytest.fixture(scope="session")
def ui_model_path(tmp_path_factory) -> Path:
    if DEMO_MODEL.is_file():
        return DEMO_MODEL
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ui_model") / "random.pt"
    save_checkpoint(path, TwoStreamNet(ModelContract(classes=GESTURE_CLASSES)).eval())
    return path


@pytest.fixture(scope="session")
def gesture_clip(tmp_path_factory) -> Path:
    """64 frames of the gesture stream, 320x240, as an MPEG-4 file (enough for several windows)."""
    path = tmp_path_factory.mktemp("ui_clip") / "gestures.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    for item, _ in zip(GestureStream(5, (320, 240)), range(64)):
        writer.write(item.bgr)
    writer.release()
    return path
