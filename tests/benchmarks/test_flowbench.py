"""bench.py --flow-bench on small frames: every figure of the report is there and sane, and
the mode runs alone."""

from __future__ import annotations

import json

import pytest

import bench
from benchmarks import flowbench


def test_flow_bench_reports_every_method(monkeypatch, capsys):
    monkeypatch.setattr(flowbench, "SIZES", ((48, 64),))
    monkeypatch.setattr(flowbench, "BATCHES", (1, 2))
    assert bench.main(["--flow-bench", "--device", "cpu", "--flow-repeats", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "flow-bench" and report["device"] == "cpu" and report["machine"]["cores"] >= 1
    figures = report["64x48"]
    timed = figures["ms_per_pair"]
    assert {"tvl1-torch fast, batch 2", "tvl1-torch opencv, batch 1", "opencv-contrib tvl1, one pair at a time",
            "opencv dis-medium, one pair at a time"} <= set(timed) and min(timed.values()) > 0
    errors = figures["endpoint_error_px"]
    motion = errors.pop("true mean motion px")
    for method, per_motion in errors.items():
        assert set(per_motion) == set(motion)
        if "tvl1" in method:  # DIS's 8-px patches are too few at 64x48 to promise anything
            assert all(per_motion[m] < motion[m] for m in motion), method
    real = figures["real_frames_vs_opencv_contrib"]
    assert real is None or real["tvl1-torch opencv mean endpoint difference px"] < 0.5


def test_flow_bench_runs_alone(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--flow-bench", "--streams", "2"])
    assert "--flow-bench runs alone" in capsys.readouterr().err
