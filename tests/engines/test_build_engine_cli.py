"""build_engine.py: a working build prints its parity JSON and writes an engine directory;
every failure is one `error:` line on stderr, exit status 2, and nothing left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import build_engine
from building.load import open_model
from engines.enginedir import ENGINE_JSON, read_engine
from building.parity import Thresholds
from tests.engines.conftest import SMALL

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--heldout-clips-per-class", "1", "--per-clip", "2", "--quiet"]


def _run(capsys, argv):
    code = build_engine.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _nothing_left(parent: Path, out: Path) -> bool:
    return not out.exists() and not any(p.name.startswith(f".{out.name}.") for p in parent.iterdir())


def test_a_build_prints_parity_and_writes_an_engine(small_ckpt, tmp_path, capsys):
    out = tmp_path / "ort32"
    code, stdout, stderr = _run(capsys, ["--model", small_ckpt, "--backend", "onnxruntime",
                                         "--precision", "fp32", "--out", out, *FAST])
    assert code == 0, stderr
    report = json.loads(stdout)
    assert {"max_abs_err", "max_rel_err", "top1_agreement"} <= set(report)
    assert report["passed"] and report["max_rel_err"] <= 1e-3 and report["windows"] == 20
    info = read_engine(out)
    assert info.contract == SMALL and info.parity["top1_agreement"] == report["top1_agreement"]
    with open_model(out) as opened:
        assert opened.contract == SMALL
    assert _nothing_left(tmp_path, tmp_path / "absent") and sorted(p.name for p in tmp_path.iterdir()) == ["ort32"]


def _garbage_model(tmp_path: Path) -> Path:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"this is not a checkpoint")
    return path


def _empty_folder(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


def _empty_video(tmp_path: Path) -> Path:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


FAILURES = [
    # (case, argv builder (tmp_path, ckpt) -> extra args, words of the one error line)
    ("bad checkpoint", lambda tmp, ckpt: ["--model", _garbage_model(tmp), "--backend", "onnxruntime",
                                          "--precision", "fp32"],
     "is not a model checkpoint of this project (a text file)"),
    ("unwritable output", lambda tmp, ckpt: ["--model", ckpt, "--backend", "onnxruntime", "--precision",
                                             "fp32", "--out", tmp / "blocker" / "engine"], "cannot write the engine"),
    ("empty calibration folder", lambda tmp, ckpt: ["--model", ckpt, "--backend", "openvino", "--precision",
                                                    "int8", "--calib", _empty_folder(tmp)], "no images"),
    ("empty calibration video", lambda tmp, ckpt: ["--model", ckpt, "--backend", "onnxruntime", "--precision",
                                                   "int8", "--calib", _empty_video(tmp)], "cannot open video file"),
    ("unavailable backend", lambda tmp, ckpt: ["--model", ckpt, "--backend", "tensorrt", "--precision",
                                               "fp16"], "TensorRT is not installed"),
]


@pytest.mark.parametrize("case, argv, words", FAILURES, ids=[f[0] for f in FAILURES])
def test_failures_are_one_line_and_leave_nothing(case, argv, words, small_ckpt, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    out = tmp_path / "engine"
    args = argv(tmp_path, small_ckpt)
    if "--out" not in args:
        args += ["--out", out]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, stderr = _run(capsys, [*args, *FAST])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written
    assert stdout == ""


def test_parity_below_thresholds_fails_and_writes_nothing(small_ckpt, tmp_path, capsys, monkeypatch):
    import building.parity

    monkeypatch.setattr(building.parity, "thresholds_for", lambda precision: Thresholds(max_rel_err=-1.0))
    out = tmp_path / "engine"
    code, stdout, stderr = _run(capsys, ["--model", small_ckpt, "--backend", "onnxruntime",
                                         "--precision", "fp32", "--out", out, *FAST])
    assert code == 2 and "parity below thresholds" in stderr and len(stderr.strip().splitlines()) == 1
    assert json.loads(stdout)["passed"] is False  # the report is still printed
    assert _nothing_left(tmp_path, out)


def test_the_real_process_exits_2_with_one_line(small_ckpt, tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "build_engine.py"), "--model", str(small_ckpt),
                             "--backend", "tensorrt", "--precision", "int8", "--out", str(tmp_path / "e")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: ")
    assert not (tmp_path / "e").exists() and not (tmp_path / ENGINE_JSON).exists()


def test_parity_windows_can_come_from_videos(small_ckpt, tmp_path, capsys):
    """--heldout: unlabelled windows read by the runtime's sources (agreement only, no top-1)."""
    import cv2

    from twostream.gestures import GestureStream

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 120))
    for item, _ in zip(GestureStream(9, (160, 120)), range(20)):
        writer.write(item.bgr)
    writer.release()
    code, stdout, stderr = _run(capsys, ["--model", small_ckpt, "--backend", "openvino", "--precision", "fp32",
                                         "--heldout", video, "--out", tmp_path / "ov32", "--quiet"])
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["held_out"].endswith("(unlabelled)") and report["top1"] is None
    assert report["windows"] == 20 - 8 + 1 and report["top1_agreement"] == 1.0  # window span 8
