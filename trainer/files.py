"""train.py import-resnet101 and card: model files from released checkpoints, and their cards."""

from __future__ import annotations

from pathlib import Path

from twostream.card import render_card
from twostream.checkpoint import read_checkpoint, save_checkpoint
from twostream.refimport import import_reference, read_class_index

def import_resnet101(args) -> dict:
    """The ResNet-101 reference's two model_best.pth.tar files -> a model file (twostream/refimport.py)."""
    classes = read_class_index(args.classes)
    model = import_reference(args.spatial, args.motion, classes, flow_method=args.flow, flow_bound=args.flow_bound,
                             num_segments=args.segments, stride=args.stride,
                             flow_frame_size=tuple(args.flow_frame_size) if args.flow_frame_size else None)
    save_checkpoint(args.out, model, train_state={"stage": "done", "epoch": 0})
    return {"model": str(args.out), "classes": len(classes), "contract": model.contract.to_dict()}


def write_card(args) -> dict:
    path = Path(args.model)
    card = render_card(path, read_checkpoint(path))
    out = path.with_suffix(".md")
    out.write_text(card)
    return {"card": str(out)}
