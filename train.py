"""Train or evaluate a two-stream model.

    python train.py fit --out models/my.pt                       # on generated gesture clips
    python train.py fit --out models/my.pt --data DIR            # DIR/<class>/<video> clips
    python train.py fit --resume models/my.pt --out models/my.pt # continue an interrupted run
    python train.py fit --out models/my.pt --device cuda --flow tvl1-torch --flow-cache ~/.cache/flow
    python train.py evaluate --model models/demo.pt              # held-out JSON report
    python train.py fit --out ucf.pt --dataset ucf101 --root UCF-101 --split 1 --backbone resnet50
    python train.py evaluate --model s1.pt s2.pt s3.pt --dataset ucf101 --root UCF-101 --split 1 2 3 \
        --protocol frames25 --table                              # video top-1 per split and mean
    python train.py presets                                      # the published systems' option sets
    python train.py fit --preset resnet101-twostream --out r101.pt --dataset ucf101 --root UCF-101 --split 1
    python train.py card --model models/demo.pt                  # writes models/demo.md
    python train.py tune-events --model models/my.pt             # event policy from validation streams
    torchrun --nproc-per-node 4 train.py fit --out models/my.pt --device cuda  # 4 GPUs, data parallel
    python train.py import-resnet101 --spatial S.pth.tar --motion M.pth.tar --classes classInd.txt --out ucf101.pt

Every run is seeded; a checkpoint is written atomically after each epoch, with the optimizer,
schedule and random generator state, so an interrupted run resumes exactly where it stopped.
``--device`` picks where training and evaluation run (auto: CUDA when present); checkpoints hold
CPU tensors whatever the device, so a model trained on a GPU loads anywhere.
"""

from __future__ import annotations

import json
import sys

from cli import configure_logging
from trainer.args import parse_args
from twostream.errors import RecognizerError


def main(argv=None) -> int:
    args = parse_args(argv, __doc__)
    configure_logging()
    try:
        result = args.run(args)
    except RecognizerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is saved; continue with --resume", file=sys.stderr)
        return 130
    if result is None:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    text = result.pop("table", None) if isinstance(result, dict) else None
    print(text if getattr(args, "table", False) and text else
          json.dumps(result["held_out"] if args.command == "fit" else result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
