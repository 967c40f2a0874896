"""Shared fixtures: a small random-weight model (the runtime's correctness does not depend on
training) saved as a real model file, and short generated gesture clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twostream.checkpoint import save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.gestures import GestureStream
from twostream.model import TwoStreamNet


@pytest.fixture(scope="session")
def contract() -> ModelContract:
    return ModelContract(classes=GESTURE_CLASSES)


@pytest.fixture(scope="session")
def random_model(contract, make_perturbed_model) -> TwoStreamNet:
    return make_perturbed_model(contract)


@pytest.fixture(scope="session")
def model_path(random_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "random.pt"
    save_checkpoint(path, random_model)
    return path


def stream_frames(count: int, seed: int = 3, size: tuple[int, int] = (160, 120)):
    """The first ``count`` frames of a gesture stream: (frames (count, H, W, 3) BGR uint8,
    labels, segments)."""
    frames, labels, segments = [], [], []
    for item, _ in zip(GestureStream(seed, size), range(count)):
        frames.append(item.bgr)
        labels.append(item.label)
        segments.append(item.segment)
    return np.stack(frames), labels, segments


@pytest.fixture(scope="session")
def make_stream():
    """stream_frames, for tests that need their own stream."""
    return stream_frames


@pytest.fixture(scope="session")
def short_clip():
    """48 frames of 160x120 gesture stream (two complete window spans and more)."""
    return stream_frames(48)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module, as the runtime runs (app.py, bench.py): with two threads
    on a busy two-core machine, OpenMP's spinning makes TV-L1's many small ops over ten times
    slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
