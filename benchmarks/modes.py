"""bench.py's many-streams modes, from its parsed command line to one JSON-ready report that
names the model, the backend, the machine and the data it ran on."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Callable

from benchmarks import soak, streams
from benchmarks.clips import load_clips
from benchmarks.measure import machine
from building.load import PreparedModel
from realtime.batching import BatchSettings
from realtime.pipeline import PipelineSettings

SOAK_STREAMS = 4  # --soak-minutes without --streams: the four cameras


def clips_needed(mode: str, args: argparse.Namespace) -> int:
    """How many streams the mode runs at most (each gets its own clip while there are any)."""
    if mode == "streams":
        return args.streams
    if mode == "sweep":
        return max(args.sweep)
    if mode == "soak-minutes":
        return args.streams or SOAK_STREAMS
    return 1  # overload and soak-frames: one stream


def run_mode(mode: str, args: argparse.Namespace, prepare: Callable[[], tuple[PreparedModel, str]],
             settings: PipelineSettings = PipelineSettings()) -> dict:
    """Run ``mode`` ('streams', 'sweep', 'soak-minutes', 'overload' or 'soak-frames', as
    bench.py's stream_mode names it) with every stream's ``settings`` (the flow: method, device)
    -> the report. The clips are read first (a bad --clips fails before the model loads), then
    ``prepare()`` gives (the prepared model, its name)."""
    count = clips_needed(mode, args)
    clips = load_clips(args.clips, count, args.clip_frames, args.size, args.seed, args.generated_clip)
    prepared, model_name = prepare()
    flow = settings.flow.resolve(prepared.contract)
    report = {"mode": mode, "model": model_name, "backend": prepared.backend, "precision": prepared.precision,
              "device": prepared.device, "flow_method": flow.method, "flow_device": flow.device,
              "machine": machine(), "data": clips.data}
    run = streams.LiveRun(count, args.seconds, args.warmup, args.fps,
                          BatchSettings(args.max_batch, args.batch_wait_ms), args.rss_every)
    if mode == "streams":
        report.update(criterion=streams.CRITERION, batched=streams.run_live(prepared.open, clips, run, settings))
        if args.no_batching_too:
            report["unbatched"] = streams.run_live(prepared.open, clips, streams.unbatched(run), settings)
    elif mode == "sweep":
        report.update(streams.run_sweep(prepared.open, clips, args.sweep, run, args.no_batching_too, settings))
    elif mode == "soak-minutes":
        report["soak_minutes"] = args.soak_minutes
        report.update(streams.run_live(prepared.open, clips, replace(run, seconds=args.soak_minutes * 60.0),
                                       settings))
    elif mode == "overload":
        report.update(soak.run_overload(prepared.open, clips, args.overload, args.seconds, warmup_s=args.warmup,
                                        settings=settings))
    elif mode == "soak-frames":
        report.update(soak.run_fast(prepared.open, clips, warmup_s=args.warmup, max_frames=args.soak_frames,
                                    rss_every_s=args.rss_every, settings=settings))
    else:
        raise ValueError(f"unknown bench mode {mode!r}")
    return report
