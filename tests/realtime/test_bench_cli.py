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


# ---- many streams, overload, soak (benchmarks/): run in this process, a couple of seconds each --------

import bench  # noqa: E402

SHORT = ("--backend", "torch", "--warmup", "0.5", "--clip-frames", "30", "--generated-clip", "--size", "160x120")


def run_mode(capsys, model_path, *args: str) -> dict:
    assert bench.main(["--model", str(model_path), *SHORT, *args]) == 0
    return json.loads(capsys.readouterr().out)


def check_spread(summary: dict, with_max: bool = True) -> None:
    values = [summary["p50"], summary["p95"]] + ([summary["max"]] if with_max else [])
    assert all(v is not None and v >= 0 for v in values), summary
    assert values == sorted(values), summary


def check_header(result: dict, mode: str) -> None:
    assert result["mode"] == mode
    assert result["backend"] == "torch" and result["precision"] == "fp32"
    assert result["machine"]["cores"] >= 1 and "cpu" in result["machine"]
    assert result["data"].startswith("generated: one 160x120 gesture clip")


def check_rss(rss: dict) -> None:
    if rss.get("available") is False:  # no /proc here
        return
    assert rss["min_mb"] <= rss["start_mb"] <= rss["max_mb"] and rss["min_mb"] <= rss["end_mb"] <= rss["max_mb"]
    assert rss["growth_mb"] == pytest.approx(rss["end_mb"] - rss["start_mb"], abs=0.11)
    assert len(rss["samples"]) >= 2 and rss["samples"][0][0] == 0.0


def check_live_run(run: dict, streams: int, max_batch: int) -> None:
    assert run["streams"] == streams and run["max_batch"] == max_batch
    assert run["aggregate_scored_fps"] > 0 and run["aggregate_input_fps"] > 0
    check_spread(run["latency_ms"])
    check_spread(run["lag_ms"])
    assert len(run["per_stream"]) == streams
    for stream in run["per_stream"]:
        assert stream["predictions"] > 0 and stream["frames"] > 0
        check_spread(stream["latency_ms"])
        assert 0 <= stream["drops"]["steady"] <= stream["drops"]["total"]
    assert run["worst_stream_p95_ms"] == max(s["latency_ms"]["p95"] for s in run["per_stream"])
    assert run["drops"]["steady"] == sum(s["drops"]["steady"] for s in run["per_stream"])
    assert run["sustained"] == (run["worst_stream_p95_ms"] <= 50 and run["drops"]["steady"] == 0)
    for part in ("spatial", "temporal", "head"):
        sizes = run["batch_sizes"][part]
        assert sum(sizes["histogram"].values()) == sizes["calls"] > 0
        assert 1 <= sizes["mean"] <= sizes["max"] <= max_batch
        assert sizes["max"] == max(int(size) for size in sizes["histogram"])
    check_rss(run["rss"])
    assert "threads_not_joined" not in run and "predictions_not_logged" not in run


def test_streams_mode_reports_latency_drops_and_batches_with_and_without_batching(capsys, model_path):
    result = run_mode(capsys, model_path, "--streams", "2", "--seconds", "2", "--no-batching-too")
    check_header(result, "streams")
    assert "p95 glass-to-label latency <= 50 ms" in result["criterion"]
    check_live_run(result["batched"], streams=2, max_batch=8)
    check_live_run(result["unbatched"], streams=2, max_batch=1)
    assert result["unbatched"]["batch_sizes"]["head"]["histogram"].keys() == {"1"}
    clips = [s["clip"] for s in result["batched"]["per_stream"]]
    assert len(set(clips)) == 2, clips  # one clip, two offsets


def test_sweep_reports_the_largest_count_that_met_the_criterion(capsys, model_path):
    result = run_mode(capsys, model_path, "--sweep", "2,1", "--seconds", "1.5", "--no-batching-too")
    check_header(result, "sweep")
    assert result["counts_run"] + result["counts_skipped"] == [1, 2]
    sustained = [row["streams"] for row in result["summary"] if row["sustained"]]
    assert result["largest_n_sustained"] == (max(sustained) if sustained else None)
    for run in result["runs"]:
        check_live_run(run, streams=run["streams"], max_batch=8)
    assert result["at_n"]["streams"] == (result["largest_n_sustained"] or 1)
    check_live_run(result["at_n"]["unbatched"], streams=result["at_n"]["streams"], max_batch=1)


def test_overload_reports_the_first_and_last_seconds_and_the_drops(capsys, model_path):
    result = run_mode(capsys, model_path, "--overload", "3", "--seconds", "4")
    check_header(result, "overload")
    assert result["scoring_rate_fps"] > 0
    assert result["source_fps"] == pytest.approx(3 * result["scoring_rate_fps"], rel=0.01)
    assert result["whole_run"]["predictions"] > 0
    for key in ("first_10s", "last_10s", "whole_run"):  # a 4-s run: each is the whole run
        window = result[key]
        assert window["from_s"] == 0.0 and window["drops"] >= 0
        check_spread(window["latency_ms"])
        check_spread(window["lag_ms"])
    assert result["whole_run"]["drops"] == result["drops"]
    assert sum(s["predictions"] for s in result["slices"]) == result["whole_run"]["predictions"]
    assert result["frames_offered"] > 0


def test_soak_frames_runs_that_many_frames_and_samples_memory(capsys, model_path):
    result = run_mode(capsys, model_path, "--soak-frames", "300", "--rss-every", "0.5", "--warmup", "0")
    check_header(result, "soak-frames")
    assert result["frames"] == 300 and 0 < result["frames_after_warmup"] <= 300
    assert result["scored_fps"] > 0
    check_rss(result["rss"])
    assert result["rss"]["samples"][-1][1] == 300


def test_soak_minutes_runs_live_streams_and_samples_memory(capsys, model_path):
    result = run_mode(capsys, model_path, "--soak-minutes", "0.04", "--streams", "2", "--rss-every", "0.5")
    check_header(result, "soak-minutes")
    assert result["soak_minutes"] == 0.04
    check_live_run(result, streams=2, max_batch=8)


def test_streams_play_real_clips_when_the_shared_data_is_there(capsys, model_path):
    from twostream.realdata import default_real_dir

    if not default_real_dir().is_dir():
        pytest.skip(f"{default_real_dir()} is absent (../shared/data)")
    args = ["--model", str(model_path), "--backend", "torch", "--warmup", "0.5", "--clip-frames", "10",
            "--streams", "2", "--seconds", "1"]
    assert bench.main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"].startswith("real: 2 clip(s)")
    clips = [s["clip"].split(" ")[0] for s in result["batched"]["per_stream"]]
    assert len(set(clips)) == 2 and all(name in result["data"] for name in clips), clips


@pytest.mark.parametrize("args, message", [
    (["--streams", "2", "--overload", "3"], "error: choose one of --streams and --overload"),
    (["--no-batching-too"], "error: --no-batching-too goes with --streams or --sweep"),
    (["--sweep", "1,x"], "error: argument --sweep: expected stream counts"),
    (["--streams", "0"], "error: argument --streams: must be >= 1"),
    (["--overload", "-1"], "error: argument --overload: must be > 0"),
    (["--streams", "1", "--clips", "/nonexistent/clips"], "error: --clips /nonexistent/clips: no such folder"),
])
def test_stream_modes_refuse_bad_arguments_in_one_line(capsys, args, message):
    try:
        status = bench.main(args)
    except SystemExit as exc:  # argparse's errors
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[0].startswith(message), err
    assert len(err) == 1 or err[1].startswith("(see: python bench.py --help)"), err
