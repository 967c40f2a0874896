"""TensorRT: build a plan per part from its ONNX graph, and run plans on CUDA.

Written against the TensorRT 10 and 11 Python API; ``tensorrt`` is imported inside the
functions, so this module imports (and its callers fail with one clear EngineError) on machines
without it. Networks are strongly typed: precision comes from the graph itself, FP16 from an
fp16 ONNX graph (building.export.to_fp16) and INT8 from its Q/DQ nodes
(calibration.quantize). No builder precision flags and no calibrator: TensorRT 11 removed both.

Device buffers are torch CUDA tensors (``data_ptr()``): no pycuda, and a caller whose inputs
already live on the GPU passes them to ``run_device`` with no host copy at all.

    spatial   rgb (N, 3, H, W) float32 0..255           -> (N, C, h, w) float32
    temporal  flow (N, 2L, H, W) float32 0..255         -> (N, C, h, w) float32
    head      (N, T, C, h, w) float32 x 2               -> logits (N, K) float32
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.base import Backend
from engines.enginedir import TensorRTTarget
from engines.onnx_parts import HEAD, SPATIAL, TEMPORAL, PartFiles, PartShape, PartSpec, check_part_shapes
from twostream.contract import ModelContract
from twostream.errors import EngineError


@dataclass(frozen=True)
class TensorRTBuildSettings:
    max_batch: int = 64  # top of the dynamic-batch profile (parity scores clips in batches)
    opt_batch: int = 1  # the streaming runtime calls every part at batch 1
    workspace_bytes: int = 1 << 30


def import_tensorrt():
    """The tensorrt module, or EngineError saying why it cannot be used here."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError("TensorRT is not installed (pip install -r requirements-gpu.txt on a CUDA machine)") from exc
    return trt


def current_target() -> TensorRTTarget:
    """The TensorRT version and GPU a plan built now would be tied to."""
    import torch

    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise EngineError("TensorRT needs a CUDA GPU; torch sees none")
    major, minor = torch.cuda.get_device_capability()
    return TensorRTTarget(trt.__version__, torch.cuda.get_device_name(), f"{major}.{minor}")


def check_target(built_for: TensorRTTarget | None, where: Path) -> None:
    """Refuse a plan built for another TensorRT version or GPU: TensorRT would reject it with a
    deserialisation error at best, and plans are tuned for one GPU model."""
    if built_for is None:
        raise EngineError(f"{where}: a TensorRT engine without its TensorRT/GPU record")
    here = current_target()
    if built_for.version != here.version:
        raise EngineError(f"{where} was built with TensorRT {built_for.version}, this machine has {here.version}; rebuild it")
    if (built_for.gpu, built_for.compute_capability) != (here.gpu, here.compute_capability):
        raise EngineError(f"{where} was built for {built_for.gpu} (sm {built_for.compute_capability}), "
                          f"this GPU is {here.gpu} (sm {here.compute_capability}); rebuild it")


def _network_flags(trt) -> int:
    """STRONGLY_TYPED on TensorRT 10; on 11 it is the only mode and the flag may be gone."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_plan(onnx_path: Path, plan_path: Path, part: PartSpec, contract: ModelContract,
               feature_shape: tuple[int, int, int], settings: TensorRTBuildSettings = TensorRTBuildSettings(), *,
               temporal_feature_shape: tuple[int, int, int] | None = None) -> Path:
    """Parse ``onnx_path`` (fp32, fp16 or Q/DQ graph) and write a serialised plan to ``plan_path``.
    ``feature_shape``: (C, h, w) of the spatial features; ``temporal_feature_shape``: the temporal
    ones' when the temporal tower has its own backbone (None: the same)."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, shape in zip(part.inputs, _input_shapes(part, contract, feature_shape,
                                                              temporal_feature_shape or feature_shape)):
        profile.set_shape(name, (1, *shape), (settings.opt_batch, *shape), (settings.max_batch, *shape))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT could not build {onnx_path} (see its log above)")
    plan_path.write_bytes(bytes(plan))
    return plan_path


def _input_shapes(part: PartSpec, contract: ModelContract, feature_shape: tuple[int, int, int],
                  temporal_feature_shape: tuple[int, int, int]):
    """Per-sample input shapes (without the batch axis) of ``part``."""
    if part == SPATIAL:
        return ((3, *contract.input_size),)
    if part == TEMPORAL:
        return ((contract.flow_channels, *contract.input_size),)
    return (contract.num_segments, *feature_shape), (contract.num_segments, *temporal_feature_shape)


def plan_shape(engine, part: PartSpec, path: Path) -> PartShape:
    """The shapes a deserialised plan declares for ``part``'s tensors (-1, a dynamic axis: None)."""
    names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
    missing = set(part.inputs + (part.output,)) - names
    if missing:
        raise EngineError(f"{path}: no tensors named {sorted(missing)} (not a {part.name} plan?)")

    def shape(name: str) -> tuple[int | None, ...]:
        return tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(name))
    return PartShape(path, tuple(shape(name) for name in part.inputs), shape(part.output))


class _Plan:
    """One deserialised engine, its execution context and its own CUDA stream. One call at a
    time per part (the Backend protocol's rule), different parts concurrently."""

    def __init__(self, runtime, path: Path, part: PartSpec, device):
        import torch

        self.part, self.device = part, device
        data = path.read_bytes()
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineError(f"TensorRT cannot load {path} ({len(data)} bytes): truncated or corrupt, or built by "
                              "another TensorRT version or for another GPU; rebuild with build_engine.py")
        self.shape = plan_shape(self.engine, part, path)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=device)

    def run(self, *inputs):
        """CUDA float32 tensors in, a new CUDA float32 tensor out, ordered after the caller's
        current stream and before anything the caller queues next on it."""
        import torch

        caller = torch.cuda.current_stream(self.device)
        # The inputs were produced on the caller's stream: TensorRT must not read them earlier.
        self.stream.wait_stream(caller)
        with torch.cuda.stream(self.stream):
            inputs = tuple(x.contiguous() for x in inputs)
            for name, x in zip(self.part.inputs, inputs):
                self.context.set_input_shape(name, tuple(x.shape))
                self.context.set_tensor_address(name, x.data_ptr())
            shape = tuple(self.context.get_tensor_shape(self.part.output))
            out = torch.empty(shape, dtype=torch.float32, device=self.device)
            self.context.set_tensor_address(self.part.output, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError(f"TensorRT failed to run the {self.part.name} part")
        # Tell the caching allocator these buffers are in use on our stream until it gets
        # there, so it does not hand them out again while TensorRT still reads or writes them.
        for x in inputs:
            x.record_stream(self.stream)
        out.record_stream(caller)
        caller.wait_stream(self.stream)
        return out


class TensorRTBackend(Backend):
    """Three plans on one GPU. ``spatial``/``temporal``/``head`` take and return numpy (one
    host-to-device and one device-to-host copy each); ``run_device`` takes torch CUDA tensors."""

    name = "tensorrt"

    def __init__(self, contract: ModelContract, files: PartFiles, *, precision: str = "fp32", device: int = 0,
                 input_size: tuple[int, int] | None = None):
        # The graphs' own precision (strongly typed networks).
        super().__init__(contract, input_size, precision=precision, device="cuda")
        import torch

        trt = import_tensorrt()
        if not torch.cuda.is_available():
            raise EngineError("TensorRT needs a CUDA GPU; torch sees none")
        self.cuda = torch.device("cuda", device)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._plans = tuple(_Plan(self._runtime, files.of(p), p, self.cuda) for p in (SPATIAL, TEMPORAL, HEAD))
        check_part_shapes(contract, self.input_size, *(plan.shape for plan in self._plans))

    def run_device(self, part: PartSpec, *inputs):
        """Run ``part`` on CUDA tensors (shapes as in the module docstring) -> CUDA tensor."""
        return self._plans[(SPATIAL, TEMPORAL, HEAD).index(part)].run(*inputs)

    def _host(self, part: PartSpec, *arrays: np.ndarray) -> np.ndarray:
        import torch

        tensors = tuple(torch.from_numpy(a).to(self.cuda, non_blocking=False) for a in arrays)
        out = self.run_device(part, *tensors)
        return out.cpu().numpy()  # .cpu() waits for the caller's stream, which waits for ours

    def _spatial(self, rgb: np.ndarray) -> np.ndarray:
        return self._host(SPATIAL, rgb)

    def _temporal(self, flow: np.ndarray) -> np.ndarray:
        return self._host(TEMPORAL, flow)

    def _head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._host(HEAD, s, t)

    def close(self) -> None:
        self._plans = ()
