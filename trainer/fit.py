"""train.py fit: both towers, then the fusion head, checkpointed after every epoch (twostream/training.py);
under torchrun, one process of a data-parallel run (twostream/distributed.py)."""

from __future__ import annotations

import dataclasses
import logging
import shlex
import time
from pathlib import Path

import numpy as np
import torch

from cli import configure_logging, default_of
from twostream import seeds
from twostream.checkpoint import build_model, read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, FlowSource, ModelContract
from twostream.data import NO_GESTURE, ClipSet, folder_classes, merge_clips
from twostream.distributed import World, process_group
from twostream.errors import CheckpointError, ContractMismatch, DataError
from twostream.flops import count_flops
from twostream.mining import CHUNK, mine_hard_clips
from twostream.model import TwoStreamNet
from twostream.training import Progress, TrainSettings, clip_features, evaluate, train_head, train_towers
from twostream.tvl1 import TVL1Params
from trainer.common import (clips_for, dataset_source, generated_clips, head_features_fit, machine, real_footage,
                            resolve_training_device)
from trainer.multitask import check_task, multitask_source, task_model_contract, task_recipe, task_train_clips

logger = logging.getLogger("train")


def fit(args) -> dict | None:
    """Train, evaluate on held-out clips, write ``args.out``; the metrics it stores. Under torchrun
    every rank trains its share of each global batch and rank 0 alone logs, writes checkpoints
    and evaluates: the other ranks return None once the last stage is trained."""
    resolve_training_device(args)
    world = World.from_env()
    world.check_batch(args.batch)
    args.device = world.device(args.device)
    if not world.main:  # one log, from rank 0; the others' warnings and errors say whose they are
        configure_logging(logging.WARNING, prefix=f"[rank {world.rank}] ")
    with process_group(world, args.device):
        return _fit(args, world)


def _fit(args, world: World) -> dict | None:
    dataset_source(args)
    _check_mining(args)
    args.split = args.split or 1
    if args.train_strides[0] > args.train_strides[1]:
        raise DataError(f"--train-strides {args.train_strides[0]} {args.train_strides[1]}: LO is above HI")
    multitask_source(args)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if args.resume:
        checkpoint = read_checkpoint(args.resume)
        try:
            state = Progress.from_train_state(checkpoint.train_state)
        except CheckpointError as exc:
            raise CheckpointError(f"{args.resume}: {exc}") from exc
        model = build_model(checkpoint).train()
        check_task(args, model.contract, resuming=True)
        history = list(checkpoint.metrics.get("history", []))
        logger.info(f"resuming {args.resume} at stage {state.stage}, epoch {state.epoch}")
    elif args.init:
        checkpoint = read_checkpoint(args.init)
        model = build_model(checkpoint).train()
        check_task(args, model.contract, resuming=False)
        if args.flow_compensation and args.flow_compensation != model.contract.flow_compensation:
            # Compensation changes what the flow looks like, not the shape of any weight: the
            # weights are fine-tuned to the new one (a model trained with mean subtraction to affine).
            logger.info(f"flow compensation {model.contract.flow_compensation} -> {args.flow_compensation}")
            model.contract = dataclasses.replace(model.contract, flow_compensation=args.flow_compensation)
        state = Progress()
        history = []
        logger.info(f"fine-tuning from {args.init}")
    else:
        if args.jpegs and args.flow_direction == "bidirectional":  # said before the split is read
            raise ContractMismatch("--jpegs: pre-extracted JPEG flow holds forward fields only, and a bidirectional "
                                   "stack needs backward ones (decode the videos, or --flow-direction forward)")
        classes = folder_classes(Path(args.data)) if args.data else GESTURE_CLASSES
        if args.source:
            classes = args.source.split(args.split).classes
        contract = ModelContract(
            classes=classes, backbone=args.backbone, temporal_backbone=args.temporal_backbone, fusion=args.fusion,
            input_size=(args.input_size, args.input_size), flow_method=args.flow,
            flow_compensation=args.flow_compensation or default_of(ModelContract, "flow_compensation"),
            flow_direction=args.flow_direction,
            tvl1=(TVL1Params.opencv() if args.tvl1_preset == "opencv" else TVL1Params.fast())
            if args.flow == "tvl1-torch" else None,
            stack_length=args.stack_length, num_segments=args.segments, stride=args.stride,
            train_fps=args.fps, flow_bound=args.jpeg_flow_bound if args.jpegs else 20.0,
            flow_source=FlowSource("tvl1", args.jpeg_flow_bound) if args.jpegs else None)
        contract = task_model_contract(args, contract)  # + the second dataset's classifier, multi-task
        model = TwoStreamNet(contract, pretrained=args.pretrained)
        state = Progress()
        history = []
    contract = model.contract
    model.to(args.device)
    settings = TrainSettings(tower_epochs=args.tower_epochs, head_epochs=args.head_epochs,
                             tower_batch=args.batch, head_batch=args.batch, lr=args.lr,
                             samples_per_clip=args.samples_per_clip, seed=args.seed,
                             device=args.device, amp=args.amp, loader_workers=args.loader_workers, world=world,
                             strides=tuple(args.train_strides), spatial_segments=args.spatial_segments,
                             balance_classes=args.balance_classes)
    logger.info(f"training on {args.device}" + (" with fp16 autocast" if args.amp else "")
                + f", {args.loader_workers} loader workers"
                + (f", {world.size} processes (global batch {args.batch})" if world.distributed else ""))
    data = args.source.describe(args.split, "train") if args.source else args.data or (
        f"generated: towers {args.clips_per_class} clips/class (seed {args.seed}), head "
        f"{args.head_clips_per_class} clips/class (seed {args.seed + seeds.HEAD_OFFSET}), {args.frames} frames each")
    recipe = {"command": "python train.py " + " ".join(shlex.quote(a) for a in args.argv), "data": data}
    if args.preset:
        recipe["preset"] = args.preset
    if args.resume and "multitask" in checkpoint.metrics.get("recipe", {}):  # the towers stage wrote it
        recipe["multitask"] = checkpoint.metrics["recipe"]["multitask"]
    if world.distributed:  # the command ran in each of them, each on its share of every --batch
        recipe["processes"] = world.size
    real_split, real_videos = real_footage(args, contract, tuple(args.extra_real))
    if real_split is None:
        clips = f"{args.dataset} split {args.split}" if args.source else "--data clips" if args.data else "generated clips"
        logger.info(f"real footage {real_videos}: training on {clips} only")
        recipe["real"], real_videos = real_videos, None
    else:
        recipe["real"] = {**real_split.to_recipe(), "label": NO_GESTURE,
                          "clips_per_file": args.real_clips_per_file,
                          "clips_per_stage": args.real_clips_per_file * len(real_split.paths("train")),
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
        if world.main:  # every rank holds the same weights and state; the others wait for the file
            save_checkpoint(out, model, metrics={"history": history, "recipe": recipe},
                            train_state=progress.to_train_state())
        world.barrier()

    started = time.monotonic()
    if state.stage == "towers":
        train = clips_for(args, contract, "train", args.seed, args.clips_per_class, real_videos)
        if args.mine_pool:
            mined, recipe["mining"] = _mined_clips(args, model, real_videos)
            train = merge_clips(train, mined)
            del mined
        task = task_train_clips(args, contract) if args.task_source else None
        if task is not None:
            recipe["multitask"] = task_recipe(args, len(train), len(task))
        train_towers(model, train, settings, state, lambda p, f: checkpoint_after(p, settings.tower_epochs, f),
                     task=task)
        del train, task
        state = Progress("head")  # the generator runs on as it is; the checkpoint keeps its state
    if state.stage == "head":
        for p in list(model.spatial_tower.parameters()) + list(model.temporal_tower.parameters()):
            p.requires_grad_(False)
        # On generated data the head learns on clips the towers never saw: on their own
        # training clips the spatial tower recognises the memorised scenes, the head learns
        # to trust that, and on new scenes fused fell below the temporal tower alone.
        # A --data folder has no clips to spare, so its train split serves both stages.
        # An official split's head trains on the first --head-clips-per-class videos of each class
        # of the same train list. Plain late fusion learns nothing on windows: no features. The
        # towers' features of every frame are cached when they fit in memory, else computed per
        # batch from the windows' frames (a whole split: the towers run T frames per window).
        feats = []
        if contract.fusion != "late":
            head_clips = clips_for(args, contract, "train", args.seed + seeds.HEAD_OFFSET, args.head_clips_per_class,
                                   real_videos, cap_dataset=True)
            feats = head_clips
            if head_features_fit(model, head_clips, args.device):
                feats = clip_features(model, head_clips, desc="cache tower features", device=args.device,
                                      amp=args.amp)
            del head_clips
        train_head(model, feats, settings, state, lambda p, f: checkpoint_after(p, settings.head_epochs, f))
        del feats
    if not world.main:
        return None
    model.eval()
    held_out_seed = args.seed + seeds.HELD_OUT_OFFSET
    held_out = clips_for(args, contract, "val", held_out_seed, args.val_clips_per_class)
    report = evaluate(model, held_out, per_clip=args.per_clip, device=args.device)
    model.cpu()  # the FLOP count runs on the CPU
    report["held_out"] = args.source.describe(args.split, "test") if args.source else \
        args.data and f"{args.data} (every {round(1 / args.val_fraction)}th clip)" or \
        f"generated: {args.val_clips_per_class} clips/class, seed {held_out_seed}"
    metrics = {"held_out": report, "flops": count_flops(model), "history": history, "recipe": recipe,
               "train_minutes": round((time.monotonic() - started) / 60, 1), "trained_on": machine(args) + (f", x {world.size} processes" if world.distributed else "")}
    save_checkpoint(out, model, metrics=metrics, train_state={"stage": "done", "epoch": 0})
    return metrics


def _check_mining(args) -> None:
    """--mine-pool's preconditions, said before any clip is rendered."""
    if not args.mine_pool and not args.mine_keep:
        return
    if args.mine_pool < 1 or not 1 <= args.mine_keep <= args.mine_pool:
        raise DataError(f"--mine-pool {args.mine_pool} --mine-keep {args.mine_keep}: keep between 1 and the pool")
    if not args.init:
        raise DataError("--mine-pool scores its pool with the model being fine-tuned: it needs --init "
                        "(and a run that mines is started again, not --resume'd)")
    if args.data or args.source:
        raise DataError("--mine-pool renders generated clips: it trains on generated data, not --data or --dataset")


def _mined_clips(args, model: TwoStreamNet, real_videos) -> tuple[ClipSet, dict]:
    """The --mine-keep worst clips per class of --mine-pool fresh ones (twostream/mining.py),
    rendered as the training clips are (same frames and real backdrops), from their own seeds."""
    chunk = min(CHUNK, args.mine_pool)
    chunks = -(-args.mine_pool // chunk)
    first = args.seed + seeds.MINING_OFFSET
    mined, report = mine_hard_clips(model, lambda j: generated_clips(args, model.contract, chunk, first + j, real_videos),
                                    chunks, args.mine_keep, device=args.device)
    logger.info(f"mined {report.kept} hard clips of {report.pool}: mean loss {np.nanmean(report.pool_loss):.3f} "
                f"in the pool, {np.nanmean(report.kept_loss):.3f} kept")
    return mined, {"pool_per_class": chunk * chunks, "keep_per_class": args.mine_keep,
                   "seeds": f"{first}..{first + chunks - 1}", **report.to_dict()}
