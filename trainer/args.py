"""train.py's command line: one sub-parser per subcommand, each naming the function it runs."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from cli import CommandParser, at_least_one, default_of, non_negative
from twostream import seeds
from twostream.contract import BACKBONES, FLOW_COMPENSATIONS, FLOW_METHODS, FUSIONS, ModelContract
from twostream.contract import FLOW_DIRECTIONS
from twostream.datasets import DATASETS
from twostream.devices import DEVICES
from twostream.fieldtest import FieldSettings
from twostream.mining import CHUNK
from twostream.presets import PRESETS
from twostream.protocols import PROTOCOLS
from twostream.refimport import REFERENCE_FLOW_BOUND
from twostream.training import TRAIN_FUSION, TrainSettings
from trainer.fit import fit
from trainer.evaluate import run_evaluate
from trainer.streams import field_test, tune_events
from trainer.files import import_resnet101, write_card
from trainer.presets import list_presets, with_preset

def parse_args(argv=None, description: str = "") -> argparse.Namespace:
    parser = CommandParser(prog="train.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
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
                            "frames and every flow parameter (twostream/flowcache.py); with --dataset, the split's "
                            "videos, read memory-mapped, so a split larger than memory trains (twostream/clipstore.py)")
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
    f.add_argument("--multitask-dataset", choices=DATASETS, help="multi-task training (Simonyan and Zisserman "
                   "2014): a second dataset for the temporal tower, through its own classifier (twostream/multitask.py)")
    f.add_argument("--multitask-root", type=Path, help="the second dataset as distributed (as --root)")
    f.add_argument("--multitask-split", type=int, choices=(1, 2, 3), help="its split (default: --split)")
    f.add_argument("--multitask-lists", type=Path, help="its split lists (as --lists)")
    f.add_argument("--multitask-jpegs", type=Path, metavar="DIR", help="its pre-extracted frames and flow "
                   "(as --jpegs; needed when --jpegs is given)")
    f.add_argument("--head-clips-per-class", type=int, default=100,
                   help="generated clips per class for the fusion head, unseen by the towers; with --dataset, "
                        "the head's first N training videos per class")
    f.add_argument("--val-clips-per-class", type=int, default=40)
    f.add_argument("--real", metavar="DIR", help="real footage nobody gestures in, added as no_gesture "
                   "(default: ../shared/data/videos/real when present); split by file (twostream/realdata.py)")
    f.add_argument("--no-real", action="store_true", help="train without real footage")
    f.add_argument("--extra-real", metavar="DIR", type=Path, nargs="+", default=[],
                   help="more footage nobody gestures in, every file training only (validation stays --real's "
                        "validation files); tools/extra_real.sh fetches the files the demo model used")
    f.add_argument("--real-clips-per-file", type=int, default=10,
                   help="augmented no_gesture clips per real training file, per stage")
    f.add_argument("--real-backdrop-fraction", type=float, default=0.3,
                   help="share of generated clips over real moving backgrounds")
    f.add_argument("--balance-classes", action="store_true",
                   help="weigh each class's loss by the inverse of its share of the training clips "
                        "(real footage makes no_gesture the largest class)")
    f.add_argument("--mine-pool", type=int, default=0, metavar="N",
                   help="with --init: render N fresh generated clips per class, score them with the --init "
                        "model and add the --mine-keep worst of each class to the towers' training clips "
                        f"(hard-example mining, twostream/mining.py; rendered {CHUNK} per class at a time, so a pool "
                        f"above {CHUNK} is rounded up to a multiple of {CHUNK}; 0: off)")
    f.add_argument("--mine-keep", type=int, default=0, metavar="K", help="mined clips kept per class")
    train, contract = TrainSettings(), functools.partial(default_of, ModelContract)
    f.add_argument("--preset", choices=tuple(p.name for p in PRESETS),
                   help="a published system's options as defaults (list: train.py presets); flags given still win")
    f.add_argument("--backbone", choices=BACKBONES, default=contract("backbone"))
    f.add_argument("--temporal-backbone", choices=BACKBONES,
                   help="the temporal tower's own backbone (late fusions; default: --backbone)")
    f.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=False,
                   help="torchvision ImageNet weights, from torch's hub cache only (never downloaded)")
    f.add_argument("--fusion", choices=FUSIONS, default=TRAIN_FUSION)
    f.add_argument("--input-size", type=int, default=contract("input_size")[0], help="N: frames resized to N x N")
    f.add_argument("--flow", choices=FLOW_METHODS, default=contract("flow_method"))
    f.add_argument("--flow-compensation", choices=FLOW_COMPENSATIONS,
                   help="camera-motion compensation: subtract each flow field's mean, median or least-squares "
                        f"affine field (default {contract('flow_compensation')}; with --init the model's own, "
                        "unless given)")
    f.add_argument("--flow-direction", choices=FLOW_DIRECTIONS, default=contract("flow_direction"),
                   help="bidirectional: each stack's older L/2 fields backward, newer L/2 forward (Simonyan and "
                        "Zisserman 2014); even --stack-length, twice the flow work, not with --jpegs")
    f.add_argument("--tvl1-preset", choices=("fast", "opencv"), default="fast",
                   help="TV-L1 parameters with --flow tvl1-torch: the live preset or OpenCV's defaults "
                        "(twostream/tvl1.py; stored in the contract)")
    f.add_argument("--stack-length", type=int, default=contract("stack_length"))
    f.add_argument("--segments", type=int, default=contract("num_segments"))
    f.add_argument("--stride", type=int, default=contract("stride"))
    f.add_argument("--fps", type=float, default=contract("train_fps"))
    f.add_argument("--tower-epochs", type=at_least_one, default=train.tower_epochs)
    f.add_argument("--head-epochs", type=at_least_one, default=train.head_epochs)
    f.add_argument("--samples-per-clip", type=int, default=train.samples_per_clip)
    f.add_argument("--spatial-segments", type=at_least_one, default=train.spatial_segments, metavar="K",
                   help="TSN: the spatial tower learns on K frames per sample, one per equal segment, "
                        "logits averaged (default %(default)s)")
    f.add_argument("--train-strides", type=at_least_one, nargs=2, default=train.strides, metavar=("LO", "HI"),
                   help="tau drawn in LO..HI frames when training the head (default %(default)s)")
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
    e.add_argument("--task", choices=DATASETS, help="a multi-task model's second dataset: the temporal top-1 "
                   "through its classifier on that dataset's test list (with --dataset the same and --root)")
    pr = sub.add_parser("presets", help="the published systems' presets of fit --preset, and their accuracy")
    pr.set_defaults(run=list_presets)
    pr.add_argument("--json", dest="table", action="store_false", help="JSON instead of a Markdown table")
    i = sub.add_parser("import-resnet101", help="a model file from the ResNet-101 two-stream reference's checkpoints")
    i.set_defaults(run=import_resnet101)
    i.add_argument("--spatial", required=True, help="its spatial net's model_best.pth.tar")
    i.add_argument("--motion", required=True, help="its motion net's model_best.pth.tar")
    i.add_argument("--classes", required=True, help="UCF101's classInd.txt (the classes, in label order)")
    i.add_argument("--out", required=True, help="model file to write")
    i.add_argument("--flow", choices=FLOW_METHODS, default="tvl1", help="live flow (default: TV-L1, as trained)")
    i.add_argument("--flow-bound", type=float, default=REFERENCE_FLOW_BOUND, help="px its flow JPEGs spanned")
    i.add_argument("--flow-frame-size", type=int, nargs=2, metavar=("H", "W"),
                   help="the frames its flow JPEGs were extracted from, e.g. 240 320 (UCF101's own): live flow "
                        "runs at that size and is resized to 224x224 with its pixel values kept (default: at 224x224)")
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
    args = with_preset(parser, f, parser.parse_args(argv), argv)
    args.argv = argv
    return args
