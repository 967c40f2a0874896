"""bench.py prints one JSON object with the streaming and the naive figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str) -> dict:
    done = subprocess.run([sys.executable, str(ROOT / "bench.py"), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_bench_reports_fps_stages_and_speedup():
    result = run_bench("--frames", "40", "--naive-frames", "30", "--live-frames", "30", "--naive-threads", "1")
    assert {"fps", "naive_fps", "speedup", "stages_ms", "naive_stages_ms", "live_latency_ms"} <= set(result)
    assert result["speedup"] == pytest.approx(result["fps"] / result["naive_fps"], rel=0.01)
    for name in ("decode", "flow", "spatial", "temporal", "head", "latency"):
        assert 0 <= result["stages_ms"][name]["p50"] <= result["stages_ms"][name]["p95"]
    assert result["predictions"] == 40 - 22 and result["dropped"] == 0
    # The baseline scores the same windows and must agree with the streaming logits.
    assert result["max_abs_logit_diff_vs_naive"] < 1e-3


@pytest.mark.slow
def test_streaming_is_at_least_five_times_faster_than_the_naive_baseline():
    result = run_bench("--frames", "100", "--live-frames", "0")
    assert result["speedup"] >= 5, result


def test_bench_refuses_a_clip_shorter_than_a_window():
    done = subprocess.run([sys.executable, str(ROOT / "bench.py"), "--frames", "10"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
