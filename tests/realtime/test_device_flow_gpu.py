"""The real CUDA path of the device flow stage (skipped cleanly without CUDA): frames uploaded
through pinned memory, rings resident on the GPU, the towers of the torch CUDA backend handed
ring views (no host round trip), fields and predictions as on the CPU, flow batched across
streams on the GPU."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engines.torch_backend import TorchBackend
from engines.torch_precision_backend import TorchPrecisionBackend
from realtime.batching import BatchSettings
from realtime.deviceflow import Upload
from realtime.flowstage import FlowSettings
from realtime.pipeline import Pipeline, PipelineSettings
from realtime.sources import ArraySource
from realtime.streamset import StreamSet
from tests.realtime.test_device_flow import CONTRACT, SPEC, run_stage, run_towers

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

GPU_SPEC = replace(SPEC, device="cuda")
GPU_FLOW = PipelineSettings(flow=FlowSettings(device="cuda"))
CPU_FLOW = PipelineSettings(flow=FlowSettings(device="cpu"))


@pytest.fixture(scope="module")
def frames(make_stream):
    return make_stream(12, seed=5)[0]


@pytest.fixture(scope="module")
def model(make_perturbed_model):
    return make_perturbed_model(CONTRACT)


def test_frames_go_up_through_pinned_memory(frames):
    upload = Upload("cuda")
    on_gpu = upload(frames[0])
    assert on_gpu.device.type == "cuda" and upload.staging.is_pinned()
    assert torch.equal(on_gpu[0].cpu(), torch.from_numpy(frames[0]))
    staging = upload.staging
    upload(frames[1])
    assert upload.staging is staging  # reused: one pinned buffer per stream


def test_rings_live_on_the_gpu_and_fields_match_the_cpu_stage(frames):
    frame_ring, flow_ring, _ = run_stage(frames, GPU_SPEC)
    cpu_frames, cpu_fields, _ = run_stage(frames, SPEC)
    last = len(frames) - 1
    fields, rgb = flow_ring.window(last, len(frames)), frame_ring.window(last, len(frames))
    assert fields.device.type == "cuda" and rgb.device.type == "cuda"
    # The resize is float matmuls: a half may round the other way on another chip.
    assert int((rgb.cpu().to(torch.int16) - cpu_frames.window(last, len(frames)).to(torch.int16)).abs().max()) <= 1
    # TV-L1 in float32 on another chip: sums in another order, so a value near a quantisation
    # step may land one level (rarely two) off. Bound: two levels, on at most 2 % of values.
    off = (fields.cpu().to(torch.int16) - cpu_fields.window(last, len(frames)).to(torch.int16)).abs()
    assert int(off.max()) <= 2 and float((off > 0).float().mean()) <= 0.02, (int(off.max()), float((off > 0).float().mean()))
    stack = flow_ring.stack(last, 2)
    assert stack.device.type == "cuda" and stack.data_ptr() == flow_ring.window(last, 2).data_ptr()


class RecordingCudaBackend(TorchPrecisionBackend):
    def __init__(self, model):
        super().__init__(model, precision="fp16", device="cuda")
        self.inputs = []

    def _spatial(self, rgb):
        self.inputs.append(rgb)
        return super()._spatial(rgb)

    def _temporal(self, flow):
        self.inputs.append(flow)
        return super()._temporal(flow)


def test_the_cuda_backend_gets_gpu_ring_views(frames, model):
    frame_ring, flow_ring, _ = run_stage(frames[:6], GPU_SPEC)
    backend = RecordingCudaBackend(model)
    cache = run_towers(backend, frame_ring, flow_ring, 4)
    rgb, stack = backend.inputs[-2:]
    for given, view in ((rgb, frame_ring.rgb(4)), (stack, flow_ring.stack(4, 2))):
        assert isinstance(given, torch.Tensor) and given.device.type == "cuda" and given.dtype == torch.uint8
        assert given.data_ptr() == view.data_ptr()  # the ring's own GPU memory: nothing went through the host
    assert np.isfinite(cache.spatial[4]).all() and np.isfinite(cache.temporal[4]).all()


def test_a_gpu_pipeline_scores_as_the_cpu_pipeline(frames, model):
    with Pipeline(ArraySource(frames), TorchBackend(model), CPU_FLOW) as cpu:
        assert cpu.wait(timeout=120)
    gpu_backend = TorchPrecisionBackend(model, precision="fp32", device="cuda")
    with Pipeline(ArraySource(frames), gpu_backend, GPU_FLOW) as gpu:
        assert gpu.flow_device == "cuda"
        assert gpu.wait(timeout=120)
    mine, reference = np.stack([p.logits for p in gpu.history()]), np.stack([p.logits for p in cpu.history()])
    assert [p.index for p in gpu.history()] == [p.index for p in cpu.history()]
    # cuDNN may run fp32 convolutions in TF32 (10-bit mantissa), and fields may be a level off
    # on a few values (above): 1 % of the logits' scale.
    np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-2 * float(np.abs(reference).max()))


def test_streams_on_the_gpu_batch_their_flow(make_stream, model):
    clips = [make_stream(10, seed=seed)[0] for seed in (21, 22)]
    batch = BatchSettings(max_batch=8, max_wait_ms=10_000)
    with StreamSet(TorchPrecisionBackend(model, precision="fp32", device="cuda"), GPU_FLOW, batch=batch) as streams:
        for i, frames in enumerate(clips):
            streams.add(f"s{i}", ArraySource(frames))
        assert streams.wait(timeout=120)
        flow = streams.stats().part("flow")
        histories = [stream.history() for stream in streams.streams]
    assert flow.items == 2 * 9 and flow.max_batch == 2
    assert all([p.index for p in history] == list(range(4, 10)) for history in histories)
