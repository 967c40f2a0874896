"""app.py end to end, as a user runs it: JSON lines out, one clear error line on failure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"frame", "t_capture", "label", "score", "topk", "latency_ms", "dropped"}
STAGES = {"decode", "flow", "spatial", "temporal", "head", "total"}


def run_app(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """app.py headless on the PyTorch backend: these tests are about the runtime, and the
    engines' own tests cover the other backends."""
    return subprocess.run([sys.executable, str(ROOT / "app.py"), "--no-ui", "--backend", "torch", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def summary_of(stderr: str) -> dict:
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("summary: "), stderr
    return json.loads(last.removeprefix("summary: "))


@pytest.fixture(scope="module")
def clip_file(short_clip, tmp_path_factory):
    """The 48-frame test clip as an MPEG-4 file."""
    path = tmp_path_factory.mktemp("clip") / "gestures.mp4"
    frames = short_clip[0]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, frames.shape[2:0:-1])
    for bgr in frames:
        writer.write(bgr)
    writer.release()
    return path


@pytest.fixture(scope="module")
def garbage_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("garbage") / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).bytes(50_000))
    return path


def test_file_run_prints_one_json_line_per_prediction(model_path, clip_file):
    done = run_app("--source", str(clip_file), "--model", str(model_path), "--hop", "3")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["frame"] for r in lines] == list(range(22, 48, 3))
    for record in lines:
        assert KEYS <= set(record) and set(record["latency_ms"]) == STAGES
        assert record["label"] == record["topk"][0][0] and record["score"] == record["topk"][0][1]
        assert len(record["topk"]) == 3 and record["dropped"] == 0 and "true_label" not in record
    summary = summary_of(done.stderr)
    assert summary["frames"] == 48 and summary["predictions"] == len(lines) and summary["dropped"] == 0
    assert summary["threads_not_joined"] == [] and set(summary["stages"]) == STAGES
    assert len(done.stderr.strip().splitlines()) == 1  # nothing but the summary


def test_demo_source_lines_carry_the_true_label(model_path):
    done = run_app("--source", "demo", "--model", str(model_path), "--demo-size", "160x120", "--max-frames", "30")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 30 - 22 - summary_of(done.stderr)["dropped"]
    for record in lines:
        assert record["true_label"] and isinstance(record["window_pure"], bool) and "accuracy" in record


def test_ctrl_c_stops_cleanly_with_a_summary(model_path):
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--no-ui", "--backend", "torch", "--source", "demo",
                            "--model", str(model_path), "--demo-size", "160x120"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = app.stdout.readline()  # blocks until the first prediction
        assert json.loads(first)["frame"] >= 22
        app.send_signal(signal.SIGINT)
        out, err = app.communicate(timeout=30)
    finally:
        app.kill()
    assert app.returncode == 0, err
    summary = summary_of(err)
    assert summary["stopped_by"] == "interrupt" and summary["threads_not_joined"] == []
    assert "Traceback" not in err


def test_an_allowed_contract_mismatch_runs_with_a_loud_warning(model_path, clip_file):
    done = run_app("--source", str(clip_file), "--model", str(model_path), "--max-frames", "25",
                   "--flow", "dis-fast", "--allow-contract-mismatch")
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("WARNING: preprocessing differs from the model's contract")
    assert len(done.stdout.splitlines()) == 3


@pytest.mark.parametrize("case, args, message", [
    ("missing file", ["--source", "/nonexistent/clip.mp4"],
     "error: cannot open video file '/nonexistent/clip.mp4': no such file"),
    ("unreadable file", ["--source", "{garbage}"], "error: cannot open video file '{garbage}': not a video"),
    ("refused url", ["--source", "rtsp://127.0.0.1:1/nope", "--open-timeout", "2"],
     "error: cannot open stream 'rtsp://127.0.0.1:1/nope': connection refused by 127.0.0.1:1"),
    ("unknown host", ["--source", "rtsp://cam.invalid/live"],
     "error: cannot open stream 'rtsp://cam.invalid/live': unknown host cam.invalid"),
    # The URL is probed before the model loads: the model file's own error never comes.
    ("url before model", ["--source", "rtsp://admin:pw@127.0.0.1:1/x", "--model", "/nonexistent/model.pt"],
     "error: cannot open stream 'rtsp://admin:***@127.0.0.1:1/x': connection refused by 127.0.0.1:1"),
    ("absent camera", ["--source", "99"], "error: cannot open camera 99: no such camera"),
    ("unsupported url", ["--source", "ftp://127.0.0.1/x.mp4"], "error: cannot open 'ftp://127.0.0.1/x.mp4'"),
    ("missing model", ["--source", "{clip}", "--model", "/nonexistent/model.pt"],
     "error: model file not found: /nonexistent/model.pt"),
    ("contract mismatch", ["--source", "{clip}", "--flow", "farneback"], "error: flow method 'farneback'"),
])
def test_errors_are_one_clear_line_and_a_nonzero_exit(case, args, message, model_path, clip_file, garbage_file):
    values = {"garbage": garbage_file, "clip": clip_file}
    args = [a.format(**values) for a in args]
    if "--model" not in args:
        args += ["--model", str(model_path)]
    done = run_app(*args, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(message.format(**values)), lines[0]
    assert done.stdout == ""
