"""One engine shared by every stream, with cross-stream dynamic batching.

    stream A towers ─spatial (1, 3, H, W)─┐                      ┌─▶ rows 0..0 to A
    stream B towers ─spatial (1, 3, H, W)─┼─▶ spatial worker ────┼─▶ rows 1..1 to B
    stream C towers ─spatial (1, 3, H, W)─┘  concat along N,     └─▶ rows 2..2 to C
                                             ONE backend call (3, 3, H, W) -> (3, C, h, w)
    the same for temporal ((N, 2L, H, W)) and head ((N, T, C, h, w) x 2 -> (N, K) logits)

``SharedEngine`` (realtime.sharedengine) owns one opened Backend and runs one worker thread per model part, which is
exactly what the Backend protocol allows (concurrent calls to different parts, one call per
part at a time). Each stream gets a ``client()``: a Backend whose calls submit their arrays to
the part's worker and block until their own rows of a batched result are ready.

The policy (Triton's dynamic batcher, DeepStream's nvstreammux: take what is ready):
    a part's worker takes the oldest waiting request, then every other waiting one, up to
    ``max_batch`` items (N rows); while the batch is short it waits for more, but never past
    ``max_wait_ms`` after the oldest request was submitted, and not at all once every open
    client has a request in the batch (one stream alone never waits). It concatenates along N,
    makes ONE backend call, splits the result and hands each caller a copy of its rows.
    Workers never wait for a particular stream: a stream that stalls (a camera that hangs)
    holds the others back by at most ``max_wait_ms`` per call, and not at all once it is closed.
    An error in a batched call is raised to every caller of that batch.
    ``max_batch=1`` turns batching off (every call alone, as a private backend would run it).

Why 8 and 2 ms on 2 cores. Measured on this 2-core AMD EPYC, demo model (tiny backbone,
112x112), one torch thread, ms per item at batch 1 -> 2 -> 4 -> 8 -> 16:
    spatial 2.08 -> 1.53 -> 1.29 -> 1.28 -> 1.33; temporal 2.70 -> 2.21 -> 2.29 -> 2.19 -> 2.16;
    head 2.37 -> 1.17 -> 1.12 -> 1.13 -> 1.11 (OpenVINO fp32: spatial 1.18 -> 1.05 at 8, head
    1.26 -> 1.07 at 8). So
  - max_batch 8: batching saves a third (spatial) to half (head) of the per-item cost, and the
    saving is reached by 4-8 and flat beyond; a batch of 8 already takes 10-18 ms, a quarter to
    a half of a 25-fps frame period (40 ms), which the first request in it waits through. Eight
    is also the number of 25-fps streams this machine is meant to carry.
  - max_wait_ms 2: less than one batch-1 call (2-3 ms), so an idle wait can at most double a
    call's latency when nobody comes; eight streams at 25 fps send a part a request every 5 ms
    on average, so 2 ms gathers the ones whose frames came close together. Under load (the
    engine the bottleneck) requests pile up during the previous call and batch with no wait.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

from realtime.errors import PipelineError
from realtime.threads import DaemonThread
from twostream.errors import EngineError

PARTS = ("spatial", "temporal", "head")


@dataclass(frozen=True)
class BatchSettings:
    """``max_batch``: most items (rows along N) in one backend call (1: no batching);
    ``max_wait_ms``: longest a request waits for others to join its batch."""

    max_batch: int = 8
    max_wait_ms: float = 2.0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise PipelineError(f"max_batch must be >= 1, got {self.max_batch}")
        if not self.max_wait_ms >= 0:
            raise PipelineError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


@dataclass(frozen=True)
class PartBatchStats:
    """One part's batching so far. ``sizes[n - 1]`` counts calls of batch size n (the last bin
    also counts larger ones: a single request of more than max_batch rows runs alone).
    ``wait_ms_*``: how long requests waited from submission to their batch's call (mean and max
    over the run, p95 over the last 1024); ``call_ms_mean``: the backend call itself."""

    part: str
    calls: int
    items: int
    sizes: tuple[int, ...]
    mean_batch: float
    max_batch: int
    wait_ms_mean: float
    wait_ms_p95: float
    wait_ms_max: float
    call_ms_mean: float


@dataclass(frozen=True)
class BatchStats:
    """The engine's settings and each part's PartBatchStats, in PARTS order (then "flow" for a
    StreamSet with torch flow: realtime.flowbatch, under the same settings)."""

    max_batch: int
    max_wait_ms: float
    parts: tuple[PartBatchStats, ...]

    def part(self, name: str) -> PartBatchStats:
        for stats in self.parts:
            if stats.part == name:
                return stats
        raise KeyError(name)

    def to_record(self) -> dict:
        """Plain JSON-ready form, for the command-line edges."""
        parts = {}
        for stats in self.parts:
            record = asdict(stats)
            del record["part"]
            parts[stats.part] = {k: round(v, 3) if isinstance(v, float) else v for k, v in record.items()}
        return {"max_batch": self.max_batch, "max_wait_ms": self.max_wait_ms, "parts": parts}


def _join(arrays: list) -> np.ndarray | torch.Tensor:
    """Concatenate the requests' inputs along N: numpy arrays on the host, or torch tensors
    where they are (a device stream's ring views: one cat on the device, no host copy)."""
    if all(isinstance(a, np.ndarray) for a in arrays):
        return np.concatenate(arrays)
    if all(isinstance(a, torch.Tensor) for a in arrays):
        return torch.cat(arrays)
    raise EngineError("a batch mixes numpy arrays and torch tensors (streams with host and device flow "
                      "on one engine)")


def _rows(out: np.ndarray | torch.Tensor, start: int, stop: int) -> np.ndarray | torch.Tensor:
    """One caller's rows of a batched result. A numpy result is copied (a backend may reuse
    its output buffer, and callers keep results); a torch result is sliced (the flow worker's
    call allocates a fresh tensor each time, and its callers copy their rows into their rings)."""
    if isinstance(out, torch.Tensor):
        return out[start:stop]
    return np.array(out[start:stop])


class _Request:
    """One caller's arrays for one part, and where its result or error comes back."""

    __slots__ = ("inputs", "size", "submitted", "done", "result", "error")

    def __init__(self, inputs: tuple):
        self.inputs = inputs
        self.size = int(inputs[0].shape[0])
        self.submitted = time.monotonic()
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


class _Counters:
    """What one worker measured; written by the worker, read by ``snapshot`` from any thread."""

    def __init__(self, part: str, max_batch: int, window: int = 1024):
        self.part = part
        self._lock = threading.Lock()
        self._sizes = np.zeros(max_batch, np.int64)
        self._waits = np.zeros(window, np.float64)  # ring of the last ``window`` queue waits
        self._calls = self._items = self._largest = self._waited = 0
        self._wait_sum = self._wait_max = self._call_sum = 0.0

    def record(self, batch: list[_Request], started: float, call_ms: float) -> None:
        items = sum(r.size for r in batch)
        with self._lock:
            self._calls += 1
            self._items += items
            self._largest = max(self._largest, items)
            self._sizes[min(items, len(self._sizes)) - 1] += 1
            self._call_sum += call_ms
            for request in batch:
                wait = (started - request.submitted) * 1000.0
                self._waits[self._waited % len(self._waits)] = wait
                self._waited += 1
                self._wait_sum += wait
                self._wait_max = max(self._wait_max, wait)

    def snapshot(self) -> PartBatchStats:
        with self._lock:
            held = self._waits[: min(self._waited, len(self._waits))]
            p95 = float(np.percentile(held, 95)) if len(held) else 0.0
            calls = self._calls
            return PartBatchStats(
                self.part, calls, self._items, tuple(int(n) for n in self._sizes),
                self._items / calls if calls else 0.0, self._largest,
                self._wait_sum / self._waited if self._waited else 0.0, p95, self._wait_max,
                self._call_sum / calls if calls else 0.0)


class PartWorker:
    """The thread that batches one part's requests and calls ``call`` (a backend part, or the
    flow of realtime.flowbatch) on the concatenated inputs, numpy arrays or torch tensors."""

    def __init__(self, part: str, call: Callable[..., np.ndarray | torch.Tensor], settings: BatchSettings,
                 open_clients: Callable[[], int]):
        self.part, self._call, self._settings = part, call, settings
        self._open_clients = open_clients
        self._queue: deque[_Request] = deque()
        self._queued = 0  # items (rows) in the queue
        self._cond = threading.Condition()
        self._closed = False
        self.counters = _Counters(part, settings.max_batch)
        self._thread = DaemonThread(self._main, f"engine-{part}")

    def start(self) -> None:
        self._thread.start()

    def submit(self, inputs: tuple):
        """Queue ``inputs`` (each (n, ...), numpy or torch) and block until their (n, ...)
        result is ready."""
        request = _Request(inputs)
        with self._cond:
            if self._closed:
                raise EngineError(f"shared engine is closed ({self.part} called after close)")
            self._queue.append(request)
            self._queued += request.size
            self._cond.notify_all()
        # No timeout: the worker always sets it (with a result, the batch's error, or on close).
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def wake(self) -> None:
        """Re-check a batch being gathered (the number of open clients changed)."""
        with self._cond:
            self._cond.notify_all()

    def close(self, timeout: float) -> bool:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        return self._thread.join(timeout)

    def _main(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            self._run(batch)
        with self._cond:  # closed: nobody will run what is still queued
            left, self._queue = list(self._queue), deque()
        for request in left:
            request.error = EngineError(f"shared engine closed before this {self.part} call ran")
            request.done.set()

    def _next_batch(self) -> list[_Request] | None:
        """The next batch by the module's policy; None once closed."""
        max_batch = self._settings.max_batch
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = self._queue[0].submitted + self._settings.max_wait_ms / 1000.0
            while self._queued < max_batch and len(self._queue) < self._open_clients():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            if self._closed:
                return None
            batch, items = [], 0
            while self._queue and (not batch or items + self._queue[0].size <= max_batch):
                request = self._queue.popleft()
                batch.append(request)
                items += request.size
            self._queued -= items
            return batch

    def _run(self, batch: list[_Request]) -> None:
        started = time.monotonic()
        try:
            if len(batch) == 1:
                inputs = batch[0].inputs  # its caller is blocked until done: no copy needed
            else:
                inputs = tuple(_join([r.inputs[k] for r in batch]) for k in range(len(batch[0].inputs)))
            out = self._call(*inputs)
            total = sum(r.size for r in batch)
            if out.shape[0] != total:
                raise EngineError(f"{self.part}: the backend returned {out.shape[0]} rows for a batch of {total}")
            offset = 0
            for request in batch:
                request.result = _rows(out, offset, offset + request.size)
                offset += request.size
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for request in batch:
                request.error = exc
        finally:
            call_ms = (time.monotonic() - started) * 1000.0
            for request in batch:
                request.done.set()
            self.counters.record(batch, started, call_ms)


class SharedWorkers:
    """Part workers shared by many clients (SharedEngine, realtime.flowbatch.SharedFlow).

    Counts the open clients, since a worker stops waiting for more once every open client has
    a call queued, and refuses new clients once closed. ``parts`` pairs each part's name with
    the call its worker batches."""

    def __init__(self, what: str, parts: tuple[tuple[str, Callable[..., np.ndarray]], ...], settings: BatchSettings):
        self.settings = settings
        self._what = what
        self._lock = threading.Lock()
        self._clients = 0
        self._closed = False
        self._workers = tuple(PartWorker(part, call, settings, lambda: self._clients) for part, call in parts)
        for worker in self._workers:
            worker.start()

    def _open_client(self) -> None:
        with self._lock:
            if self._closed:
                raise EngineError(f"{self._what} is closed")
            self._clients += 1

    @property
    def open_clients(self) -> int:
        return self._clients

    def _release(self) -> None:
        with self._lock:
            self._clients -= 1
        for worker in self._workers:
            worker.wake()

    def _stop_workers(self, timeout: float) -> bool:
        """Stop the workers (queued calls get EngineError), once. True when this call stopped
        them and every one ended within ``timeout``."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        return all([worker.close(timeout) for worker in self._workers])
