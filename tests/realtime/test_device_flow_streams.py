"""Torch flow across streams (realtime.flowbatch): the ready pairs of several streams go through
one batched flow_fields call and each stream gets the fields it would have got alone; a stalled
stream does not hold the others; the batches show in the StreamSet's statistics. On device
"cpu", 64 x 64 frames and the fast preset."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch

from engines.torch_backend import TorchBackend
from realtime.batching import BatchSettings
from realtime.flowbatch import SharedFlow
from realtime.flowstage import FlowSettings
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import ArraySource
from realtime.streams import StreamState
from realtime.streamset import StreamSet
from tests.realtime.test_device_flow import CONTRACT, SPEC
from tests.realtime.test_multistream import StuckCamera, leftover_threads
from twostream.errors import EngineError
from twostream.torchprep import flow_fields, resize_frames

CPU_FLOW = PipelineSettings(flow=FlowSettings(device="cpu"))


# As the runtime runs (app.py, bench.py): one torch thread (tests/realtime/conftest.py).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clips(make_stream):
    return [make_stream(10, seed=seed)[0] for seed in (21, 22)]


def greys(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W) uint8 grey frames, as the device stage makes them."""
    return torch.cat([resize_frames(torch.from_numpy(bgr)[None], SPEC.size)[1] for bgr in frames])


def test_pairs_of_two_streams_in_one_call_equal_each_alone(clips):
    a, b = greys(clips[0][:3]), greys(clips[1][:3])
    # A long wait: the worker holds the first pair until the other client's joins it.
    with SharedFlow(SPEC, BatchSettings(max_batch=8, max_wait_ms=30_000)) as shared:
        first, second = shared.client(), shared.client()
        results = {}
        threads = [threading.Thread(target=lambda c=client, g=g, k=k: results.__setitem__(k, c.fields(g[1:2], g[2:3])))
                   for client, g, k in ((first, a, "a"), (second, b, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        stats = shared.stats()
        first.close()
        second.close()
    assert stats.part == "flow" and stats.calls == 1 and stats.items == 2 and stats.max_batch == 2
    assert torch.equal(results["a"], flow_fields(a[1:2], a[2:3], SPEC))
    assert torch.equal(results["b"], flow_fields(b[1:2], b[2:3], SPEC))
    assert not torch.equal(results["a"], results["b"])  # two different motions


def run_alone(model, frames) -> tuple:
    with Pipeline(ArraySource(frames), TorchBackend(model), CPU_FLOW) as pipeline:
        assert pipeline.wait(timeout=120)
    return pipeline.history()


def test_streams_with_batched_flow_equal_each_stream_alone(clips, make_perturbed_model):
    model = make_perturbed_model(CONTRACT)
    alone = [run_alone(model, frames) for frames in clips]
    batch = BatchSettings(max_batch=8, max_wait_ms=10_000)  # every pair waits for the other stream's
    with StreamSet(TorchBackend(model), CPU_FLOW, batch=batch) as streams:
        assert streams.flow is not None and streams.flow_spec.device == "cpu"
        for i, frames in enumerate(clips):
            streams.add(f"s{i}", ArraySource(frames))
        assert streams.wait(timeout=180)
        together = [stream.history() for stream in streams.streams]
        flow = streams.stats().part("flow")
    assert [s.status().state for s in streams.streams] == [StreamState.ENDED] * 2
    for mine, reference in zip(together, alone):
        assert [p.index for p in mine] == [p.index for p in reference] == list(range(4, 10))
        for a, b in zip(mine, reference):
            # Bit-equal fields (the test above), so as close as the engine's batching keeps logits.
            np.testing.assert_allclose(a.logits, b.logits, rtol=1e-4, atol=1e-4)
    assert flow.items == 2 * 9  # every pair of both streams (frame 0 has none), each computed once
    assert flow.max_batch == 2 and flow.calls < flow.items, flow  # the two streams' pairs went together
    assert not leftover_threads()


def test_a_stalled_stream_does_not_hold_the_others_flow(clips, make_perturbed_model):
    stuck = StuckCamera(clips[0], before_stall=3)
    batch = BatchSettings(max_batch=8, max_wait_ms=20)
    with StreamSet(TorchBackend(make_perturbed_model(CONTRACT)), CPU_FLOW, batch=batch) as streams:
        streams.add("stuck", stuck)
        other = streams.add("other", ArraySource(itertools.cycle(clips[1]), live=True, fps=25))
        assert stuck.stalled.wait(30)
        first = other.next_prediction(timeout=60)
        assert first is not None
        later = other.next_prediction(after_index=first.index + 10, timeout=60)
        assert later is not None, "the other stream's flow stopped while one stalled"
        assert streams.stream("stuck").status().state is StreamState.LIVE  # hung, not failed
        flow = streams.stats().part("flow")
        stuck.release.set()
    # The stuck stream had 2 pairs; the rest are the other's. Its client stays open, so the
    # other's pairs wait for it, but at most max_wait_ms each, plus a call in progress (no
    # tight bound: a busy machine).
    assert flow.calls > 2 and flow.wait_ms_max < 5_000
    assert not leftover_threads()


def test_a_closed_shared_flow_refuses_new_clients_and_calls():
    shared = SharedFlow(SPEC)
    client = shared.client()
    shared.close()
    with pytest.raises(EngineError, match="shared flow is closed"):
        shared.client()
    with pytest.raises(EngineError, match="closed"):
        client.fields(torch.zeros((1, *SPEC.size), dtype=torch.uint8), torch.zeros((1, *SPEC.size), dtype=torch.uint8))
    client.close()
    with pytest.raises(EngineError, match="flow client is closed"):
        client.fields(torch.zeros((1, *SPEC.size), dtype=torch.uint8), torch.zeros((1, *SPEC.size), dtype=torch.uint8))
