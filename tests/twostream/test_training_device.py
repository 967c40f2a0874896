"""Training on a device (train.py fit --device, --amp, --loader-workers, --flow-cache): batches the
same with and without loader workers, the flow cache (hit, miss, changed TV-L1 parameters, a
corrupt entry), one error line for CUDA that is not there, checkpoints of CPU tensors. The tests
marked gpu run one AMP step and a tvl1-torch fit on CUDA, and skip cleanly without it."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

import train
from trainer import common as train_common
import twostream.data as data
import twostream.training as training
from twostream.batches import LoaderSettings, TowerSamples, loader, tower_plan
from twostream.checkpoint import read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.data import ClipPrep
from twostream.flowcache import FlowCache
from twostream.model import TwoStreamNet
from twostream.tvl1 import TVL1Params

TINY = ["--input-size", "32", "--stack-length", "2", "--segments", "2", "--stride", "2", "--frames", "10",
        "--batch", "8", "--samples-per-clip", "2", "--per-clip", "1", "--workers", "1", "--no-real",
        "--clips-per-class", "1", "--head-clips-per-class", "1", "--val-clips-per-class", "1",
        "--tower-epochs", "1", "--head-epochs", "1"]
# TV-L1 kept cheap: tiny frames, few iterations (the flow's quality is test_tvl1.py's business).
QUICK_TVL1 = dataclasses.replace(TVL1Params.fast(), scales=2, warps=1, iterations=5)
CONTRACT = ModelContract(classes=GESTURE_CLASSES, input_size=(32, 32), stack_length=2, num_segments=2, stride=1,
                         flow_method="tvl1-torch", tvl1=QUICK_TVL1)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _tensors(value):
    """Every tensor in a nested checkpoint payload."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _only_cpu_tensors(path) -> int:
    """Loads without map_location, as a CPU machine would, and checks every tensor's device."""
    payload = torch.load(path, weights_only=True)
    tensors = list(_tensors(payload))
    assert tensors and all(t.device.type == "cpu" for t in tensors), {t.device for t in tensors}
    return len(tensors)


def test_loader_workers_give_the_same_batches_and_weights(tmp_path, monkeypatch, one_thread):
    rendered, used = {}, []
    real_generate, real_loader = train_common.generate_clips, training.loader

    def generate(contract, clips_per_class, seed, **kwargs):  # render once, both runs share the clips
        key = (contract, clips_per_class, seed)
        rendered.setdefault(key, real_generate(contract, clips_per_class, seed, **kwargs))
        return rendered[key]

    def recording_loader(dataset, plan, settings):
        used.append(settings.workers)
        return real_loader(dataset, plan, settings)

    monkeypatch.setattr(train_common, "generate_clips", generate)
    monkeypatch.setattr(training, "loader", recording_loader)
    weights = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}.pt"
        assert train.main(["fit", "--out", str(out), "--device", "cpu", "--loader-workers", str(workers),
                           *TINY]) == 0
        checkpoint = read_checkpoint(out)
        weights[workers] = checkpoint.state_dict
        assert checkpoint.metrics["trained_on"] == f"{len(os.sched_getaffinity(0))} CPU cores"  # for the card
        _only_cpu_tensors(out)
    assert used == [0, 0, 2, 2]  # towers and head, each run: the workers were really used
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[2][key], value, rtol=0, atol=0, msg=lambda m: f"{key}: {m}")


def test_the_loader_leaves_torch_global_generator_alone():
    """DataLoader seeds its workers from the global generator unless given one; a draw there
    would shift the head's dropout masks between a run and its resumed half."""
    clips = data.ClipSet((data.Clip(np.zeros((6, 3, 32, 32), np.uint8), np.full((6, 2, 32, 32), 128, np.uint8), 1),),
                         GESTURE_CLASSES)
    contract = ModelContract(classes=GESTURE_CLASSES, input_size=(32, 32), stack_length=2)
    plan = tower_plan([6], contract, np.random.default_rng(0), 4, 3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    batches = list(loader(TowerSamples(clips, contract), plan, LoaderSettings(workers=2)))
    assert torch.equal(torch.get_rng_state(), before)
    rgb, flow, labels = batches[0]
    assert rgb.dtype == flow.dtype == torch.uint8 and flow.shape == (4, 4, 32, 32) and labels.tolist() == [1] * 4


def _cached_clips(prep: ClipPrep):
    return data.generate_clips(CONTRACT, 1, seed=0, frames=4, workers=1, prep=prep)


def _entries(root):
    return sorted(root.rglob("*.npz"))


@pytest.mark.timeout(60)
def test_clip_workers_run_torch_flow_after_the_parent_used_torch_threads():
    """A forked worker whose parent already ran torch's thread pool hangs in its first parallel
    op unless it keeps to one thread (twostream.data._pool): train.py fit renders its held-out
    clips after training."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        a = torch.randn(256, 256)
        (a @ a).sum()
        clips = data.generate_clips(CONTRACT, 1, seed=1, frames=4, workers=1)
    finally:
        torch.set_num_threads(threads)
    assert len(clips) == len(GESTURE_CLASSES) and clips.clips[0].flow.shape == (4, 2, 32, 32)


def test_device_flow_runs_in_the_main_process_and_gives_the_workers_clips(monkeypatch):
    """Torch flow on CUDA must not run in a forked worker: the workers render, the main process
    computes the flow (the same code on the CPU here, forced), and the clips are the same."""
    assert ClipPrep.of(CONTRACT, device="cuda").flow_in_main and not ClipPrep.of(CONTRACT).flow_in_main
    assert not ClipPrep.of(dataclasses.replace(CONTRACT, flow_method="dis-fast", tvl1=None), device="cuda").flow_in_main
    in_workers = _cached_clips(ClipPrep.of(CONTRACT))
    main_pid, calls, real = os.getpid(), [], data.preprocess_clip

    def counted(frames, spec):
        calls.append(os.getpid())
        return real(frames, spec)

    monkeypatch.setattr(data, "preprocess_clip", counted)
    in_main = _cached_clips(dataclasses.replace(ClipPrep.of(CONTRACT), flow_in_main=True))
    assert calls == [main_pid] * len(GESTURE_CLASSES)  # a worker's calls would not reach this list
    for a, b in zip(in_workers.clips, in_main.clips):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.flow, b.flow)


def test_flow_cache_miss_then_hit(tmp_path, monkeypatch):
    prep = ClipPrep.of(CONTRACT, cache=tmp_path)
    first = _cached_clips(prep)
    assert len(_entries(tmp_path)) == len(first) == len(GESTURE_CLASSES)

    def no_flow(*args):
        raise AssertionError("a cache hit computed flow")

    monkeypatch.setattr(data, "preprocess_clip", no_flow)  # the forked worker inherits it
    second = _cached_clips(prep)
    for a, b in zip(first.clips, second.clips):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.flow, b.flow)
    with pytest.raises(AssertionError, match="computed flow"):  # and without the cache it is computed
        _cached_clips(ClipPrep.of(CONTRACT))


def test_changed_tvl1_parameters_never_reuse_cached_flow(tmp_path, monkeypatch):
    _cached_clips(ClipPrep.of(CONTRACT, cache=tmp_path))
    entries = _entries(tmp_path)
    other = dataclasses.replace(CONTRACT, tvl1=dataclasses.replace(QUICK_TVL1, iterations=6))
    other_prep = ClipPrep.of(other, cache=tmp_path)
    other_clips = data.generate_clips(other, 1, seed=0, frames=4, workers=1, prep=other_prep)
    assert len(_entries(tmp_path)) == 2 * len(entries)  # its own entries, computed
    assert set(entries) < set(_entries(tmp_path))
    # The key is the spec without the device: where flow ran does not change what it is.
    assert FlowCache(tmp_path).key(np.zeros((2, 4, 4, 3), np.uint8), dataclasses.replace(other_prep.spec, device="cuda")) \
        == FlowCache(tmp_path).key(np.zeros((2, 4, 4, 3), np.uint8), other_prep.spec)
    assert other_clips.clips[0].flow.shape == (4, 2, 32, 32)


def test_a_corrupt_cache_entry_is_recomputed_with_a_warning(tmp_path, capfd):
    prep = ClipPrep.of(CONTRACT, cache=tmp_path)
    first = _cached_clips(prep)
    victim = _entries(tmp_path)[3]
    victim.write_bytes(victim.read_bytes()[:200])  # a truncated copy
    train.configure_logging()  # as train.py does: warnings as lines on stderr, from workers too
    again = _cached_clips(prep)
    err = [line for line in capfd.readouterr().err.splitlines() if "flow cache" in line]
    assert len(err) == 1 and str(victim) in err[0] and "recomputing it" in err[0]
    for a, b in zip(first.clips, again.clips):
        np.testing.assert_array_equal(a.flow, b.flow)
    assert FlowCache(tmp_path).load(victim.stem, prep.spec, 4) is not None  # rewritten whole


def test_cuda_without_cuda_and_amp_on_the_cpu_are_one_error_line(tmp_path, capsys):
    if not torch.cuda.is_available():
        assert train.main(["fit", "--out", str(tmp_path / "m.pt"), "--device", "cuda", *TINY]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: CUDA requested but not available"), err
    assert train.main(["fit", "--out", str(tmp_path / "m.pt"), "--device", "cpu", "--amp", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --amp is fp16 mixed precision on CUDA"), err
    assert not (tmp_path / "m.pt").exists()


class _Stop(Exception):
    pass


@pytest.mark.gpu
@needs_cuda
def test_one_amp_step_on_cuda_gives_a_finite_loss_and_a_checkpoint_of_cpu_tensors(tmp_path, monkeypatch):
    contract = dataclasses.replace(CONTRACT, flow_method="dis-fast", tvl1=None)
    clips = data.generate_clips(contract, 1, seed=0, frames=8, workers=1)
    model = TwoStreamNet(contract).to("cuda")
    steps, real_step = [], training._step

    def step(loss, opt, sched, scaler):
        steps.append((loss.device.type, scaler.is_enabled(), loss.item()))
        real_step(loss, opt, sched, scaler)

    monkeypatch.setattr(training, "_step", step)
    # Two epochs of one step each (10 clips, batch 10); stopped after the first, on CUDA with AMP.
    settings = training.TrainSettings(tower_epochs=2, tower_batch=10, samples_per_clip=1, device="cuda", amp=True,
                                      loader_workers=2)
    out = tmp_path / "amp.pt"
    saved = []

    def on_epoch(progress, figures):
        save_checkpoint(out, model, metrics=figures, train_state=progress.to_train_state())
        saved.append(progress)
        raise _Stop

    with pytest.raises(_Stop):
        training.train_towers(model, clips, settings, training.Progress(), on_epoch)
    assert [(d, amp) for d, amp, _ in steps] == [("cuda", True)] and np.isfinite(steps[0][2])
    assert saved[0].scaler is not None and saved[0].cuda_rng is not None
    assert _only_cpu_tensors(out) > len(model.state_dict())  # weights, AdamW moments, generators
    # Trained on CUDA, it resumes on a CPU: the moments move to the CPU parameters.
    checkpoint = read_checkpoint(out)
    cpu_model = TwoStreamNet(contract)
    cpu_model.load_state_dict(checkpoint.state_dict)
    training.train_towers(cpu_model, clips, dataclasses.replace(settings, device="cpu", amp=False, loader_workers=0),
                          training.Progress.from_train_state(checkpoint.train_state), lambda p, f: None)
    assert [(d, amp) for d, amp, _ in steps[1:]] == [("cpu", False)] and np.isfinite(steps[1][2])


@pytest.mark.gpu
@needs_cuda
def test_fit_with_tvl1_torch_flow_on_cuda(tmp_path, capsys):
    out = tmp_path / "m.pt"
    argv = ["fit", "--out", str(out), "--device", "cuda", "--flow", "tvl1-torch", "--flow-cache",
            str(tmp_path / "cache"), *TINY]
    assert train.main(argv) == 0
    assert "training on cuda with fp16 autocast, 2 loader workers" in capsys.readouterr().err
    checkpoint = read_checkpoint(out)
    assert checkpoint.contract.flow_method == "tvl1-torch"
    assert checkpoint.metrics["trained_on"] == f"{torch.cuda.get_device_name('cuda')} (CUDA, fp16 autocast)"
    _only_cpu_tensors(out)
    assert _entries(tmp_path / "cache")  # the flow computed on the GPU was cached
