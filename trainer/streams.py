"""train.py tune-events and field-test: the model over generated streams and real footage."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from twostream.checkpoint import build_model, read_checkpoint, save_checkpoint
from twostream.backdrops import BackdropPool
from twostream.contract import GESTURE_CLASSES
from twostream.errors import DataError
from twostream.eventdata import validation_streams
from twostream.events import evaluate_policy, tune_policy
from twostream.fieldtest import FieldSettings, real_clips_report, streams_report
from twostream.realdata import RealSplit, default_real_dir, load_videos
from trainer.common import real_footage

def tune_events(args) -> dict:
    """Grid-search the event policy's threshold and k of n on generated validation streams
    (seeds.VALIDATION onwards, never held-out data) and write it into the model file's contract."""
    checkpoint = read_checkpoint(args.model)
    model = build_model(checkpoint)
    contract = model.contract
    if set(contract.classes) != set(GESTURE_CLASSES):
        raise DataError(f"{args.model}: tune-events scores generated gesture streams, but the model's classes "
                        f"are {list(contract.classes)}")
    split, videos = real_footage(args, contract)
    factory = BackdropPool(videos).factory(contract.train_fps) if split is not None else None
    streams = validation_streams(model, args.streams, args.frames, (args.width, args.height), args.seed, factory)
    before = evaluate_policy(contract.events, contract.classes, streams)
    policy, search = tune_policy(streams, contract.classes, contract.events)
    report = {"policy": policy.to_dict(), "validation": search["chosen"], "before": before,
              "grid": search["grid"], "data": f"generated streams: {args.streams} x {args.frames} frames "
                                               f"and the last gesture whole, "
                                               f"{args.width}x{args.height}, seeds {args.seed}.."
                                               f"{args.seed + args.streams - 1}"
                                               + (", every second one over the real training files" if factory else "")}
    if not args.dry_run:
        model.contract = dataclasses.replace(contract, events=policy)
        save_checkpoint(args.model, model, metrics={**checkpoint.metrics, "events": report},
                        train_state=checkpoint.train_state)
    return report


def field_test(args) -> dict:
    """The model where it will be used, on data it never saw (twostream/fieldtest.py):
    held-out gesture streams over the validation real files, and those files alone."""
    checkpoint = read_checkpoint(args.model)
    model = build_model(checkpoint)
    folder = Path(args.real) if args.real else default_real_dir()
    if not folder.is_dir():
        raise DataError(f"real footage folder not found: {folder} (the field test needs its validation files)")
    split = RealSplit.of(folder)
    settings = FieldSettings(streams=args.streams, frames=args.frames, size=(args.width, args.height), seed=args.seed)
    report = {
        "streams": streams_report(model, load_videos(split, "val", max_side=max(settings.size)), settings),
        "real_clips": real_clips_report(model, load_videos(split, "val", max_side=None)),
        "event_policy": model.contract.events.to_dict(),
        "data": f"{settings.streams} held-out gesture streams per background kind x {settings.frames} frames "
                f"and the last gesture whole, one truth segment per gesture, "
                f"{settings.size[0]}x{settings.size[1]}, seeds {settings.seed}..{settings.seed + settings.streams - 1}, "
                f"over the validation files {list(split.names('val'))}; those files alone at full resolution",
    }
    if args.record:
        save_checkpoint(args.model, model, metrics={**checkpoint.metrics, "field": report},
                        train_state=checkpoint.train_state)
    return report
