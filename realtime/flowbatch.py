"""TV-L1 for many streams in one batched call: the flow stages' counterpart of the shared engine.

    stream A device flow stage ─(prev grey, grey) (1, H, W)─┐                   ┌─▶ field row 0 to A
    stream B device flow stage ─(prev grey, grey) (1, H, W)─┼─▶ flow worker ────┼─▶ field row 1 to B
    stream C device flow stage ─(prev grey, grey) (1, H, W)─┘  torch.cat on N,  └─▶ field row 2 to C
                                                               ONE flow_fields call (3, ...) -> (3, 2, H, W)

TV-L1 is dozens of small kernels per pyramid level and warp; on a GPU one pair leaves most of
the chip idle, so the pairs of all streams that are ready go through together. The worker is
realtime.batching's PartWorker, with its policy unchanged: take what is ready up to
``max_batch`` pairs, wait at most ``max_wait_ms`` after the oldest request for more, and not at
all once every open client has a pair in the batch; a stalled stream (its camera hung, or
reconnecting) holds the others back by at most ``max_wait_ms`` per call. An error in a batched
call is raised to every stream in it.

A stream's pairs are sequential (field i needs grey i-1 and grey i, not field i-1), so each
stream has at most one pair in flight: a batch holds one pair per stream.

Inputs and results stay on the device: the worker concatenates the streams' grey tensors there
(torch.cat) and hands each stream a view of its row of the one output tensor, which
flow_fields allocates anew every call, so no stream's row is overwritten by a later call.
"""

from __future__ import annotations

import threading

import torch

from realtime.batching import BatchSettings, PartBatchStats, SharedWorkers
from twostream.errors import EngineError
from twostream.preprocess import FlowSpec
from twostream.torchprep import flow_fields


class SharedFlow(SharedWorkers):
    """One flow worker for ``spec`` (tvl1-torch on ``spec.device``) shared by the device flow
    stages of many streams through ``client()``s. ``close`` stops the worker (queued pairs get
    EngineError). Idempotent."""

    def __init__(self, spec: FlowSpec, settings: BatchSettings = BatchSettings()):
        self.spec = spec
        super().__init__("shared flow", (("flow", self._fields),), settings)

    def _fields(self, prev_grey: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        """(N, H, W) uint8 pairs on the device -> quantised fields (N, C, H, W) uint8 there
        (C = spec.channels)."""
        return flow_fields(prev_grey, grey, self.spec)

    def client(self) -> "FlowClient":
        """A new client for one stream (close it when the stream ends: until then the worker
        counts it among the clients a batch may wait for)."""
        self._open_client()
        return FlowClient(self)

    def _submit(self, prev_grey: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        return self._workers[0].submit((prev_grey, grey))

    def stats(self) -> PartBatchStats:
        """Batch sizes (pairs per call), queue waits and call times so far (part "flow")."""
        return self._workers[0].counters.snapshot()

    def close(self, timeout: float = 10.0) -> None:
        self._stop_workers(timeout)

    def __enter__(self) -> "SharedFlow":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FlowClient:
    """A stream's view of a SharedFlow: ``fields`` submits its pair and blocks until its row
    of a batched call is ready. ``close`` releases this client only. Idempotent."""

    def __init__(self, shared: SharedFlow):
        self.spec = shared.spec
        self._shared = shared
        self._closed = False
        self._close_lock = threading.Lock()

    def fields(self, prev_grey: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        """(1, H, W) uint8 pair on the device -> field (1, C, H, W) uint8 there (a view of the
        batch's output: copy it out, as the flow stage does into its ring)."""
        if self._closed:
            raise EngineError("flow client is closed (fields called after close)")
        return self._shared._submit(prev_grey, grey)

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._shared._release()
