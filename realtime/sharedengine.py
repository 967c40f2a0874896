"""One Backend shared by many streams, its calls batched across them (the policy and the
workers: realtime.batching). Each stream's pipeline gets an EngineClient, a Backend whose calls
are submitted to the part workers; realtime.flowbatch.SharedFlow does the same for torch flow."""

from __future__ import annotations

import threading

import numpy as np

from engines.base import Backend
from realtime.batching import PARTS, BatchSettings, BatchStats, SharedWorkers
from twostream.errors import EngineError


class SharedEngine(SharedWorkers):
    """One Backend shared by many streams through ``client()``s, calls batched across them.

    The backend's feature shape is probed and (``warm_up``) every part is run once in the
    caller's thread, before the workers start, so no two threads ever call one part at once.
    ``close`` stops the workers (queued calls get EngineError) and closes the backend.
    """

    def __init__(self, backend: Backend, settings: BatchSettings = BatchSettings(), *, warm_up: bool = True):
        self.backend = backend
        self.feature_shape = backend.feature_shape
        self.temporal_feature_shape = backend.temporal_feature_shape
        if warm_up:
            backend.warm_up()
        super().__init__("shared engine", tuple(zip(PARTS, (backend.spatial, backend.temporal, backend.head))),
                         settings)

    def client(self) -> "EngineClient":
        """A new Backend for one stream (close it when the stream ends: until then the workers
        count it among the clients a batch may wait for)."""
        self._open_client()
        return EngineClient(self)

    def _submit(self, part: int, inputs: tuple) -> np.ndarray:
        return self._workers[part].submit(inputs)

    def stats(self) -> BatchStats:
        return BatchStats(self.settings.max_batch, self.settings.max_wait_ms,
                          tuple(worker.counters.snapshot() for worker in self._workers))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers, then close the backend. Idempotent."""
        if self._stop_workers(timeout):  # a worker still inside a call must keep its backend
            self.backend.close()

    def __enter__(self) -> "SharedEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EngineClient(Backend):
    """A stream's view of a SharedEngine: the Backend protocol (same contract, input size,
    precision, device, tensor device, name and feature shape as the shared backend), each call submitted to
    the part's worker; results are the caller's own arrays. ``warm_up`` does nothing (the
    engine warmed the backend up once); ``close`` releases this client only. Idempotent."""

    def __init__(self, engine: SharedEngine):
        backend = engine.backend
        super().__init__(backend.contract, backend.input_size, precision=backend.precision, device=backend.device)
        self.name = backend.name
        self.tensor_device = backend.tensor_device  # device streams' tensors batch on the device
        self._feature_shape = engine.feature_shape
        self._temporal_feature_shape = engine.temporal_feature_shape
        self._engine = engine
        self._closed = False
        self._close_lock = threading.Lock()

    def _submit(self, part: int, *inputs: np.ndarray) -> np.ndarray:
        if self._closed:
            raise EngineError(f"engine client is closed ({PARTS[part]} called after close)")
        return self._engine._submit(part, inputs)

    def _spatial(self, rgb: np.ndarray) -> np.ndarray:
        return self._submit(0, rgb)

    def _temporal(self, flow: np.ndarray) -> np.ndarray:
        return self._submit(1, flow)

    def _head(self, s: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._submit(2, s, t)

    def warm_up(self) -> None:
        """Nothing to do: the shared engine warmed its backend up when it was built."""

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._engine._release()
