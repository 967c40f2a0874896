"""The engines tests' small model and engine folder, shared with the calibration tests."""

from tests.engines.conftest import engine_root, small_model  # noqa: F401 - re-exported fixtures
