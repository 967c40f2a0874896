"""The published two-stream systems as named presets of ``train.py fit`` (``--preset NAME``).

A preset is option values, nothing else: every value is one of fit's own options, applied as
that option's default (trainer/args.py), so an explicit flag still wins and no preset has a
code path of its own. ``train.py presets`` lists them; the README's "Published systems as
presets" shows each one's commands for UCF101 split 1 beside its published accuracy.

What the published systems did that these options cannot say is in each preset's ``notes``:
their nets that torchvision lacks (Simonyan and Zisserman's CNN-M-2048), their test-time crops
(a contract resizes whole frames, twostream/protocols.py), the flags other features add.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from twostream.errors import DataError


@dataclass(frozen=True)
class PresetOptions:
    """Values of ``train.py fit`` options, by their argparse names; None: the option's own default."""

    backbone: str | None = None
    temporal_backbone: str | None = None
    pretrained: bool | None = None
    fusion: str | None = None
    input_size: int | None = None
    flow: str | None = None
    flow_compensation: str | None = None
    stack_length: int | None = None
    segments: int | None = None
    stride: int | None = None
    train_strides: tuple[int, int] | None = None
    spatial_segments: int | None = None
    samples_per_clip: int | None = None

    def defaults(self) -> dict:
        """The options this preset sets, as argparse defaults (``set_defaults(**...)``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def flags(self) -> str:
        """The same as a command line: ``--backbone resnet101 --pretrained ...``."""
        words = []
        for name, value in self.defaults().items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                words.append(flag if value else "--no-" + name.replace("_", "-"))
            elif isinstance(value, tuple):
                words.append(f"{flag} {' '.join(str(v) for v in value)}")
            else:
                words.append(f"{flag} {value}")
        return " ".join(words)


@dataclass(frozen=True)
class Preset:
    name: str
    system: str  # who published it, where
    options: PresetOptions
    protocol: str  # train.py evaluate --protocol that system tested with (twostream/protocols.py)
    published: str  # its published accuracy, as published
    notes: str  # what the options mean, what to add by hand, where this differs from the paper


# Flow: TV-L1 (torch, batched, on the GPU: "tvl1-torch") for every preset, the flow of the
# pre-extracted tvl1_flow JPEGs that two of these systems were trained on, and the only live flow
# a model trained on those JPEGs accepts (twostream.contract.JPEG_FLOW_METHODS).
PRESETS = (
    Preset(
        "simonyan2014", "Simonyan and Zisserman, NIPS 2014, two-stream ConvNets",
        PresetOptions(backbone="vgg16", pretrained=True, fusion="late", input_size=224, flow="tvl1-torch",
                      flow_compensation="mean", stack_length=10),
        "frames25",
        "UCF101 / HMDB51, mean of 3 splits: spatial 73.0 / 40.5, temporal 83.7 / 54.6, "
        "average fusion 86.9 / 58.0, SVM fusion 88.0 / 59.4",
        "L = 10 stacked fields, mean flow subtraction (--flow-compensation mean), late fusion by averaging; "
        "SVM fusion: add --fusion late-svm (scored by --protocol clips20-flip: the frame protocols' fused "
        "column is the towers' average). Bi-directional stacks and multi-task training: add "
        "--flow-direction bidirectional / --multitask-dataset hmdb51 --multitask-root DIR. The paper's "
        "CNN-M-2048 is not in torchvision: VGG-16 (ImageNet) stands in, and --pretrained also gives the "
        "temporal tower cross-modality init where the paper trained it from scratch; it used Brox flow."),
    Preset(
        "resnet101-twostream", "the ResNet-101 two-stream reference implementation (PyTorch)",
        PresetOptions(backbone="resnet101", pretrained=True, fusion="late", input_size=224, flow="tvl1-torch",
                      stack_length=10, spatial_segments=3, samples_per_clip=1),
        "frames19",
        "UCF101 split 1: spatial 82.1, motion 79.4, average fusion 88.5",
        "ImageNet ResNet-101 towers, cross-modality init of the 20-channel conv1 (--pretrained), TSN "
        "training of the spatial net (--spatial-segments 3: 3 frames from 3 equal segments, logits averaged), "
        "one random 10-field stack per video for the motion net (--samples-per-clip 1: each video once an "
        "epoch), 224 x 224, average fusion, tested on 19 frames per video. Its released checkpoints: "
        "train.py import-resnet101."),
    Preset(
        "feichtenhofer2016", "Feichtenhofer, Pinz and Zisserman, CVPR 2016, convolutional two-stream fusion",
        PresetOptions(backbone="vgg16", pretrained=True, fusion="conv", input_size=224, flow="tvl1-torch",
                      stack_length=10, segments=5, stride=10, train_strides=(5, 15)),
        "clips20-flip",
        "UCF101 / HMDB51, mean of 3 splits: 92.5 / 65.4",
        "VGG-16 towers fused by a 1x1 conv after relu5_3, then 3D conv + 3D pooling over T = 5 frames, "
        "tau drawn in 5..15 when training the head (--train-strides 5 15) and 10 at run time, the temporal "
        "tower kept beside the fused one (the head's temporal branch); tested on 20 clips per video "
        "and their mirrors."),
    Preset(
        "concat-baseline", "a tutorial-style two-stream baseline",
        PresetOptions(backbone="resnet50", temporal_backbone="tiny", pretrained=True, fusion="late-concat",
                      input_size=224, flow="tvl1-torch", stack_length=10),
        "clips20-flip",
        "none published",
        "an ImageNet ResNet-50 spatial net and a small flow net (this project's tiny backbone, from scratch), "
        "each classifying alone; their logits concatenated and classified by a Linear(2K, K) learnt in the "
        "head stage (--fusion late-concat). clips20-flip scores it through that classifier (the frame "
        "protocols average the towers)."),
)


def preset_named(name: str) -> Preset:
    for preset in PRESETS:
        if preset.name == name:
            return preset
    raise DataError(f"preset {name!r} is not one of {[p.name for p in PRESETS]}")


def presets_table() -> str:
    """Every preset as a Markdown table (name, options, test protocol, published accuracy), then
    each one's system and notes."""
    lines = ["| preset | options | protocol | published accuracy |", "| --- | --- | --- | --- |"]
    lines += [f"| {p.name} | `{p.options.flags()}` | {p.protocol} | {p.published} |" for p in PRESETS]
    lines += ["", *(f"- {p.name} ({p.system}): {p.notes}" for p in PRESETS)]
    return "\n".join(lines)


def presets_report() -> dict:
    """JSON-ready: every preset with its options as fit's defaults and its notes."""
    return {"presets": [{"name": p.name, "system": p.system, "options": p.options.defaults(),
                         "flags": p.options.flags(), "protocol": p.protocol, "published": p.published,
                         "notes": p.notes} for p in PRESETS]}
