"""train.py evaluate: held-out windows of one model, or a published video protocol over official splits."""

from __future__ import annotations


import torch

from twostream.checkpoint import build_model, read_checkpoint, save_checkpoint
from twostream.errors import DataError
from twostream.flops import count_flops
from twostream.protocols import evaluate_splits, protocol_named, splits_report, splits_table
from twostream.training import evaluate
from trainer.common import clips_for, dataset_source, resolve_training_device
from trainer.multitask import evaluate_task_command

def run_evaluate(args) -> dict:
    resolve_training_device(args)
    dataset_source(args)
    if args.task and args.protocol != "windows":
        raise DataError("--task scores the second classifier over windows; a video --protocol scores the primary")
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
    if args.task:  # a multi-task model's second classifier, on its own dataset (trainer/multitask.py)
        return evaluate_task_command(args, checkpoint, model)
    torch.manual_seed(args.seed)
    clips = clips_for(args, model.contract, "val", args.seed, args.clips_per_class)
    report = evaluate(model.to(args.device), clips, per_clip=args.per_clip, device=args.device)
    model.cpu()
    report["flops"] = count_flops(model)
    if args.record:  # keep the card true to the file when the data recipe has changed since training
        report["held_out"] = args.source.describe(args.split, "test") if args.source else \
            args.data or f"generated: {args.clips_per_class} clips/class, seed {args.seed}"
        save_checkpoint(args.model, model, metrics={**checkpoint.metrics, "held_out": report},
                        train_state=checkpoint.train_state)
    return report
