"""Train or evaluate a two-stream model.

    python train.py fit --out models/my.pt                       # on generated gesture clips
    python train.py fit --out models/my.pt --data DIR            # DIR/<class>/<video> clips
    python train.py fit --resume models/my.pt --out models/my.pt # continue an interrupted run
    python train.py fit --out models/my.pt --device cuda --flow tvl1-torch --flow-cache ~/.cache/flow
    python train.py evaluate --model models/demo.pt              # held-out JSON report
    python train.py fit --out ucf.pt --dataset ucf101 --root UCF-101 --split 1 --backbone resnet50
    python train.py evaluate --model s1.pt s2.pt s3.pt --dataset ucf101 --root UCF-101 --split 1 2 3 \
        --protocol frames25 --table                              # video top-1 per split and mean
    python train.py card --model models/demo.pt                  # writes models/demo.md
    python train.py tune-events --model models/my.pt             # event policy from validation streams
    python train.py import-resnet101 --spatial S.pth.tar --motion M.pth.tar --classes classInd.txt --out ucf101.pt

Every run is seeded; a checkpoint is written atomically after each epoch, with the optimizer,
schedule and random generator state, so an interrupted run resumes exactly where it stopped.
``--device`` picks where training and evaluation run (auto: CUDA when present); checkpoints hold
CPU tensors whatever the device, so a model trained on a GPU loads anywhere.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from cli import CommandParser, configure_logging, default_of, non_negative
from twostream import seeds
from twostream.card import render_card
from twostream.checkpoint import build_model, read_checkpoint, save_checkpoint
from twostream.backdrops import BackdropPool
from twostream.contract import (BACKBONES, FLOW_COMPENSATIONS, FLOW_METHODS, FUSIONS, GESTURE_CLASSES, FlowSource,
                                ModelContract)
from twostream.data import (NO_GESTURE, ClipPrep, folder_classes, generate_clips, load_folder, merge_clips,
                            real_clips)
from twostream.datasets import DATASETS, DatasetSource
from twostream.devices import DEVICES, resolve_device
from twostream.errors import CheckpointError, ContractMismatch, DataError, RecognizerError
from twostream.fieldtest import FieldSettings
from twostream.flops import count_flops
from twostream.model import TwoStreamNet
from twostream.protocols import PROTOCOLS, evaluate_splits, protocol_named, splits_report, splits_table
from twostream.realdata import RealSplit, default_real_dir, load_videos
from twostream.refimport import REFERENCE_FLOW_BOUND, import_reference, read_class_index
from twostream.training import TRAIN_FUSION, Progress, TrainSettings, clip_features, evaluate, train_head, train_towers
from twostream.tvl1 import TVL1Params

logger = logging.getLogger("train")


def _real_footage(args, contract: ModelContract):
    """(split, decoded training files) of the real footage folder, or (None, reason). Decoded
    once, here, before any clip worker forks: the workers share these frames."""
    if args.no_real:
        return None, "off (--no-real)"
    folder = Path(args.real) if args.real else default_real_dir()
    if not folder.is_dir():
        if args.real:
            raise DataError(f"real footage folder not found: {folder}")
        return None, f"none: {folder} is absent"
    if NO_GESTURE not in contract.classes:
        return None, f"none: the model has no {NO_GESTURE!r} class"
    split = RealSplit.of(folder)
    videos = load_videos(split, "train")
    logger.info(f"real footage: {len(split.train)} training files, {len(split.val)} validation files (never trained on)")
    return split, videos


def _clips(args, contract: ModelContract, split: str, seed: int, clips_per_class: int, real_videos=None):
    # Flow on the training device when the contract names torch flow, cached when asked.
    prep = ClipPrep.of(contract, device=args.device, cache=args.flow_cache)
    if args.source:  # an official split: its train list for both stages, its test list held out
        return args.source.clips(args.split, "train" if split == "train" else "test", contract, prep, args.workers)
    if args.data:
        clips = load_folder(Path(args.data), contract, split, args.val_fraction, prep=prep)
    else:
        # The pool only when it is used: a plain run calls generate_clips exactly as before.
        extra = {"backdrops": BackdropPool(real_videos), "backdrop_fraction": args.real_backdrop_fraction} \
            if real_videos and args.real_backdrop_fraction > 0 else {}
        clips = generate_clips(contract, clips_per_class, seed, frames=args.frames, workers=args.workers,
                               prep=prep, **extra)
    if real_videos and split == "train" and args.real_clips_per_file > 0:
        clips = merge_clips(clips, real_clips(contract, real_videos, args.real_clips_per_file, seed,
                                              frames=args.frames, workers=args.workers, prep=prep))
    return clips


def _resolve_device(args) -> None:
    """--device to a torch device (one error line for CUDA that is not there), and the defaults
    that follow from it: fp16 autocast and two loader workers on CUDA, neither on the CPU."""
    args.device = resolve_device(args.device)
    cuda = args.device.startswith("cuda")
    if getattr(args, "amp", None) is None:
        args.amp = cuda
    elif args.amp and not cuda:
        # bf16 autocast would be the CPU's mixed precision; measured 10x slower than fp32 for
        # these small convolutions on this project's CPUs (twostream/training.py), so no.
        raise ContractMismatch("--amp is fp16 mixed precision on CUDA; on the CPU training runs in fp32")
    if getattr(args, "loader_workers", None) is None:
        args.loader_workers = 2 if cuda else 0
    if cuda:
        # Fixed input shapes: let cuDNN pick the fastest convolution algorithms once.
        torch.backends.cudnn.benchmark = True


def _machine(args) -> str:
    """What the run trained on, for the model card: the GPU, or the CPU cores this process may use."""
    if args.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(args.device)} (CUDA{', fp16 autocast' if args.amp else ''})"
    return f"{len(os.sched_getaffinity(0))} CPU cores"


def fit(args) -> dict:
    _resolve_device(args)
    _dataset_source(args)
    args.split = args.split or 1
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if args.resume:
        checkpoint = read_checkpoint(args.resume)
        try:
            state = Progress.from_train_state(checkpoint.train_state)
        except CheckpointError as exc:
            raise CheckpointError(f"{args.resume}: {exc}") from exc
        model = build_model(checkpoint).train()
        history = list(checkpoint.metrics.get("history", []))
        logger.info(f"resuming {args.resume} at stage {state.stage}, epoch {state.epoch}")
    elif args.init:
        checkpoint = read_checkpoint(args.init)
        model = build_model(checkpoint).train()
        state = Progress()
        history = []
        logger.info(f"fine-tuning from {args.init}")
    else:
        classes = folder_classes(Path(args.data)) if args.data else GESTURE_CLASSES
        if args.source:
            classes = args.source.split(args.split).classes
        contract = ModelContract(
            classes=classes, backbone=args.backbone, fusion=args.fusion,
            input_size=(args.input_size, args.input_size), flow_method=args.flow,
            flow_compensation=args.flow_compensation,
            tvl1=(TVL1Params.opencv() if args.tvl1_preset == "opencv" else TVL1Params.fast())
            if args.flow == "tvl1-torch" else None,
            stack_length=args.stack_length, num_segments=args.segments, stride=args.stride,
            train_fps=args.fps, flow_bound=args.jpeg_flow_bound if args.jpegs else 20.0,
            flow_source=FlowSource("tvl1", args.jpeg_flow_bound) if args.jpegs else None)
        model = TwoStreamNet(contract, pretrained=args.pretrained)
        state = Progress()
        history = []
    contract = model.contract
    model.to(args.device)
    settings = TrainSettings(tower_epochs=args.tower_epochs, head_epochs=args.head_epochs,
                             tower_batch=args.batch, head_batch=args.batch, lr=args.lr,
                             samples_per_clip=args.samples_per_clip, seed=args.seed,
                             device=args.device, amp=args.amp, loader_workers=args.loader_workers)
    logger.info(f"training on {args.device}" + (" with fp16 autocast" if args.amp else "")
                + f", {args.loader_workers} loader workers")
    data = args.source.describe(args.split, "train") if args.source else args.data or (
        f"generated: towers {args.clips_per_class} clips/class (seed {args.seed}), head "
        f"{args.head_clips_per_class} clips/class (seed {args.seed + seeds.HEAD_OFFSET}), {args.frames} frames each")
    recipe = {"command": "python train.py " + " ".join(shlex.quote(a) for a in args.argv), "data": data}
    real_split, real_videos = _real_footage(args, contract)
    if real_split is None:
        logger.info(f"real footage {real_videos}: training on {'--data clips' if args.data else 'generated clips'} only")
        recipe["real"], real_videos = real_videos, None
    else:
        recipe["real"] = {**real_split.to_recipe(), "label": NO_GESTURE,
                          "clips_per_file": args.real_clips_per_file,
                          "clips_per_stage": args.real_clips_per_file * len(real_split.train),
                          "backdrop_fraction": 0.0 if args.data else args.real_backdrop_fraction,
                          "augmentation": "speed 0.5-2x, forward/backward/ping-pong, crop 55-100%, mirror, "
                                          "brightness/contrast/colour jitter; towers seed, head seed + 500"}
    if args.init:  # the weights' own history, so the card shows every command that made them
        recipe["initialised_from"] = {"file": args.init, **checkpoint.metrics.get("recipe", {}),
                                      "held_out": checkpoint.metrics.get("held_out", {}).get("top1_fused")}

    def checkpoint_after(progress: Progress, stage_epochs: int, figures: dict) -> None:
        history.append({"stage": progress.stage, "epoch": progress.epoch, **figures})
        if progress.epoch >= stage_epochs:
            progress = progress.next_stage()
        save_checkpoint(out, model, metrics={"history": history, "recipe": recipe},
                        train_state=progress.to_train_state())

    started = time.monotonic()
    if state.stage == "towers":
        train = _clips(args, contract, "train", args.seed, args.clips_per_class, real_videos)
        train_towers(model, train, settings, state, lambda p, f: checkpoint_after(p, settings.tower_epochs, f))
        del train
        state = Progress("head")  # the generator runs on as it is; the checkpoint keeps its state
    if state.stage == "head":
        for p in list(model.spatial_tower.parameters()) + list(model.temporal_tower.parameters()):
            p.requires_grad_(False)
        # On generated data the head learns on clips the towers never saw: on their own
        # training clips the spatial tower recognises the memorised scenes, the head learns
        # to trust that, and on new scenes fused fell below the temporal tower alone.
        # A --data folder has no clips to spare, so its train split serves both stages.
        head_clips = _clips(args, contract, "train", args.seed + seeds.HEAD_OFFSET, args.head_clips_per_class,
                            real_videos)
        feats = clip_features(model, head_clips, desc="cache tower features", device=args.device, amp=args.amp)
        del head_clips
        train_head(model, feats, settings, state, lambda p, f: checkpoint_after(p, settings.head_epochs, f))
        del feats
    model.eval()
    held_out_seed = args.seed + seeds.HELD_OUT_OFFSET
    held_out = _clips(args, contract, "val", held_out_seed, args.val_clips_per_class)
    report = evaluate(model, held_out, per_clip=args.per_clip, device=args.device)
    model.cpu()  # the FLOP count runs on the CPU
    report["held_out"] = args.source.describe(args.split, "test") if args.source else \
        args.data and f"{args.data} (every {round(1 / args.val_fraction)}th clip)" or \
        f"generated: {args.val_clips_per_class} clips/class, seed {held_out_seed}"
    metrics = {"held_out": report, "flops": count_flops(model), "history": history, "recipe": recipe,
               "train_minutes": round((time.monotonic() - started) / 60, 1), "trained_on": _machine(args)}
    save_checkpoint(out, model, metrics=metrics, train_state={"stage": "done", "epoch": 0})
    return metrics


def _dataset_source(args) -> None:
    """args.source: the official dataset --dataset and --root name (None without them)."""
    if bool(args.dataset) != bool(args.root):
        raise DataError("--dataset and --root go together (an official split of a dataset on disk)")
    if args.dataset and args.data:
        raise DataError("--data (a folder of class folders) and --dataset are two sources: give one")
    given = [flag for flag, value in (("--split", args.split), ("--lists", args.lists), ("--jpegs", args.jpegs),
                                      ("--videos-per-class", args.videos_per_class)) if value]
    if given and not args.dataset:
        raise DataError(f"{given[0]} belongs to an official split of a dataset: it needs --dataset and --root")
    args.source = args.dataset and DatasetSource(args.dataset, args.root, args.lists, args.jpegs, args.videos_per_class)


def run_evaluate(args) -> dict:
    _resolve_device(args)
    _dataset_source(args)
    if args.source and args.protocol != "windows":  # one model per official split, a video protocol
        if args.record:
            raise DataError("--record stores the windows report of one model; a --protocol report is printed only")
        protocol = protocol_named(args.protocol)
        results = evaluate_splits(args.source, args.model, args.split, protocol, args.device, args.flow_cache,
                                  args.workers)
        return {**splits_report(results), "source": protocol.source, "models": args.model,
                "table": splits_table(results)}
    if args.protocol != "windows":
        raise DataError(f"--protocol {args.protocol} scores the test videos of an official split: "
                        "give --dataset and --root")
    if len(args.model) != 1 or len(args.split) > 1:
        raise DataError("one --model and at most one --split, unless a video --protocol scores several splits")
    args.model, args.split = args.model[0], args.split[0] if args.split else 1
    checkpoint = read_checkpoint(args.model)
    model = build_model(checkpoint)
    torch.manual_seed(args.seed)
    clips = _clips(args, model.contract, "val", args.seed, args.clips_per_class)
    report = evaluate(model.to(args.device), clips, per_clip=args.per_clip, device=args.device)
    model.cpu()
    report["flops"] = count_flops(model)
    if args.record:  # keep the card true to the file when the data recipe has changed since training
        report["held_out"] = args.source.describe(args.split, "test") if args.source else \
            args.data or f"generated: {args.clips_per_class} clips/class, seed {args.seed}"
        save_checkpoint(args.model, model, metrics={**checkpoint.metrics, "held_out": report},
                        train_state=checkpoint.train_state)
    return report


def tune_events(args) -> dict:
    """Grid-search the event policy's threshold and k of n on generated validation streams
    (seeds.VALIDATION onwards, never held-out data) and write it into the model file's contract."""
    import dataclasses

    from twostream.eventdata import validation_streams
    from twostream.events import evaluate_policy, tune_policy

    checkpoint = read_checkpoint(args.model)
    model = build_model(checkpoint)
    contract = model.contract
    if set(contract.classes) != set(GESTURE_CLASSES):
        raise DataError(f"{args.model}: tune-events scores generated gesture streams, but the model's classes "
                        f"are {list(contract.classes)}")
    split, videos = _real_footage(args, contract)
    factory = BackdropPool(videos).factory(contract.train_fps) if split is not None else None
    streams = validation_streams(model, args.streams, args.frames, (args.width, args.height), args.seed, factory)
    before = evaluate_policy(contract.events, contract.classes, streams)
    policy, search = tune_policy(streams, contract.classes, contract.events)
    report = {"policy": policy.to_dict(), "validation": search["chosen"], "before": before,
              "grid": search["grid"], "data": f"generated streams: {args.streams} x {args.frames} frames, "
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
    from twostream.fieldtest import real_clips_report, streams_report
    from twostream.realdata import RealSplit, load_videos

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
        "data": f"{settings.streams} held-out gesture streams per background kind x {settings.frames} frames, "
                f"{settings.size[0]}x{settings.size[1]}, seeds {settings.seed}..{settings.seed + settings.streams - 1}, "
                f"over the validation files {list(split.names('val'))}; those files alone at full resolution",
    }
    if args.record:
        save_checkpoint(args.model, model, metrics={**checkpoint.metrics, "field": report},
                        train_state=checkpoint.train_state)
    return report


def import_resnet101(args) -> dict:
    """The ResNet-101 reference's two model_best.pth.tar files -> a model file (twostream/refimport.py)."""
    classes = read_class_index(args.classes)
    model = import_reference(args.spatial, args.motion, classes, flow_method=args.flow, flow_bound=args.flow_bound,
                             num_segments=args.segments, stride=args.stride)
    save_checkpoint(args.out, model, train_state={"stage": "done", "epoch": 0})
    return {"model": str(args.out), "classes": len(classes), "contract": model.contract.to_dict()}


def write_card(args) -> dict:
    path = Path(args.model)
    card = render_card(path, read_checkpoint(path))
    out = path.with_suffix(".md")
    out.write_text(card)
    return {"card": str(out)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(prog="train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p, clips_per_class: int, seed: int) -> None:
        p.add_argument("--data", help="folder with one sub-folder of video clips per class (default: generated clips)")
        p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share of a --data folder")
        p.add_argument("--clips-per-class", type=int, default=clips_per_class)
        p.add_argument("--frames", type=int, default=40, help="frames per generated clip")
        p.add_argument("--seed", type=int, default=seed)
        p.add_argument("--workers", type=int, default=2, help="processes rendering clips")
        p.add_argument("--per-clip", type=int, default=3, help="evaluation windows per held-out clip")
        p.add_argument("--device", choices=DEVICES, default="auto",
                       help="where the model and torch flow (tvl1-torch) run (default auto: CUDA when present)")
        p.add_argument("--flow-cache", type=Path, metavar="DIR",
                       help="keep preprocessed clips (rgb and flow) here and reuse them: keyed by the clip's "
                            "frames and every flow parameter (twostream/flowcache.py)")
        p.add_argument("--dataset", choices=DATASETS, help="an official split of UCF101 or HMDB51 (with --root)")
        p.add_argument("--root", type=Path, help="the dataset as distributed: one folder of videos per class")
        p.add_argument("--lists", type=Path, help="its split lists (default: ROOT/ucfTrainTestlist or "
                       "ROOT/testTrainMulti_7030_splits, else ROOT)")
        p.add_argument("--jpegs", type=Path, metavar="DIR", help="read pre-extracted frames and TV-L1 flow from "
                       "DIR/jpegs_256 and DIR/tvl1_flow/{u,v} instead of decoding videos (twostream/datasets.py)")
        p.add_argument("--videos-per-class", type=int, metavar="N", help="only the first N videos of each class")

    f = sub.add_parser("fit", help="train towers then the fusion head")
    f.set_defaults(run=fit)
    f.add_argument("--out", required=True, help="checkpoint to write (after every epoch)")
    f.add_argument("--resume", help="checkpoint of an interrupted run to continue")
    f.add_argument("--init", help="start from this checkpoint's weights and contract (fine-tuning)")
    data_args(f, clips_per_class=150, seed=TrainSettings().seed)
    f.add_argument("--split", type=int, choices=(1, 2, 3), help="the official split to train on (default 1)")
    f.add_argument("--jpeg-flow-bound", type=float, default=20.0, help="px the flow JPEGs map to 0 and 255")
    f.add_argument("--head-clips-per-class", type=int, default=100,
                   help="generated clips per class for the fusion head, unseen by the towers")
    f.add_argument("--val-clips-per-class", type=int, default=40)
    f.add_argument("--real", metavar="DIR", help="real footage nobody gestures in, added as no_gesture "
                   "(default: ../shared/data/videos/real when present); split by file (twostream/realdata.py)")
    f.add_argument("--no-real", action="store_true", help="train without real footage")
    f.add_argument("--real-clips-per-file", type=int, default=10,
                   help="augmented no_gesture clips per real training file, per stage")
    f.add_argument("--real-backdrop-fraction", type=float, default=0.3,
                   help="share of generated clips over real moving backgrounds")
    train, contract = TrainSettings(), functools.partial(default_of, ModelContract)
    f.add_argument("--backbone", choices=BACKBONES, default=contract("backbone"))
    f.add_argument("--pretrained", action="store_true", help="torchvision ImageNet weights (downloads once)")
    f.add_argument("--fusion", choices=FUSIONS, default=TRAIN_FUSION)
    f.add_argument("--input-size", type=int, default=contract("input_size")[0], help="N: frames resized to N x N")
    f.add_argument("--flow", choices=FLOW_METHODS, default=contract("flow_method"))
    f.add_argument("--flow-compensation", choices=FLOW_COMPENSATIONS, default=contract("flow_compensation"),
                   help="camera-motion compensation: subtract each flow field's mean or median (default %(default)s)")
    f.add_argument("--tvl1-preset", choices=("fast", "opencv"), default="fast",
                   help="TV-L1 parameters with --flow tvl1-torch: the live preset or OpenCV's defaults "
                        "(twostream/tvl1.py; stored in the contract)")
    f.add_argument("--stack-length", type=int, default=contract("stack_length"))
    f.add_argument("--segments", type=int, default=contract("num_segments"))
    f.add_argument("--stride", type=int, default=contract("stride"))
    f.add_argument("--fps", type=float, default=contract("train_fps"))
    f.add_argument("--tower-epochs", type=int, default=train.tower_epochs)
    f.add_argument("--head-epochs", type=int, default=train.head_epochs)
    f.add_argument("--samples-per-clip", type=int, default=train.samples_per_clip)
    f.add_argument("--batch", type=int, default=train.tower_batch, help="tower and head batch")
    f.add_argument("--lr", type=float, default=train.lr)
    f.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="fp16 mixed precision (autocast + loss scaling); default on with CUDA; CUDA only")
    f.add_argument("--loader-workers", type=non_negative, metavar="N",
                   help="processes assembling training batches (default 2 on CUDA, 0 on the CPU)")

    e = sub.add_parser("evaluate", help="print held-out top-1 per tower and fused, and a confusion matrix, as JSON")
    e.set_defaults(run=run_evaluate)
    e.add_argument("--model", required=True, nargs="+", help="a model file (one per --split with a --protocol)")
    data_args(e, clips_per_class=40, seed=seeds.HELD_OUT)
    e.add_argument("--split", type=int, choices=(1, 2, 3), nargs="+", default=[],
                   help="official splits to evaluate, one model each")
    e.add_argument("--protocol", choices=("windows",) + tuple(p.name for p in PROTOCOLS), default="windows",
                   help="windows: this project's windows per clip; else a published video protocol "
                        "(twostream/protocols.py) with --dataset")
    e.add_argument("--table", action="store_true", help="print a Markdown table instead of JSON (video protocols)")
    e.add_argument("--record", action="store_true",
                   help="store this report in the model file as its held-out result (for the card)")
    i = sub.add_parser("import-resnet101", help="a model file from the ResNet-101 two-stream reference's checkpoints")
    i.set_defaults(run=import_resnet101)
    i.add_argument("--spatial", required=True, help="its spatial net's model_best.pth.tar")
    i.add_argument("--motion", required=True, help="its motion net's model_best.pth.tar")
    i.add_argument("--classes", required=True, help="UCF101's classInd.txt (the classes, in label order)")
    i.add_argument("--out", required=True, help="model file to write")
    i.add_argument("--flow", choices=FLOW_METHODS, default="tvl1", help="live flow (default: TV-L1, as trained)")
    i.add_argument("--flow-bound", type=float, default=REFERENCE_FLOW_BOUND, help="px its flow JPEGs spanned")
    i.add_argument("--segments", type=int, default=contract("num_segments"), help="frames averaged per window")
    i.add_argument("--stride", type=int, default=contract("stride"))
    c = sub.add_parser("card", help="write the model card (MODEL.md) from what the checkpoint records")
    c.set_defaults(run=write_card)
    c.add_argument("--model", required=True)
    t = sub.add_parser("tune-events", help="tune the event policy on validation streams, store it in the model file")
    t.set_defaults(run=tune_events)
    t.add_argument("--model", required=True)
    t.add_argument("--streams", type=int, default=2, help="generated validation streams")
    t.add_argument("--frames", type=int, default=1500, help="frames per stream (60 s at 25 fps)")
    t.add_argument("--width", type=int, default=160)
    t.add_argument("--height", type=int, default=120)
    t.add_argument("--seed", type=int, default=seeds.VALIDATION,
                   help="first stream's seed (default: the validation seed; never use held-out seeds)")
    t.add_argument("--dry-run", action="store_true", help="report the tuned policy, leave the file alone")
    t.add_argument("--real", metavar="DIR", help="real footage folder (default: ../shared/data/videos/real): "
                   "its training files serve as backgrounds of every second stream")
    t.add_argument("--no-real", action="store_true", help="generated scenes only")
    ft = sub.add_parser("field-test", help="held-out streams over the validation real files, and those files alone")
    ft.set_defaults(run=field_test)
    ft.add_argument("--model", required=True)
    ft.add_argument("--real", metavar="DIR", help="real footage folder (default: ../shared/data/videos/real)")
    ft.add_argument("--streams", type=int, default=default_of(FieldSettings, "streams"),
                    help="held-out streams per background kind (moving, still)")
    ft.add_argument("--frames", type=int, default=default_of(FieldSettings, "frames"), help="frames per stream")
    ft.add_argument("--width", type=int, default=default_of(FieldSettings, "size")[0])
    ft.add_argument("--height", type=int, default=default_of(FieldSettings, "size")[1])
    ft.add_argument("--seed", type=int, default=default_of(FieldSettings, "seed"),
                    help="first stream's seed (default: the held-out stream seed)")
    ft.add_argument("--record", action="store_true", help="store the report in the model file (for the card)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        result = args.run(args)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is saved; continue with --resume", file=sys.stderr)
        return 130
    text = result.pop("table", None) if isinstance(result, dict) else None
    print(text if getattr(args, "table", False) and text else
          json.dumps(result["held_out"] if args.command == "fit" else result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
