"""TensorRT. The real builder and runtime need CUDA and NVIDIA's wheels (``gpu`` tests, skipped
cleanly here). On CPU: the calls the thin TensorRT code makes, against a stand-in module with
only the TensorRT 10/11 API it is documented to use, the version/GPU refusal, and a clean
error when TensorRT is absent. The graphs it builds from are tested in tests/calibration."""

from __future__ import annotations

import importlib.util
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engines.enginedir import TensorRTTarget
from building.export import export_parts
from engines.onnx_parts import HEAD, SPATIAL
from engines import tensorrt_backend
from engines.tensorrt_backend import TensorRTBuildSettings, build_plan, check_target, import_tensorrt
from tests.engines.conftest import SMALL, build
from twostream.errors import EngineError

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
gpu = pytest.mark.gpu


class _Recorder:
    """Stands in for a TensorRT object: methods listed in ``api`` record their calls; anything
    else (e.g. the removed set_flag / int8_calibrator) raises AttributeError."""

    def __init__(self, log: list, name: str, api: dict):
        self._log, self._name, self._api = log, name, api

    def __getattr__(self, attr):
        if attr.startswith("_") or attr not in self._api:
            raise AttributeError(f"{self._name}.{attr} is not in the TensorRT 10/11 API this code may use")

        def call(*args):
            self._log.append((f"{self._name}.{attr}", args))
            result = self._api[attr]
            return result(*args) if callable(result) else result
        return call


class _Logger:
    WARNING = 2

    def __init__(self, level=None):
        self.level = level


def _fake_tensorrt(version: str, strongly_typed_flag: bool):
    log: list = []
    flags = SimpleNamespace(STRONGLY_TYPED=2) if strongly_typed_flag else SimpleNamespace()
    profile = _Recorder(log, "profile", {"set_shape": None})
    config = _Recorder(log, "config", {"set_memory_pool_limit": None, "add_optimization_profile": 0})
    network = _Recorder(log, "network", {})
    parser = _Recorder(log, "parser", {"parse": True})
    builder = _Recorder(log, "builder", {"create_network": network, "create_builder_config": config,
                                         "create_optimization_profile": profile,
                                         "build_serialized_network": b"plan-bytes"})
    module = SimpleNamespace(
        __version__=version, NetworkDefinitionCreationFlag=flags,
        Logger=_Logger,
        Builder=lambda logger: builder, OnnxParser=lambda net, logger: parser,
        MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"))
    return module, log


@pytest.mark.parametrize("version, has_flag, flags", [("10.16.1", True, 1 << 2), ("11.4.0", False, 0)])
def test_build_plan_makes_a_strongly_typed_network_with_a_batch_profile(monkeypatch, tmp_path, small_model,
                                                                         version, has_flag, flags):
    module, log = _fake_tensorrt(version, has_flag)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    files = export_parts(small_model, tmp_path)
    settings = TensorRTBuildSettings(max_batch=32)
    plan = build_plan(files.head, tmp_path / "head.plan", HEAD, SMALL, (96, 4, 4), settings)
    assert plan.read_bytes() == b"plan-bytes"
    calls = {name: args for name, args in log}
    assert calls["builder.create_network"] == (flags,)
    assert calls["parser.parse"] == (files.head.read_bytes(),)
    assert calls["config.set_memory_pool_limit"] == ("workspace", settings.workspace_bytes)
    window = (SMALL.num_segments, 96, 4, 4)
    shapes = [args for name, args in log if name == "profile.set_shape"]
    assert shapes == [(name, (1, *window), (1, *window), (32, *window)) for name in HEAD.inputs]
    # No precision flags and no calibrator: the graph's own types decide (TensorRT 11 removed both).
    assert not any("flag" in name or "calibrator" in name for name, _ in log)


def test_a_failed_parse_is_one_engine_error(monkeypatch, tmp_path, small_model):
    module, _ = _fake_tensorrt("10.16.1", True)
    module.OnnxParser = lambda net, logger: SimpleNamespace(parse=lambda data: False, num_errors=1,
                                                            get_error=lambda i: "Unsupported op X")
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    files = export_parts(small_model, tmp_path)
    with pytest.raises(EngineError, match="cannot parse .*Unsupported op X"):
        build_plan(files.spatial, tmp_path / "s.plan", SPATIAL, SMALL, (96, 4, 4))
    assert not (tmp_path / "s.plan").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_error_says_so():
    with pytest.raises(EngineError, match="TensorRT is not installed"):
        import_tensorrt()


@pytest.mark.parametrize("built_for, words", [
    (TensorRTTarget("10.15.1", "NVIDIA H100", "9.0"), "built with TensorRT 10.15.1"),
    (TensorRTTarget("10.16.1", "NVIDIA L4", "8.9"), "built for NVIDIA L4"),
    (None, "without its TensorRT/GPU record"),
])
def test_plans_for_another_version_or_gpu_are_refused(monkeypatch, tmp_path, built_for, words):
    here = TensorRTTarget("10.16.1", "NVIDIA H100", "9.0")
    monkeypatch.setattr(tensorrt_backend, "current_target", lambda: here)
    with pytest.raises(EngineError, match=words):
        check_target(built_for, tmp_path)
    check_target(here, tmp_path)  # the same machine: accepted


@gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and HAS_TENSORRT), reason="needs CUDA and TensorRT")
@pytest.mark.parametrize("precision, bound", [("fp32", 1e-3), ("fp16", 5e-2), ("int8", None)])
def test_tensorrt_engines_on_a_gpu(small_model, engine_root, precision, bound):
    from engines.auto import construct
    from building.parity import parity_report
    from calibration.scoring import generated_windows

    from engines.torch_backend import TorchBackend

    built, folder = build(small_model, engine_root, "tensorrt", precision, name=f"trt-{precision}")
    windows = generated_windows(SMALL, clips_per_class=1, per_clip=2, frames=16)
    with construct("tensorrt", built.info, built.info.files(folder)) as engine:
        report = parity_report(engine, TorchBackend(small_model), windows, precision)
        rgb = torch.rand(2, 3, *SMALL.input_size, device="cuda") * 255
        on_device = engine.run_device(SPATIAL, rgb)  # no host copy in or out
        assert on_device.is_cuda and on_device.shape[0] == 2
        np.testing.assert_allclose(on_device.cpu().numpy(), engine.spatial(rgb.cpu().numpy()), rtol=1e-5, atol=1e-5)
    assert np.isfinite(report.max_abs_err)
    if bound is not None:
        assert report.max_rel_err <= bound, report.to_dict()
