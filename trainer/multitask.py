"""train.py fit --multitask-dataset and evaluate --task: a second dataset for the temporal tower
(Simonyan and Zisserman 2014's multi-task learning, twostream/multitask.py)."""

from __future__ import annotations

from twostream.checkpoint import Checkpoint
from twostream.contract import ModelContract
from twostream.data import ClipPrep, ClipSet
from twostream.datasets import DatasetSource
from twostream.errors import DataError
from twostream.model import TwoStreamNet
from twostream.multitask import evaluate_task, task_batch_size, task_contract, with_task


def multitask_source(args) -> None:
    """args.task_source: the second dataset --multitask-dataset and --multitask-root name (None
    without them), read as the primary is (its own --multitask-lists and --multitask-jpegs, the
    same --videos-per-class); args.multitask_split defaults to the primary's --split."""
    flags = (("--multitask-root", args.multitask_root), ("--multitask-split", args.multitask_split),
             ("--multitask-lists", args.multitask_lists), ("--multitask-jpegs", args.multitask_jpegs))
    args.task_source = None
    if not args.multitask_dataset:
        given = [flag for flag, value in flags if value]
        if given:
            raise DataError(f"{given[0]} belongs to the second dataset of multi-task training: "
                            "it needs --multitask-dataset")
        return
    if not args.multitask_root:
        raise DataError("--multitask-dataset and --multitask-root go together (the second dataset on disk)")
    if not args.source:
        raise DataError("multi-task training adds a second official dataset to a first: give --dataset and --root")
    if args.multitask_dataset == args.dataset:
        raise DataError(f"--multitask-dataset {args.multitask_dataset} is the --dataset itself: "
                        "one classifier per dataset needs two datasets")
    if bool(args.jpegs) != bool(args.multitask_jpegs):
        raise DataError("both datasets' flow must come the same way: pre-extracted JPEGs for both "
                        "(--jpegs and --multitask-jpegs) or computed from the videos for both")
    args.multitask_split = args.multitask_split or args.split
    args.task_source = DatasetSource(args.multitask_dataset, args.multitask_root, args.multitask_lists,
                                     args.multitask_jpegs, args.videos_per_class)


def task_model_contract(args, contract: ModelContract) -> ModelContract:
    """A new model's contract: the primary's, with the second dataset's classifier when asked."""
    if args.task_source is None:
        return contract
    return with_task(contract, args.multitask_dataset, args.task_source.split(args.multitask_split).classes)


def check_task(args, contract: ModelContract, resuming: bool) -> None:
    """A --resume or --init model against the --multitask-* flags: a resumed run goes on with the
    same datasets; a fine-tuned one may leave its second classifier as it is, but not gain one
    (the weights it starts from have none to train)."""
    have = contract.multitask.dataset if contract.multitask else None
    want = args.multitask_dataset
    if resuming and have != want:
        raise DataError(f"the run was trained with second dataset {have} but --multitask-dataset is {want}: "
                        "resume it with the same datasets")
    if want and have != want:
        raise DataError(f"the --init model's second classifier is for {have}, not {want}: "
                        "train a multi-task model from scratch")


def task_train_clips(args, contract: ModelContract) -> ClipSet:
    """The second dataset's training clips, preprocessed for ``contract``, labelled in its own classes."""
    prep = ClipPrep.of(contract, device=args.device, cache=args.flow_cache)
    return args.task_source.clips(args.multitask_split, "train", task_contract(contract), prep, args.workers)


def task_recipe(args, primary_clips: int, task_clips: int) -> dict:
    """What the model card and the metrics say of the second dataset."""
    return {"dataset": args.multitask_dataset, "split": args.multitask_split,
            "data": args.task_source.describe(args.multitask_split, "train"),
            "batch": f"{task_batch_size(primary_clips, task_clips, args.batch)} {args.multitask_dataset} flow "
                     f"stacks per step beside {args.batch} primary frames (in proportion to the clip counts)",
            "loss": "CE(spatial, primary) + CE(temporal, primary) + CE(multitask_temporal_fc, second)"}


def evaluate_task_command(args, checkpoint: Checkpoint, model: TwoStreamNet) -> dict:
    """train.py evaluate --task DATASET: the temporal tower through the second dataset's classifier
    on that dataset's test list (--dataset DATASET --root ... --split N)."""
    task = checkpoint.contract.multitask
    if task is None or task.dataset != args.task:
        raise DataError(f"{args.model} has no {args.task} classifier (its second dataset: "
                        f"{task.dataset if task else 'none, not trained multi-task'})")
    if args.dataset != args.task:
        raise DataError(f"--task {args.task} scores {args.task} test videos: give --dataset {args.task} and its --root")
    if args.protocol != "windows" or args.record:
        raise DataError("--task reports the windows top-1 of the second classifier; "
                        "without --protocol and --record")
    prep = ClipPrep.of(model.contract, device=args.device, cache=args.flow_cache)
    clips = args.source.clips(args.split, "test", task_contract(model.contract), prep, args.workers)
    report = evaluate_task(model.to(args.device), clips, per_clip=args.per_clip, device=args.device)
    report["held_out"] = args.source.describe(args.split, "test")
    return report

