#!/usr/bin/env python
"""Benchmark: the streaming pipeline against the seed systems' from-scratch scoring.

    python bench.py                      # 200-frame 320x240 generated clip, hop 1
    python bench.py --frames 600 --naive-frames 150
    python bench.py --backend openvino --precision int8 --model models/demo.openvino-int8
    python bench.py --flow tvl1-torch --device cuda   # TV-L1 on the GPU, rings there (random weights)

Both run in this process on the same generated clip, written to a video file so decoding
is measured too. ``fps`` is end to end: frames read from the file divided by the wall time
from the first read to the last prediction, decode, flow, towers and head included, every
frame scored (hop 1). ``naive_fps`` is the same for the baseline (realtime.naive), which
recomputes all T*L flow fields and runs all T sampled frames through both towers for every
window. Prints one JSON object on stdout; errors are one line on stderr and exit status 2.

Many streams, overload and soak (benchmarks/: clips held in memory, real footage from
../shared/data/videos/real when present, else a generated clip; the JSON says which):

    python bench.py --streams 8 --no-batching-too    # 8 live 25-fps streams on one engine, 30 s
    python bench.py --sweep 1,2,4,6,8,10,12           # the most 25-fps streams that keep p95 <= 50 ms
    python bench.py --overload 3 --seconds 60         # one source 3x faster than it can be scored
    python bench.py --soak-frames 100000              # the fast path, resident memory sampled
    python bench.py --soak-minutes 30 --streams 4     # four live streams for 30 minutes

Optical flow alone (benchmarks/flowbench.py): tvl1-torch against OpenCV contrib's TV-L1 and DIS,
ms per pair at 112x112 and 224x224, batch 1 and 16, endpoint errors and agreement on real frames:

    python bench.py --flow-bench --threads 2 [--device auto|cpu|cuda]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# Idle OpenMP workers sleep instead of spinning: on 2 vCPUs spinning workers starve the other
# thread (a 2-thread batch-1 conv took ~400 ms instead of ~4). Only the naive baseline may use
# more than one torch thread; this makes it as fast as it can be, so the speedup is not inflated.
# Not for --flow-bench: TV-L1's thousands of small parallel ops run 3-4x slower with 2 threads
# when OpenMP's workers sleep between them (measured at 224x224), and there nothing else runs.
# It must be decided before torch loads OpenMP, hence before the arguments are parsed.
if "--flow-bench" not in sys.argv[1:]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cli import CommandParser, at_least_one, configure_logging, frame_size, non_negative_float, positive_seconds  # noqa: E402
from twostream import seeds  # noqa: E402
from engines.table import BACKEND_CHOICES, PRECISION_CHOICES  # noqa: E402
from twostream.contract import FLOW_METHODS  # noqa: E402
from twostream.devices import DEVICES, resolve_device  # noqa: E402
from twostream.errors import DataError, RecognizerError  # noqa: E402

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "demo.pt"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="bench.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="clip length in frames (default 200)")
    parser.add_argument("--naive-frames", type=int, default=0,
                        help="frames of the same clip the slow baseline runs on (default 0: all of them, "
                             "so both rates include the same share of warm-up frames; with tvl1-torch "
                             "flow only its first few windows)")
    parser.add_argument("--size", type=frame_size, default=(320, 240), metavar="WxH", help="clip size (default 320x240)")
    parser.add_argument("--seed", type=int, default=seeds.BENCH_CLIP, help="seed of the generated clip")
    parser.add_argument("--model", type=Path, default=None,
                        help="model file or engine directory from build_engine.py (default: models/demo.pt, "
                             "or random weights if it is absent: speed does not depend on the weights)")
    parser.add_argument("--backend", default="torch", choices=BACKEND_CHOICES,
                        help="inference backend (default torch; auto: TensorRT, else OpenVINO, else ONNX "
                             "Runtime, else PyTorch)")
    parser.add_argument("--precision", default="auto", choices=PRECISION_CHOICES,
                        help="auto: an engine directory's own, fp32 for a model file; int8 needs an "
                             "engine directory built by build_engine.py")
    parser.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                        help="where engines built from a model file are kept and reused (default: "
                             "$XDG_CACHE_HOME/twostream-recognizer/engines, else ~/.cache/...)")
    parser.add_argument("--live-frames", type=int, default=75,
                        help="frames of the clip also played at 25 fps, as live, for latency (0: skip)")
    parser.add_argument("--flow", choices=FLOW_METHODS, default=None,
                        help="flow method (default: the model's; without --model, random weights whose "
                             "contract names it); a model trained on another is refused")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where torch flow (tvl1-torch, also in --flow-bench) and the torch backend run "
                             "(default auto: CUDA if present)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the pipeline (default 1)")
    parser.add_argument("--naive-threads", type=int, default=0,
                        help="torch threads for the baseline (default 0: the faster of 1 and 2)")
    add_stream_options(parser)
    flow = parser.add_argument_group("optical flow alone")
    flow.add_argument("--flow-bench", action="store_true",
                      help="time tvl1-torch, OpenCV TV-L1 and DIS on the same pairs (benchmarks/flowbench.py)")
    flow.add_argument("--flow-repeats", type=at_least_one, default=3, help="timed calls per figure (default 3)")
    return parser


def _counts(text: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4): stream counts, ascending, each >= 1."""
    try:
        counts = tuple(sorted({int(v) for v in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected stream counts such as 1,2,4,8, got {text!r}") from None
    if counts[0] < 1:
        raise argparse.ArgumentTypeError(f"stream counts must be >= 1, got {text!r}")
    return counts


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a factor such as 3, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_stream_options(parser: argparse.ArgumentParser) -> None:
    """The many-streams, overload and soak modes (benchmarks/); at most one mode at a time."""
    from realtime.batching import BatchSettings

    batch = BatchSettings()
    group = parser.add_argument_group("many streams, overload, soak (one mode at a time)")
    group.add_argument("--streams", type=at_least_one, metavar="N",
                       help="N live streams paced at --fps on one shared engine, measured for --seconds")
    group.add_argument("--sweep", type=_counts, metavar="N,N,...",
                       help="--streams for each count: the largest that keeps every stream's p95 "
                            "glass-to-label <= 50 ms with no steady drops")
    group.add_argument("--no-batching-too", action="store_true",
                       help="with --streams or --sweep: the same run again with batching off (max batch 1)")
    group.add_argument("--overload", type=_factor, metavar="F",
                       help="one live source at F x the rate one stream is scored at (measured first)")
    group.add_argument("--soak-frames", type=at_least_one, metavar="M",
                       help="M frames through one stream's fast path (back-pressure), memory sampled")
    group.add_argument("--soak-minutes", type=positive_seconds, metavar="T",
                       help="--streams live streams (default 4) for T minutes, memory sampled")
    group.add_argument("--seconds", type=positive_seconds, default=30.0,
                       help="measured seconds of --streams, --sweep (each count) and --overload (default 30)")
    group.add_argument("--warmup", type=non_negative_float, default=3.0, metavar="S",
                       help="seconds before measuring, and at least until every stream scored its first "
                            "window (default 3)")
    group.add_argument("--fps", type=positive_seconds, default=25.0, help="live streams' frame rate (default 25)")
    group.add_argument("--clips", type=Path, default=None, metavar="DIR",
                       help="video files the streams play (default: ../shared/data/videos/real, or a "
                            "generated clip when it is absent)")
    group.add_argument("--generated-clip", action="store_true",
                       help="play a generated clip (--size, --seed) instead of real footage")
    group.add_argument("--clip-frames", type=at_least_one, default=125,
                       help="frames decoded into memory per clip (default 125: 5 s at 25 fps)")
    group.add_argument("--max-batch", type=at_least_one, default=batch.max_batch,
                       help=f"most frames in one engine call (default {batch.max_batch}; 1: no batching)")
    group.add_argument("--batch-wait-ms", type=non_negative_float, default=batch.max_wait_ms,
                       help=f"longest a call waits for others to batch with (default {batch.max_wait_ms:g})")
    group.add_argument("--rss-every", type=positive_seconds, default=5.0, metavar="S",
                       help="seconds between resident-memory samples (default 5)")


def stream_mode(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str | None:
    """Which of the many-streams modes the command line asks for (None: the classic bench);
    a parser error (one line) for a combination that makes no sense."""
    modes = [name for name, value in (("streams", args.streams), ("sweep", args.sweep),
                                      ("overload", args.overload), ("soak-frames", args.soak_frames),
                                      ("soak-minutes", args.soak_minutes)) if value is not None]
    if "soak-minutes" in modes and "streams" in modes:
        modes.remove("streams")  # --soak-minutes T --streams N: N streams for T minutes
    if len(modes) > 1:
        parser.error(f"choose one of --{' and --'.join(modes)}")
    mode = modes[0] if modes else None
    if args.no_batching_too and mode not in ("streams", "sweep"):
        parser.error("--no-batching-too goes with --streams or --sweep")
    return mode


def load_backend(model: Path | None, threads: int, backend: str = "torch", precision: str = "auto",
                 cache_dir: Path | None = None, flow: str | None = None, device: str | None = None):
    """(runner, description) for the model file or engine directory, or a random-weight model
    of the same shape (prepare_backend)."""
    prepared, description = prepare_backend(model, threads, backend, precision, cache_dir, flow, device)
    return prepared.open(), description


def prepare_backend(model: Path | None, threads: int, backend: str = "torch", precision: str = "auto",
                    cache_dir: Path | None = None, flow: str | None = None, device: str | None = None):
    """(PreparedModel, description) for the model file or engine directory, or a random-weight
    model of the same shape, prepared once (building.load.prepare_model: an engine backend
    builds a model file into the engine cache, or finds it there); ``open()`` runners from it.
    ``flow`` without ``model``: random weights whose contract names that flow method (the demo
    model's would be refused); ``device``: where PyTorch runs (None: the GPU if there is one)."""
    from building.load import prepare_model

    path = model or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() and flow is None else None)
    if path is not None:
        return prepare_model(path, backend, precision, cache_dir=cache_dir, threads=threads, device=device), str(path)
    import torch

    from twostream.checkpoint import save_checkpoint
    from twostream.contract import GESTURE_CLASSES, ModelContract
    from twostream.model import TwoStreamNet

    torch.manual_seed(seeds.RANDOM_WEIGHTS)
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        # Prepared is the loaded model or the cached engine: the file may go right after.
        random_path = Path(tmp) / "random.pt"
        contract = ModelContract(classes=GESTURE_CLASSES) if flow is None else \
            ModelContract(classes=GESTURE_CLASSES, flow_method=flow)
        save_checkpoint(random_path, TwoStreamNet(contract))
        prepared = prepare_model(random_path, backend, precision, cache_dir=cache_dir, threads=threads, device=device)
    return prepared, "random weights (models/demo.pt absent)" if flow is None else f"random weights, {flow} contract"


def pipeline_settings(args: argparse.Namespace):
    """The PipelineSettings every bench run starts from: the command line's flow and device."""
    from realtime.flowstage import FlowSettings
    from realtime.pipeline import PipelineSettings

    return PipelineSettings(flow=FlowSettings(method=args.flow, device=args.device))


def bench(args: argparse.Namespace) -> dict:
    import torch

    from benchmarks.classic import percentiles, pick_naive_threads, run_naive, run_pipeline, write_clip

    from twostream.preprocess import WindowPlan

    backend, model_name = load_backend(args.model, args.threads, args.backend, args.precision, args.cache_dir,
                                       args.flow, args.device)
    settings = pipeline_settings(args)
    flow = settings.flow.resolve(backend.contract)  # a model trained on another flow: refused here
    span = WindowPlan.of(backend.contract).span
    if args.frames < span + 7 or 0 < args.naive_frames < span + 7:
        raise DataError(f"--frames and --naive-frames must be >= {span + 7}: a window of this model spans "
                        f"{span} frames, and a rate needs a few windows")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        clip = Path(tmp) / "clip.mp4"
        write_clip(clip, args.frames, args.size, args.seed)
        fps, streamed, stats = run_pipeline(backend, clip, args.frames, settings=settings)
        live = run_pipeline(backend, clip, min(args.live_frames, args.frames), realtime=True, settings=settings)[2] \
            if args.live_frames else None
        # Torch flow: the baseline recomputes T*L TV-L1 pairs per window (seconds per window on a
        # CPU), so by default it scores only its first few windows, with one thread.
        torch_flow = flow.method == "tvl1-torch"
        naive_frames = min(args.naive_frames or (span + 7 if torch_flow else args.frames), args.frames)
        naive_threads = args.naive_threads or (1 if torch_flow else pick_naive_threads(backend, clip, flow.device))
        naive_fps, naive_results, naive_times = run_naive(backend, clip, naive_frames, naive_threads, flow.device)
        torch.set_num_threads(args.threads)
    diffs = [float(np.abs(streamed[i] - logits).max()) for i, logits in naive_results if i in streamed]
    stages = {name: {"p50": round(s.p50, 3), "p95": round(s.p95, 3)} for name, s in stats.stages}
    # With a file read as fast as possible, frames queue behind back-pressure, so this
    # latency is mostly queueing; live_latency_ms is what a camera's frames see.
    stages["latency"] = stages.pop("total")
    live_latency = None
    if live is not None:
        total = live.stage("total")
        live_latency = {"p50": round(total.p50, 3), "p95": round(total.p95, 3), "p99": round(total.p99, 3),
                        "frames": live.frames, "dropped": live.dropped}
    naive_steps = {name: percentiles([getattr(t, name) for t in naive_times])
                   for name in ("decode", "flow", "spatial", "temporal", "head")}
    return {
        "fps": round(fps, 2),
        "naive_fps": round(naive_fps, 2),
        "speedup": round(fps / naive_fps, 2),
        "stages_ms": stages,
        "naive_stages_ms": naive_steps,
        "live_latency_ms": live_latency,
        "frames": args.frames,
        "naive_frames": naive_frames,
        "predictions": stats.predictions,
        "dropped": stats.dropped,
        "max_abs_logit_diff_vs_naive": round(max(diffs), 7) if diffs else None,
        "clip": f"{args.size[0]}x{args.size[1]} generated, mp4v",
        "hop": 1,
        "backend": f"{backend.name} {backend.precision}",
        "model": model_name,
        "flow_method": flow.method,
        # where flow ran: a torch device for torch flow (its rings there too), else OpenCV on the CPU
        "flow_device": flow.device if torch_flow else "cpu (OpenCV)",
        "device": backend.device,
        "input_size": list(backend.input_size),
        "torch_threads": args.threads,
        "naive_threads": naive_threads,
        "cpu_count": os.cpu_count(),
    }


def bench_streams(args: argparse.Namespace, mode: str) -> dict:
    """The many-streams, overload or soak run ``mode`` names (benchmarks.modes)."""
    from benchmarks.modes import run_mode

    return run_mode(mode, args, lambda: prepare_backend(args.model, args.threads, args.backend, args.precision,
                                                        args.cache_dir, args.flow, args.device),
                    pipeline_settings(args))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    mode = stream_mode(parser, args)
    import torch

    # Once for the process: progress and which backend auto picked (and engine cache builds) on
    # stderr, and torch's thread count (process-wide; only the naive baseline changes it, and
    # restores it).
    configure_logging()
    torch.set_num_threads(args.threads)
    if args.flow_bench and mode is not None:
        parser.error(f"--flow-bench runs alone, not with the {mode} mode")
    try:
        if args.flow_bench:
            from benchmarks.flowbench import flow_bench

            result = flow_bench(resolve_device(args.device), args.flow_repeats)
        else:
            args.device = resolve_device(args.device)  # cuda without CUDA: one error line
            result = bench(args) if mode is None else bench_streams(args, mode)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
