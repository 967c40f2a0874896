"""What every train.py subcommand shares: the clips it trains or evaluates on (generated, a --data
folder, an official split, real footage), the device it runs on, and the dataset source flags."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from twostream.backdrops import BackdropPool
from twostream.contract import ModelContract
from twostream.model import TwoStreamNet
from twostream.data import ClipSet, NO_GESTURE, ClipPrep, generate_clips, load_folder, merge_clips, real_clips
from twostream.datasets import DatasetSource
from twostream.devices import resolve_device
from twostream.errors import ContractMismatch, DataError
from twostream.realdata import RealSplit, default_real_dir, load_videos

logger = logging.getLogger("train")


def real_footage(args, contract: ModelContract, extra: tuple[Path, ...] = ()):
    """(split, decoded training files) of the real footage folder, plus the training-only files
    of the ``extra`` folders, or (None, reason). Decoded once, here, before any clip worker
    forks: the workers share these frames."""
    if args.no_real:
        if extra:
            raise DataError("--no-real and --extra-real contradict each other: give one")
        return None, "off (--no-real)"
    folder = Path(args.real) if args.real else default_real_dir()
    if not folder.is_dir():
        if args.real or extra:  # asked for real footage: its absence is an error, not a quiet fallback
            raise DataError(f"real footage folder not found: {folder}")
        return None, f"none: {folder} is absent"
    if NO_GESTURE not in contract.classes:
        if extra:
            raise DataError(f"--extra-real trains footage as {NO_GESTURE!r}, a class this model does not have")
        return None, f"none: the model has no {NO_GESTURE!r} class"
    split = RealSplit.of(folder, extra)
    videos = load_videos(split, "train")
    logger.info(f"real footage: {len(split.train)} training files, {len(split.val)} validation files (never trained on)"
                + (f", {len(split.extra)} training-only files from {', '.join(map(str, extra))}" if extra else ""))
    return split, videos


def clips_for(args, contract: ModelContract, split: str, seed: int, clips_per_class: int, real_videos=None,
              cap_dataset: bool = False):
    """The clips of one stage: generated (``clips_per_class``, ``seed``), a --data folder's part,
    or an official split's train or test list (its first ``clips_per_class`` videos per class when
    ``cap_dataset``), with real footage merged into generated training clips."""
    # Flow on the training device when the contract names torch flow, cached when asked.
    prep = ClipPrep.of(contract, device=args.device, cache=args.flow_cache)
    if args.source:  # an official split: its train list for both stages, its test list held out
        return args.source.clips(args.split, "train" if split == "train" else "test", contract, prep, args.workers,
                                 per_class=clips_per_class if cap_dataset else None)
    if args.data:
        clips = load_folder(Path(args.data), contract, split, args.val_fraction, prep=prep)
    else:
        clips = generated_clips(args, contract, clips_per_class, seed, real_videos)
    if real_videos and split == "train" and args.real_clips_per_file > 0:
        clips = merge_clips(clips, real_clips(contract, real_videos, args.real_clips_per_file, seed,
                                              frames=args.frames, workers=args.workers, prep=prep))
    return clips


def generated_clips(args, contract: ModelContract, clips_per_class: int, seed: int, real_videos=None) -> ClipSet:
    """Generated clips as a training run renders them: --frames each, --real-backdrop-fraction of
    them over ``real_videos`` playing on, flow where the contract and --device say."""
    prep = ClipPrep.of(contract, device=args.device, cache=args.flow_cache)
    # The pool only when it is used: a plain run calls generate_clips exactly as before.
    extra = {"backdrops": BackdropPool(real_videos), "backdrop_fraction": args.real_backdrop_fraction} \
        if real_videos and args.real_backdrop_fraction > 0 else {}
    return generate_clips(contract, clips_per_class, seed, frames=args.frames, workers=args.workers,
                          prep=prep, **extra)


def dataset_source(args) -> None:
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


def resolve_training_device(args) -> None:
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


def machine(args) -> str:
    """What the run trained on, for the model card: the GPU, or the CPU cores this process may use."""
    if args.device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(args.device)} (CUDA{', fp16 autocast' if args.amp else ''})"
    return f"{len(os.sched_getaffinity(0))} CPU cores"


def head_features_fit(model: TwoStreamNet, clips: ClipSet, device: str, budget: float | None = None) -> bool:
    """Whether the head stage's cached tower features of ``clips`` (both towers' maps of every
    frame, float32, on the CPU) fit in ``budget`` bytes (default: half this machine's memory).
    When they do not, the head stage runs the frozen towers per batch instead (train_head)."""
    height, width = model.contract.input_size
    with torch.inference_mode():
        was_training = model.training
        model.eval()  # BatchNorm: a one-frame batch in training mode would change running stats
        spatial = model.spatial(torch.zeros(1, 3, height, width, device=device)).shape[1:].numel()
        temporal = model.temporal(torch.zeros(1, model.contract.flow_channels, height, width, device=device))
        model.train(was_training)
    frames = sum(len(clip.rgb) for clip in clips.clips)
    needed = frames * (spatial + temporal.shape[1:].numel()) * 4
    budget = budget or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2
    if needed > budget:
        logger.info(f"the fusion head's cached features of {len(clips)} clips ({frames} frames) would take "
                    f"{needed / 2**30:.1f} GiB, over {budget / 2**30:.1f} GiB (half this machine's memory): "
                    "the frozen towers run on each batch's windows instead")
    return needed <= budget
