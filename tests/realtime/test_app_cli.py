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
KEYS = {"frame", "t_capture", "label", "score", "topk", "latency_ms", "lag_ms", "dropped"}
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


def predictions_of(stdout: str) -> list[dict]:
    """The prediction lines (the others are status lines)."""
    return [r for r in map(json.loads, stdout.splitlines()) if "status" not in r]


def statuses_of(stdout: str) -> list[dict]:
    return [r for r in map(json.loads, stdout.splitlines()) if "status" in r]


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
    lines = predictions_of(done.stdout)
    assert [r["frame"] for r in lines] == list(range(22, 48, 3))
    assert [r["status"] for r in statuses_of(done.stdout)] == ["connecting", "live", "ended"]
    for record in lines:
        assert KEYS <= set(record) and set(record["latency_ms"]) == STAGES and record["stream"] == "0"
        assert record["label"] == record["topk"][0][0] and record["score"] == record["topk"][0][1]
        assert len(record["topk"]) == 3 and record["dropped"] == 0 and "true_label" not in record
        assert record["lag_ms"] == 0.0  # read with back-pressure: a file has no clock to fall behind
    summary = summary_of(done.stderr)
    assert summary["frames"] == 48 and summary["predictions"] == len(lines) and summary["dropped"] == 0
    assert summary["threads_not_joined"] == [] and set(summary["stages"]) == STAGES | {"lag"}
    assert (summary["stream"], summary["state"], summary["error"], summary["reconnects"]) == ("0", "ended", None, 0)
    engine, _ = done.stderr.strip().splitlines()  # nothing but the engine line and the summary
    assert engine.startswith("engine: ") and json.loads(engine.removeprefix("engine: "))["backend"] == "torch"


def test_demo_source_lines_carry_the_true_label(model_path):
    done = run_app("--source", "demo", "--model", str(model_path), "--demo-size", "160x120", "--max-frames", "30")
    assert done.returncode == 0, done.stderr
    lines = predictions_of(done.stdout)
    assert len(lines) == 30 - 22 - summary_of(done.stderr)["dropped"]
    for record in lines:
        assert record["true_label"] and isinstance(record["window_pure"], bool) and "accuracy" in record


def test_ctrl_c_stops_cleanly_with_a_summary(model_path):
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--no-ui", "--backend", "torch", "--source", "demo",
                            "--model", str(model_path), "--demo-size", "160x120"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        first = json.loads(app.stdout.readline())  # blocks until the first line
        while "status" in first:
            first = json.loads(app.stdout.readline())  # until the first prediction
        assert first["frame"] >= 22
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
    assert len(predictions_of(done.stdout)) == 3


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
    assert predictions_of(done.stdout) == []


def stderr_lines(stderr: str) -> tuple[list[str], list[str], list[dict]]:
    """(error lines, engine lines, summaries) of a run's stderr, which holds nothing else."""
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    engines = [line for line in lines if line.startswith("engine: ")]
    summaries = [json.loads(line.removeprefix("summary: ")) for line in lines if line.startswith("summary: ")]
    assert len(errors) + len(engines) + len(summaries) == len(lines), stderr
    return errors, engines, summaries


def test_several_streams_run_in_one_process_and_a_bad_one_fails_alone(model_path, clip_file, garbage_file):
    done = run_app("--source", f"a={clip_file}", "--source", str(clip_file), "--source", str(garbage_file),
                   "--source", "url=rtsp://127.0.0.1:1/nope", "--open-timeout", "2",
                   "--model", str(model_path), "--max-frames", "30")
    assert done.returncode == 0, done.stderr
    predictions = predictions_of(done.stdout)
    for name in ("a", "1"):
        assert [r["frame"] for r in predictions if r["stream"] == name] == list(range(22, 30))
    assert {r["stream"] for r in predictions} == {"a", "1"}
    errors, engines, summaries = stderr_lines(done.stderr)
    assert sorted(errors) == [
        f"error: stream 2: cannot open video file '{garbage_file}': not a video format FFmpeg can read "
        "(corrupt or not a video?)",
        "error: stream url: cannot open stream 'rtsp://127.0.0.1:1/nope': connection refused by 127.0.0.1:1"]
    assert done.stderr.strip().splitlines()[-5].startswith("engine: ")  # then one summary per stream
    engine = json.loads(engines[0].removeprefix("engine: "))
    assert engine["backend"] == "torch" and set(engine["batching"]["parts"]) == {"spatial", "temporal", "head"}
    assert [(s["stream"], s["state"], s["reconnects"], s["frames"]) for s in summaries] == [
        ("a", "ended", 0, 30), ("1", "ended", 0, 30), ("2", "failed", 0, 0), ("url", "failed", 0, 0)]
    assert summaries[0]["stopped_by"] == "--max-frames" and summaries[0]["error"] is None
    assert summaries[3]["error"].startswith("cannot open stream") and summaries[3]["stopped_by"] == "failed"
    url = [r["status"] for r in statuses_of(done.stdout) if r["stream"] == "url"]
    assert url == ["failed"]  # refused at the probe, before the model loaded: reported, not retried


def test_the_exit_status_is_2_only_when_every_stream_failed(model_path, garbage_file):
    done = run_app("--source", str(garbage_file), "--source", "/nonexistent/clip.mp4", "--model", str(model_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: stream 0: cannot open video file '{garbage_file}': not a video format FFmpeg can read "
        "(corrupt or not a video?)",
        "error: stream 1: cannot open video file '/nonexistent/clip.mp4': no such file"]
    assert [(r["stream"], r["status"]) for r in statuses_of(done.stdout)] == [("0", "failed"), ("1", "failed")]
    assert predictions_of(done.stdout) == []


def test_a_sources_file_names_the_streams_and_max_frames_counts_per_stream(model_path, clip_file, tmp_path):
    listing = tmp_path / "cams.txt"
    listing.write_text(f"# two clips\nfront={clip_file}\n\n{clip_file}\n")
    done = run_app("--sources", str(listing), "--model", str(model_path), "--max-frames", "25", "--max-batch", "1")
    assert done.returncode == 0, done.stderr
    predictions = predictions_of(done.stdout)
    assert {name: [r["frame"] for r in predictions if r["stream"] == name] for name in ("front", "1")} == \
           {"front": [22, 23, 24], "1": [22, 23, 24]}
    _, engines, summaries = stderr_lines(done.stderr)
    batching = json.loads(engines[0].removeprefix("engine: "))["batching"]
    assert batching["max_batch"] == 1 and all(p["max_batch"] == 1 for p in batching["parts"].values())
    assert [(s["stream"], s["frames"]) for s in summaries] == [("front", 25), ("1", 25)]


@pytest.mark.parametrize("args, message", [
    (["--sources", "/nonexistent/cams.txt"], "error: --sources /nonexistent/cams.txt: no such file"),
    (["--source", "a=demo", "--source", "a=0"], "error: duplicate stream name 'a'"),
    (["--max-batch", "0"], "error: argument --max-batch: must be >= 1"),
])
def test_a_bad_stream_list_is_one_clear_line(model_path, args, message):
    done = run_app(*args, "--model", str(model_path), timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("(see: ")]  # argparse's hint
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert predictions_of(done.stdout) == []
