"""The shared engine: requests of several clients batched into one backend call, each caller
getting exactly its own rows, errors reaching every caller of a batch, stalled clients never
holding the others back, and a clean close."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engines.base import Backend
from engines.torch_backend import TorchBackend
from realtime.batching import BatchSettings
from realtime.sharedengine import EngineClient, SharedEngine
from realtime.errors import PipelineError
from twostream.errors import EngineError


class RecordingBackend(Backend):
    """Numpy-only parts with easy-to-check outputs, recording each call's batch size.
    Outputs are written into one reused buffer per part, as real runners do, so a client that
    kept a view instead of a copy would see it change. ``gate``: while set to an unset Event,
    calls block on it (to let requests pile up); ``fail``: calls raise it."""

    name = "recording"

    def __init__(self, contract):
        super().__init__(contract, precision="fp32", device="cpu")
        self.sizes = {"spatial": [], "temporal": [], "head": []}
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.fail: Exception | None = None
        self.closed = False
        self._out = {}

    def _record(self, part: str, n: int, shape: tuple[int, ...]) -> np.ndarray:
        self.sizes[part].append(n)
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail is not None:
            raise self.fail
        buffer = self._out.get(part)
        if buffer is None or buffer.shape[0] < n:
            buffer = self._out[part] = np.zeros((64, *shape), np.float32)
        return buffer[:n]

    def _spatial(self, rgb):
        out = self._record("spatial", len(rgb), (3, 7, 7))
        out[:] = rgb[:, :, ::16, ::16]
        return out

    def _temporal(self, flow):
        out = self._record("temporal", len(flow), (3, 7, 7))
        out[:] = flow[:, :3, ::16, ::16] + 1.0
        return out

    def _head(self, s, t):
        out = self._record("head", len(s), (len(self.contract.classes),))
        out[:] = (s - t).sum(axis=(1, 2, 3, 4))[:, None] + np.arange(out.shape[1], dtype=np.float32)
        return out

    def close(self):
        self.closed = True


def rgb(value: float, n: int = 1) -> np.ndarray:
    return np.full((n, 3, 112, 112), value, np.float32)


def call_in_threads(calls):
    """Run each zero-argument callable in its own thread; their results (or exceptions)."""
    results = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, results


def hold_worker(backend: RecordingBackend, client: EngineClient):
    """Block the spatial worker inside a call of ``client``, so later requests queue up."""
    backend.gate = threading.Event()
    backend.entered.clear()
    threads, results = call_in_threads([lambda: client.spatial(rgb(-1.0))])
    assert backend.entered.wait(10)
    return threads, results


def wait_queued(engine: SharedEngine, part: int, count: int) -> None:
    deadline = time.monotonic() + 10
    while engine._workers[part]._queued < count:
        assert time.monotonic() < deadline, "requests never queued"
        time.sleep(0.005)


@pytest.fixture
def backend(contract):
    return RecordingBackend(contract)


def test_settings_are_checked():
    with pytest.raises(PipelineError, match="max_batch"):
        BatchSettings(max_batch=0)
    with pytest.raises(PipelineError, match="max_wait_ms"):
        BatchSettings(max_wait_ms=-1)


def test_a_client_is_the_shared_backend_as_far_as_callers_can_tell(backend):
    with SharedEngine(backend) as engine:
        client = engine.client()
        assert isinstance(client, Backend)
        assert (client.contract, client.input_size, client.precision, client.device, client.name) == \
               (backend.contract, backend.input_size, "fp32", "cpu", "recording")
        assert client.feature_shape == backend.feature_shape == (3, 7, 7)
        calls = len(backend.sizes["spatial"])
        client.warm_up()  # the engine warmed up once, when it was built
        assert len(backend.sizes["spatial"]) == calls
        with pytest.raises(EngineError, match=r"spatial input: expected shape"):
            client.spatial(np.zeros((1, 3, 64, 64), np.float32))  # checked before it is queued


def test_waiting_requests_go_in_one_call_and_each_caller_gets_its_own_rows(backend):
    with SharedEngine(backend, BatchSettings(max_batch=8, max_wait_ms=0)) as engine:
        clients = [engine.client() for _ in range(4)]
        warm = len(backend.sizes["spatial"])
        held, _ = hold_worker(backend, clients[0])
        threads, results = call_in_threads([lambda i=i: clients[i].spatial(rgb(float(i), n=i)) for i in (1, 2, 3)])
        wait_queued(engine, 0, 6)
        backend.gate.set()
        for thread in held + threads:
            thread.join(10)
        # The held call alone, then everything that queued meanwhile in ONE call of 1+2+3 rows.
        assert backend.sizes["spatial"][warm:] == [1, 6]
        for i, result in zip((1, 2, 3), results):
            assert result.shape == (i, 3, 7, 7) and np.all(result == i)
        kept = results[0].copy()
        clients[1].spatial(rgb(9.0))  # the backend reuses its output buffer ...
        assert np.array_equal(results[0], kept)  # ... but callers hold copies
        stats = engine.stats().part("spatial")
        assert stats.calls >= 2 and stats.max_batch == 6 and stats.sizes[5] == 1 and stats.sizes[0] >= 1
        assert stats.items == sum(stats.sizes[n] * (n + 1) for n in range(8))


def test_max_batch_splits_what_is_waiting_and_1_turns_batching_off(backend):
    with SharedEngine(backend, BatchSettings(max_batch=2, max_wait_ms=0)) as engine:
        clients = [engine.client() for _ in range(4)]
        warm = len(backend.sizes["spatial"])
        held, _ = hold_worker(backend, clients[0])
        threads, results = call_in_threads([lambda i=i: clients[i].spatial(rgb(float(i))) for i in (1, 2, 3)])
        wait_queued(engine, 0, 3)
        backend.gate.set()
        for thread in held + threads:
            thread.join(10)
        assert backend.sizes["spatial"][warm:] == [1, 2, 1]
        assert [float(r[0, 0, 0, 0]) for r in results] == [1.0, 2.0, 3.0]
    off = RecordingBackend(backend.contract)
    with SharedEngine(off, BatchSettings(max_batch=1)) as engine:
        clients = [engine.client() for _ in range(4)]
        warm = len(off.sizes["spatial"])
        held, _ = hold_worker(off, clients[0])
        threads, _ = call_in_threads([lambda i=i: clients[i].spatial(rgb(float(i))) for i in (1, 2, 3)])
        wait_queued(engine, 0, 3)
        off.gate.set()
        for thread in held + threads:
            thread.join(10)
        assert off.sizes["spatial"][warm:] == [1, 1, 1, 1]


def test_head_batches_both_inputs_row_for_row(backend):
    s = np.random.default_rng(0).random((3, backend.contract.num_segments, 3, 7, 7), dtype=np.float32)
    t = np.random.default_rng(1).random(s.shape, dtype=np.float32)
    expected = RecordingBackend(backend.contract).head(s, t).copy()
    with SharedEngine(backend, BatchSettings(max_batch=8, max_wait_ms=50)) as engine:
        clients = [engine.client() for _ in range(3)]
        threads, results = call_in_threads([lambda i=i: clients[i].head(s[i:i + 1], t[i:i + 1]) for i in range(3)])
        for thread in threads:
            thread.join(10)
    assert np.allclose(np.concatenate(results), expected)


def test_an_error_in_a_batched_call_reaches_every_caller_of_that_batch(backend):
    with SharedEngine(backend, BatchSettings(max_batch=8, max_wait_ms=0)) as engine:
        clients = [engine.client() for _ in range(3)]
        held, first = hold_worker(backend, clients[0])
        threads, results = call_in_threads([lambda i=i: clients[i].spatial(rgb(float(i))) for i in (1, 2)])
        wait_queued(engine, 0, 2)
        backend.fail = RuntimeError("device lost")
        backend.gate.set()
        for thread in held + threads:
            thread.join(10)
        assert isinstance(first[0], RuntimeError)
        assert isinstance(results[0], RuntimeError) and results[0] is results[1]  # one batch, one error
        backend.fail, backend.gate = None, None
        assert np.all(clients[1].spatial(rgb(5.0)) == 5.0)  # the worker lives on


def test_a_client_that_never_calls_delays_the_others_by_max_wait_at_most(backend):
    with SharedEngine(backend, BatchSettings(max_batch=8, max_wait_ms=300)) as engine:
        busy, stalled = engine.client(), engine.client()
        started = time.monotonic()
        assert np.all(busy.spatial(rgb(1.0)) == 1.0)  # waits for `stalled`, which never comes
        waited = time.monotonic() - started
        assert 0.25 <= waited < 10
        stalled.close()  # a stream that ended: nobody waits for it any more
        busy.spatial(rgb(1.0))
        assert engine.stats().part("spatial").wait_ms_max < 10_000


def test_a_lone_client_never_waits(backend):
    with SharedEngine(backend, BatchSettings(max_batch=8, max_wait_ms=5_000)) as engine:
        client = engine.client()
        started = time.monotonic()
        for _ in range(3):
            client.temporal(np.zeros((1, backend.contract.flow_channels, 112, 112), np.float32))
        assert time.monotonic() - started < 5.0  # one 5 s wait would exceed it


def test_close_stops_the_workers_fails_queued_calls_and_closes_the_backend(backend):
    engine = SharedEngine(backend, BatchSettings(max_batch=1))
    clients = [engine.client() for _ in range(2)]
    held, _ = hold_worker(backend, clients[0])
    threads, results = call_in_threads([lambda: clients[1].spatial(rgb(2.0))])
    wait_queued(engine, 0, 1)
    closer = threading.Thread(target=engine.close)
    closer.start()
    time.sleep(0.05)
    backend.gate.set()
    closer.join(10)
    for thread in held + threads:
        thread.join(10)
    assert isinstance(results[0], EngineError) and "closed" in str(results[0])
    assert backend.closed
    assert not [t for t in threading.enumerate() if t.name.startswith("engine-")]
    with pytest.raises(EngineError, match="closed"):
        clients[0].spatial(rgb(1.0))
    with pytest.raises(EngineError, match="closed"):
        engine.client()
    engine.close()  # idempotent


def test_batched_torch_calls_equal_single_calls(random_model):
    """The real runner: rows of one batched call equal the same inputs run one by one."""
    reference = TorchBackend(random_model)
    frames = np.random.default_rng(2).uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    alone = [reference.spatial(frames[i:i + 1]).copy() for i in range(3)]
    with SharedEngine(TorchBackend(random_model), BatchSettings(max_batch=8, max_wait_ms=1_000)) as engine:
        clients = [engine.client() for _ in range(3)]
        threads, results = call_in_threads([lambda i=i: clients[i].spatial(frames[i:i + 1]) for i in range(3)])
        for thread in threads:
            thread.join(30)
        assert engine.stats().part("spatial").max_batch == 3  # every open client joined one call
    for got, want in zip(results, alone):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
