"""app.py and bench.py with --device and --flow tvl1-torch, as a user runs them: torch flow on
the CPU end to end, one clear error line for CUDA where there is none or for a model trained on
another flow."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest
import torch

import bench
from tests.realtime.test_app_cli import ROOT, predictions_of, run_app, summary_of
from tests.realtime.test_device_flow import CONTRACT
from twostream.checkpoint import save_checkpoint

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture(scope="module")
def tvl1_model(make_perturbed_model, tmp_path_factory):
    """A model file whose contract names tvl1-torch (64 x 64, short windows)."""
    path = tmp_path_factory.mktemp("tvl1-model") / "tvl1.pt"
    save_checkpoint(path, make_perturbed_model(CONTRACT))
    return path


@pytest.fixture(scope="module")
def clip(make_stream, tmp_path_factory):
    """12 frames of generated gestures in an MPEG-4 file."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    frames = make_stream(12, seed=7)[0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (frames.shape[2], frames.shape[1]))
    for bgr in frames:
        writer.write(bgr)
    writer.release()
    return path


@NO_CUDA
@pytest.mark.parametrize("command", ["app", "bench"])
def test_cuda_without_cuda_is_one_error_line_and_exit_2(command):
    if command == "app":
        done = run_app("--source", "demo", "--device", "cuda", "--max-frames", "5", timeout=120)
    else:
        done = subprocess.run([sys.executable, str(ROOT / "bench.py"), "--device", "cuda", "--frames", "40"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: CUDA requested but not available"), done.stderr


def test_tvl1_torch_on_a_model_trained_on_other_flow_is_a_contract_mismatch(model_path):
    done = run_app("--model", str(model_path), "--source", "demo", "--flow", "tvl1-torch", "--device", "cpu",
                   "--max-frames", "5", timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: flow method 'tvl1-torch' but the model was trained on 'dis-medium'")


def test_app_runs_torch_flow_on_the_cpu_end_to_end(tvl1_model, clip):
    done = run_app("--model", str(tvl1_model), "--source", str(clip), "--device", "cpu", timeout=180)
    assert done.returncode == 0, done.stderr
    assert [p["frame"] for p in predictions_of(done.stdout)] == list(range(4, 12))
    engine = next(line for line in done.stderr.splitlines() if line.startswith("engine: "))
    engine = json.loads(engine.removeprefix("engine: "))
    assert engine["device"] == "cpu"
    flow = engine["batching"]["parts"]["flow"]  # the shared flow worker's batches
    assert flow["items"] == 11 and flow["calls"] == 11  # one stream: every pair alone
    summary = summary_of(done.stderr)
    assert summary["flow"] == "tvl1-torch" and summary["stopped_by"] == "end of source"


def test_bench_runs_the_pipeline_and_the_baseline_with_torch_flow(capsys, tvl1_model):
    assert bench.main(["--model", str(tvl1_model), "--device", "cpu", "--frames", "14", "--live-frames", "0",
                       "--size", "160x120"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["flow_method"] == "tvl1-torch" and result["flow_device"] == "cpu" and result["device"] == "cpu"
    assert result["predictions"] == 14 - 4 and result["naive_frames"] == 12  # the baseline's first few windows
    assert result["max_abs_logit_diff_vs_naive"] < 1e-3  # OpenCV resize + per-pair TV-L1 vs the device stage


def test_bench_streams_report_flow_batches(capsys, tvl1_model):
    assert bench.main(["--model", str(tvl1_model), "--device", "cpu", "--streams", "2", "--seconds", "2",
                       "--warmup", "0.5", "--fps", "5", "--generated-clip", "--size", "160x120",
                       "--clip-frames", "20"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["flow_method"] == "tvl1-torch" and result["flow_device"] == "cpu"
    flow = result["batched"]["batch_sizes"]["flow"]
    assert flow["calls"] > 0 and 1 <= flow["mean"] <= flow["max"] <= 8
    assert all(stream["predictions"] > 0 for stream in result["batched"]["per_stream"])
