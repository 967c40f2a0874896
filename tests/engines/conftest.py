"""Shared fixtures: a small random-weight model (64x64 input, L=3, T=3, tau=2: every part of
the real network, a fraction of the cost) saved as a model file, and its engines built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.dataset import CalibrationSettings
from building.builder import BuildSettings, Built, build_parts
from twostream.checkpoint import save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.model import TwoStreamNet

SMALL = ModelContract(classes=GESTURE_CLASSES, fusion="conv", input_size=(64, 64), stack_length=3,
                      num_segments=3, stride=2)
# 40 demo frames (1.6 s of the paced demo stream) give 36 tower frames and 33 head windows.
QUICK_CALIBRATION = CalibrationSettings(frames_per_source=40)


@pytest.fixture(scope="session")
def small_model(make_perturbed_model) -> TwoStreamNet:
    return make_perturbed_model(SMALL)


@pytest.fixture(scope="session")
def small_ckpt(small_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "small.pt"
    save_checkpoint(path, small_model)
    return path


def build(model: TwoStreamNet, root: Path, backend: str, precision: str, name: str = "",
          calibration: CalibrationSettings = QUICK_CALIBRATION, **kw) -> tuple[Built, Path]:
    """Build ``backend``/``precision`` for ``model`` into a new folder under ``root``."""
    out = root / (name or f"{backend}-{precision}")
    out.mkdir()
    # Every part int8 unless a test asks for the automatic choice (which renders validation clips).
    kw.setdefault("int8_parts", "spatial,temporal,head")
    settings = BuildSettings(backend=backend, precision=precision, calib=("demo",),
                             calibration=calibration, **kw)
    return build_parts(model, out, settings), out


@pytest.fixture(scope="session")
def engine_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engines")
