#!/usr/bin/env python
"""Build an inference engine from a checkpoint, then check it against PyTorch fp32.

    python build_engine.py --model models/demo.pt --backend openvino --precision int8
    python build_engine.py --model models/demo.pt --backend onnxruntime --precision fp32 --out engines/ort32
    python build_engine.py --model my.pt --backend tensorrt --precision fp16 --heldout clips/

Exports the three parts to ONNX (checked against PyTorch), quantises them when --precision int8
(calibrated on --calib: video files, folders or 'demo', read through the runtime's own source,
flow and stack code), builds them for the backend, and writes DIR/engine.json with the
contract, precision, tool versions (and for TensorRT the GPU and version). Then it scores
held-out windows with the engine and with PyTorch fp32 and prints the parity report as JSON.

The engine is built in a temporary folder next to --out and moved into place only when
everything, parity included, succeeded: a failure leaves nothing behind. Errors (and parity
below its thresholds) are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

from cli import CommandParser, configure_logging, default_of, verbosity
from twostream import seeds
from engines.table import ENGINE_BACKENDS, ENGINE_PRECISIONS
from twostream.errors import DataError, EngineError, RecognizerError

EXIT_ERROR = 2
logger = logging.getLogger("build_engine")


def build_parser() -> argparse.ArgumentParser:
    # Defaults come from the settings dataclasses, the one place they are written.
    from building.settings import BuildSettings
    from calibration.dataset import CalibrationSettings
    from calibration.quantize import CALIBRATION_METHODS, QuantSettings

    parser = CommandParser(prog="build_engine.py", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="checkpoint (.pt) written by train.py")
    parser.add_argument("--backend", required=True, choices=ENGINE_BACKENDS)
    parser.add_argument("--precision", required=True, choices=ENGINE_PRECISIONS)
    parser.add_argument("--calib", action="append", default=[], metavar="SRC",
                        help="int8 calibration source: a video file, a folder (images, or videos searched "
                             "recursively) or 'demo'; repeat for several (default for gesture models: demo)")
    parser.add_argument("--out", type=Path, help="engine directory (default: next to the model, "
                                                 "<model>.<backend>-<precision>)")
    parser.add_argument("--calib-frames", type=int, default=CalibrationSettings().frames_per_source,
                        help="frames read per calibration source (default %(default)s)")
    parser.add_argument("--calib-method", choices=CALIBRATION_METHODS, default=QuantSettings().method)
    parser.add_argument("--symmetric", action="store_true",
                        help="int8 for onnxruntime/openvino: symmetric activations, the Q/DQ graph TensorRT "
                             "also reads (default there: unsigned activations, more accurate; see "
                             "calibration/quantize.py)")
    parser.add_argument("--int8-parts", default=default_of(BuildSettings, "int8_parts"), metavar="auto|PARTS",
                        help="int8: which parts to quantise, e.g. 'spatial,temporal,head' (auto: all, then "
                             "the costliest back to fp32 until >= "
                             f"{100 * default_of(BuildSettings, 'min_agreement'):g}%% top-1 agreement with fp32 on "
                             f"validation windows, seed {seeds.VALIDATION}, never the held-out ones)")
    parser.add_argument("--heldout", metavar="SRC",
                        help="parity windows from this source (unlabelled: agreement only); default for "
                             f"gesture models: generated held-out clips (seed {seeds.HELD_OUT})")
    parser.add_argument("--heldout-frames", type=int, default=1000,
                        help="frames read per --heldout source (the demo stream plays in real time: 40 s)")
    parser.add_argument("--heldout-clips-per-class", type=int, default=10)
    parser.add_argument("--per-clip", type=int, default=5, help="parity windows per held-out clip")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr (warnings only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also debug lines on stderr")
    return parser


def _heldout(args, contract):
    from calibration.dataset import CalibrationSettings, build_calibration_set
    from calibration.scoring import WindowSet, can_generate, generated_windows

    if args.heldout:
        # Read like calibration data, but every window counts (no sub-sampling).
        cal = build_calibration_set([args.heldout], contract, CalibrationSettings(
            frames_per_source=args.heldout_frames, head_windows=10**9, demo_seed=seeds.HELD_OUT))
        return WindowSet(cal.clips, cal.windows, False, f"{args.heldout} (unlabelled)")
    if not can_generate(contract):
        raise DataError("this model's classes are not the generated gestures: give --heldout SRC "
                              "(video files or a folder) for the parity windows")
    return generated_windows(contract, args.heldout_clips_per_class, args.per_clip)


def build(args: argparse.Namespace) -> dict:
    from calibration.dataset import CalibrationSettings
    from calibration.quantize import default_settings
    from engines.auto import construct
    from building.builder import build_parts, check_available
    from building.settings import BuildSettings
    from engines.enginedir import staged_output, write_info
    from building.parity import parity_report, part_costs
    from calibration.scoring import can_generate, score
    from engines.torch_backend import TorchBackend
    from twostream.checkpoint import load_model

    import torch

    # One torch thread, set once for the process: measured 4.2-4.6 ms per temporal-tower frame
    # against 18.5 with two spinning OpenMP threads on a busy 2-core machine.
    torch.set_num_threads(1)
    model, _ = load_model(args.model)
    check_available(args.backend)  # before any work: a missing runtime is one line, at once
    calib = tuple(args.calib)
    if args.precision == "int8" and not calib:
        if not can_generate(model.contract):
            raise DataError("int8 needs calibration data: give --calib SRC (video files, a folder)")
        calib = ("demo",)
    settings = BuildSettings(
        backend=args.backend, precision=args.precision, calib=calib,
        calibration=CalibrationSettings(frames_per_source=args.calib_frames),
        quant=replace(default_settings(args.backend), method=args.calib_method,
                      symmetric_activations=args.symmetric or args.backend == "tensorrt"),
        int8_parts=args.int8_parts)
    out = args.out or args.model.with_name(f"{args.model.stem}.{args.backend}-{args.precision}")
    with staged_output(out) as staging:
        built = build_parts(model, staging, settings)
        logger.info("parity: held-out windows vs PyTorch fp32")
        windows = _heldout(args, model.contract)
        reference = TorchBackend(model)
        with construct(args.backend, built.info, built.info.files(staging)) as engine:
            reference_scored = score(reference, windows)
            engine_scored = score(engine, windows)
            costs = ()
            if args.precision == "int8":
                costs = part_costs(engine, reference, windows, reference_scored, engine_scored)
            report = parity_report(engine, reference, windows, args.precision, reference_scored=reference_scored,
                                   candidate_scored=engine_scored, part_costs=costs)
        result = {**report.to_dict(), "engine": str(out), "parts": {
            "spatial": built.info.spatial.precision, "temporal": built.info.temporal.precision,
            "head": built.info.head.precision}}
        if built.int8_decision:
            result["int8_decision"] = built.int8_decision
        print(json.dumps(result, indent=2), flush=True)
        if not report.passed:
            raise EngineError(f"parity below thresholds ({'; '.join(report.failures)}); engine not written")
        write_info(staging, replace(built.info, parity=report.to_dict()))
    logger.info(f"wrote {out}")
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quiet:
        os.environ["TQDM_DISABLE"] = "1"  # the clip generator's progress bars
    configure_logging(verbosity(args.quiet, args.verbose), prefix="build: ")
    try:
        build(args)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted; nothing written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
