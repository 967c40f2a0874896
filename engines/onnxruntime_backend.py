"""ONNX Runtime backend: the three exported parts (fp32, fp16 or Q/DQ int8 graphs) on the CPU
execution provider.

    spatial   rgb (N, 3, H, W) float32 0..255           -> (N, C, h, w) float32
    temporal  flow (N, 2L, H, W) float32 0..255         -> (N, C, h, w) float32
    head      (N, T, C, h, w) float32 x 2               -> logits (N, K) float32
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.base import Backend
from engines.onnx_parts import (HEAD, SPATIAL, TEMPORAL, PartFiles, PartShape, PartSpec, check_part_shapes,
                                 unreadable_onnx)
from twostream.contract import ModelContract
from twostream.errors import EngineError


@dataclass(frozen=True)
class OnnxRuntimeSettings:
    """``threads`` per part (intra-op). Spinning is off: on a 2-core machine the flow thread
    and the other parts need the cores that idle, spin-waiting workers would hold."""

    threads: int = 1
    spin: bool = False
    # Evaluate every node as written (no fusion into int8 kernels): a Q/DQ graph then gives
    # exactly its quantised arithmetic on any CPU, VNNI or not. For measuring, not for speed.
    literal: bool = False


def _session(path, settings: OnnxRuntimeSettings):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if settings.literal
                                        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spin else "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped exceptions
        if "INVALID_PROTOBUF" in str(exc):
            raise unreadable_onnx(path) from exc
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"ONNX Runtime cannot load {path}: {first}") from exc


def _declared(session, path) -> PartShape:
    """The shapes a session's graph declares (a named or absent axis is free: None)."""
    def shape(arg) -> tuple[int | None, ...]:
        return tuple(d if isinstance(d, int) else None for d in arg.shape)
    return PartShape(path, tuple(shape(arg) for arg in session.get_inputs()), shape(session.get_outputs()[0]))


class OnnxRuntimeBackend(Backend):
    """One InferenceSession per part. Sessions allow concurrent ``run`` calls, so the tower
    thread and the head thread never wait for each other here."""

    name = "onnxruntime"

    def __init__(self, contract: ModelContract, files: PartFiles, *, precision: str = "fp32",
                 settings: OnnxRuntimeSettings = OnnxRuntimeSettings(),
                 input_size: tuple[int, int] | None = None):
        super().__init__(contract, input_size, precision=precision, device="cpu")  # the graphs' own precision
        self.files = files
        self._sessions = tuple(_session(files.of(part), settings) for part in (SPATIAL, TEMPORAL, HEAD))
        check_part_shapes(contract, self.input_size,
                          *(_declared(session, path) for session, path in zip(self._sessions, files.as_tuple())))

    def _run(self, index: int, part: PartSpec, *inputs: np.ndarray) -> np.ndarray:
        session = self._sessions[index]
        if session is None:
            raise EngineError(f"{self.name} backend is closed")
        return session.run([part.output], dict(zip(part.inputs, inputs)))[0]

    def _spatial(self, rgb: np.ndarray) -> np.ndarray:
        return self._run(0, SPATIAL, rgb)

    def _temporal(self, flow: np.ndarray) -> np.ndarray:
        return self._run(1, TEMPORAL, flow)

    def _head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._run(2, HEAD, s, t)

    def close(self) -> None:
        self._sessions = (None, None, None)
