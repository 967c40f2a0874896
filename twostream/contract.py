"""The preprocessing contract a model was trained with, carried inside every model file.

The runtime reads it and refuses (or, with an explicit flag, warns loudly) when its own
preprocessing differs: flow that differs from the training flow silently costs accuracy
(TSN users lost 15+ points swapping TV-L1 for Farneback).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field

from twostream.errors import ContractMismatch
from twostream.events import EventPolicy
from twostream.tvl1 import TVL1Params

FUSIONS = ("sum", "max", "concat", "conv", "bilinear", "late", "late-svm", "late-concat")
# Late fusions score each tower alone and combine the two scores: "late" averages the logits;
# "late-svm" is Simonyan and Zisserman's (2014) linear SVM on the stacked, L2-normalised
# softmax scores of the towers, its weights in the model file (twostream/svmfusion.py);
# "late-concat" is the tutorial baseline's classifier, a Linear(2K, K) on the concatenated tower
# logits, learnt in the head stage. Only these may give the temporal tower its own backbone: they
# pool each tower's features alone, where the others fuse the two maps location by location.
LATE_FUSIONS = ("late", "late-svm", "late-concat")
BACKBONES = ("tiny", "resnet18", "resnet50", "resnet101", "vgg16")
# "tvl1" is OpenCV contrib's TV-L1 on the CPU; "tvl1-torch" is twostream.tvl1 (CPU or CUDA, batched)
# with the contract's own parameters (ModelContract.tvl1).
FLOW_METHODS = ("dis-ultrafast", "dis-fast", "dis-medium", "farneback", "tvl1", "tvl1-torch")
# Camera-motion compensation (Simonyan and Zisserman 2014, "mean flow subtraction"): each
# displacement field minus its mean (or its median, robust to a large moving object) per axis,
# or minus the affine field fitted to it by least squares ("affine": also removes a camera's
# zoom and roll, whose fields have zero mean and survive mean subtraction).
FLOW_COMPENSATIONS = ("none", "mean", "median", "affine")
FLOW_NO_MOTION = 128  # the quantised value of zero displacement
FLOW_QUANTISATION = "uint8: q = clip(round(flow * 128 / bound) + 128, 0, 255)"
FLOW_CHANNEL_ORDER = "x0,y0,x1,y1,...: field i = flow(frame i-1 -> frame i), oldest first"
# Pre-extracted flow JPEGs (the tvl1_flow/{u,v}/ folders of the two-stream code bases, written by
# dense_flow-style extractors): each axis clipped to +-bound px and stretched over 0..255, so zero
# motion is 127.5, not 128, and a step is 2*bound/255 px, not bound/128.
JPEG_FLOW_QUANTISATION = "uint8 JPEG: q = round((clip(flow, -bound, bound) + bound) * 255 / (2 * bound))"
# The live flow method each extractor's fields are matched by (the same algorithm).
JPEG_FLOW_METHODS = {"tvl1": ("tvl1", "tvl1-torch"), "farneback": ("farneback",)}

# Where the temporal tower's network input puts each field of a stack. Every stage feeds the
# model oldest first (FLOW_CHANNEL_ORDER); the model reorders in its graph, so no stage changes.
# "oldest-last": fields 1..L-1 in pairs 0..L-2 and field 0 in the last pair, what the ResNet-101
# two-stream reference loader's flow[2*(j-1)] indexing does (Python's -2 is channel 2L-2); its
# released weights need it (twostream/refimport.py).
FLOW_STACK_ORDERS = ("oldest-first", "oldest-last")
# What the temporal tower's network sees of a field, d px clipped to +-flow_bound:
# "pixels": d itself, (q - 128) / (128 / bound); "unit": (d + bound) / (2 bound) in [0, 1], the
# value a flow JPEG (255 (d + bound) / (2 bound)) holds after ToTensor, i.e. q / 256 (the
# reference implementation's motion input, no mean subtracted).
FLOW_SCALINGS = ("pixels", "unit")
# Which way a stack's fields point (Simonyan and Zisserman 2014, "bi-directional optical flow").
# "forward": FLOW_CHANNEL_ORDER. "bidirectional": the same frames e-L..e and the same pair order,
# but the older L/2 pairs hold backward fields, flow(frame k -> frame k-1), computed by the flow
# method in that direction (not a negated forward field), and the newer L/2 forward fields: the
# stack is centred on frame e-L/2 (the paper's tau) and needs no frame after e (no added latency).
# Each frame then carries both fields of its pair (twostream.preprocess.field_channels: 4, not 2).
FLOW_DIRECTIONS = ("forward", "bidirectional")
BIDIRECTIONAL_CHANNEL_ORDER = ("x0,y0,...: pair i = frames (i-1, i) oldest first; pairs 1..L/2 "
                               "flow(frame i -> frame i-1), pairs L/2+1..L flow(frame i-1 -> frame i)")

GESTURE_CLASSES = (
    "no_gesture",
    "swipe_left",
    "swipe_right",
    "swipe_up",
    "swipe_down",
    "wave",
    "circle_clockwise",
    "circle_counterclockwise",
    "push",
    "pull",
)

logger = logging.getLogger(__name__)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FlowSource:
    """Where a model's training flow came from when it was not computed from the frames by this
    code: pre-extracted JPEG fields of ``method`` ("tvl1", "farneback"), quantised as
    ``quantisation`` says with their own ``bound`` (px at the extraction frames' size).

    Training reads them back to pixels (twostream.datasets.jpeg_flow_pixels) and quantises them as the live flow is
    (ModelContract.flow_quantisation), so the temporal tower sees one input form; the contract
    then requires a live flow method of the same algorithm and the same bound, and
    check_runtime refuses another method as for any model.
    """

    method: str = "tvl1"
    bound: float = 20.0
    quantisation: str = JPEG_FLOW_QUANTISATION

    def problems(self) -> list[str]:
        found = []
        if self.method not in JPEG_FLOW_METHODS:
            found.append(f"flow source method {self.method!r} is not one of {tuple(JPEG_FLOW_METHODS)}")
        if not self.bound > 0:
            found.append(f"flow source bound {self.bound} is not positive")
        if self.quantisation != JPEG_FLOW_QUANTISATION:
            found.append(f"unknown flow source quantisation {self.quantisation!r}")
        return found

    @classmethod
    def from_dict(cls, data: dict) -> "FlowSource":
        if not isinstance(data, dict):
            raise ContractMismatch(f"flow_source must be a mapping, got {type(data).__name__}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ContractMismatch(f"flow_source is malformed: {exc}") from exc


@dataclass(frozen=True)
class TaskHead:
    """A second dataset the temporal tower was also trained on (Simonyan and Zisserman 2014,
    multi-task learning): its name ("hmdb51") and classes, in label order. The model then holds
    one more per-frame classifier on the temporal tower's pooled features,
    ``multitask_temporal_fc`` (K2 x C), scored only by ``train.py evaluate --task`` (twostream/multitask.py)."""

    dataset: str
    classes: tuple[str, ...]

    def problems(self) -> list[str]:
        found = []
        if not isinstance(self.dataset, str) or not self.dataset:
            found.append(f"multitask dataset must be a name, got {self.dataset!r}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            found.append(f"multitask classes must be >= 2 distinct names, got {list(self.classes)[:5]}")
        return found

    @classmethod
    def from_dict(cls, data: dict) -> "TaskHead":
        if not isinstance(data, dict) or not isinstance(data.get("classes"), (list, tuple)):
            raise ContractMismatch(f"multitask must be a mapping with a list of classes, got {data!r:.80}")
        try:
            return cls(**{**data, "classes": tuple(data["classes"])})
        except TypeError as exc:
            raise ContractMismatch(f"multitask is malformed: {exc}") from exc


@dataclass(frozen=True)
class ModelContract:
    """Everything needed to feed a model exactly what it was trained on.

    Frames of any size are resized (not cropped) to ``input_size`` = (H, W); RGB enters the
    spatial tower as float 0..255 in ``channel_order``; flow is computed on the same resized
    grey frames (or frames of ``flow_frame_size``, the fields then resized) with ``flow_method``, camera motion compensated as ``flow_compensation`` says, clipped to ±``flow_bound`` px, quantised to uint8 as
    ``flow_quantisation`` says, and stacked L fields deep (2L channels, ``flow_channel_order``; pointing as
    ``flow_direction`` says).
    The network normalises internally: rgb -> (x/255 - mean)/std, flow -> (q - 128)/(128/bound),
    i.e. the temporal tower sees displacement in pixels (``flow_scaling`` "pixels"; "unit" for
    imported reference weights), its fields in ``flow_stack_order``.
    """

    classes: tuple[str, ...]
    backbone: str = "tiny"
    # The temporal tower's own backbone (a small flow net beside a big RGB one), or None: the
    # spatial tower's. Absent in older files (None); compared: it is another network.
    temporal_backbone: str | None = None
    fusion: str = "concat"
    input_size: tuple[int, int] = (112, 112)
    channel_order: str = "rgb"
    rgb_mean: tuple[float, float, float] = _IMAGENET_MEAN
    rgb_std: tuple[float, float, float] = _IMAGENET_STD
    flow_method: str = "dis-medium"
    flow_bound: float = 20.0
    flow_compensation: str = "none"  # one of FLOW_COMPENSATIONS, applied before clipping
    # The TV-L1 parameters when flow_method is "tvl1-torch" (default: TVL1Params.fast()), else
    # None. Compared: other parameters give other fields, hence another model input.
    tvl1: TVL1Params | None = None
    flow_quantisation: str = FLOW_QUANTISATION
    # None: flow computed from the frames by flow_method, in training as live. Else the
    # pre-extracted fields training read (FlowSource): compared, so a mismatch is refused.
    flow_source: FlowSource | None = None
    flow_channel_order: str = FLOW_CHANNEL_ORDER
    # Both compared; absent in older files, whose models were all "oldest-first" and "pixels".
    flow_stack_order: str = "oldest-first"  # one of FLOW_STACK_ORDERS
    flow_scaling: str = "pixels"  # one of FLOW_SCALINGS
    stack_length: int = 10  # L: flow fields per temporal-tower input
    # One of FLOW_DIRECTIONS. Compared: it changes the temporal tower's input. Absent in older
    # files, whose stacks were all forward.
    flow_direction: str = "forward"
    # (H, W) of the grey frames flow is computed on, when not input_size: each field is then
    # resized to input_size with its displacement left in pixels of those frames, not rescaled,
    # as the ResNet-101 reference's flow JPEGs were (computed on the source frames, resized by
    # its loader). None: flow on the input_size frames (older files). Compared.
    flow_frame_size: tuple[int, int] | None = None
    num_segments: int = 5  # T: sampled frames per window
    stride: int = 3  # tau: frames between sampled frames at run time
    train_fps: float = 25.0  # frame rate of the training clips; tau is in frames of this rate
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    # When window scores become gesture events (twostream.events); None: the defaults for these
    # classes. Not compared: it only reads the head's output, so a model and an engine built
    # from it before `train.py tune-events` still agree (nothing to rebuild for a threshold).
    events: EventPolicy | None = field(default=None, compare=False, hash=False)
    # The second dataset of a multi-task model (TaskHead), None otherwise (and in older files).
    # Not compared: it adds a classifier off the run-time graph; the input and outputs are the
    # primary dataset's either way, so engines and the live runtime are the same.
    multitask: TaskHead | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.events is None:
            object.__setattr__(self, "events", EventPolicy.default_for(self.classes))
        if self.tvl1 is None and self.flow_method == "tvl1-torch":
            object.__setattr__(self, "tvl1", TVL1Params.fast())
        problems = []
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append(f"classes must be >= 2 distinct names, got {list(self.classes)}")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone {self.backbone!r} is not one of {BACKBONES}")
        if self.fusion not in FUSIONS:
            problems.append(f"fusion {self.fusion!r} is not one of {FUSIONS}")
        if self.temporal_backbone is not None and self.temporal_backbone not in BACKBONES:
            problems.append(f"temporal_backbone {self.temporal_backbone!r} is not one of {BACKBONES}")
        elif self.temporal_backbone not in (None, self.backbone) and self.fusion not in LATE_FUSIONS:
            problems.append(f"a temporal backbone of its own ({self.temporal_backbone}) needs a late fusion "
                            f"{LATE_FUSIONS}: fusion {self.fusion!r} fuses two feature maps of one shape")
        if self.flow_method not in FLOW_METHODS:
            problems.append(f"flow_method {self.flow_method!r} is not one of {FLOW_METHODS}")
        if min(self.input_size) < 32:
            problems.append(f"input_size {self.input_size} is below 32 px")
        if self.flow_frame_size is not None:
            if len(self.flow_frame_size) != 2 or min(self.flow_frame_size) < 32:
                problems.append(f"flow_frame_size {self.flow_frame_size} is not an (H, W) of at least 32 px")
            if self.flow_source is not None:
                problems.append("flow_frame_size is for flow computed from frames, not pre-extracted flow "
                                "(read at input_size, displacement rescaled)")
        if self.stack_length < 1 or self.num_segments < 1 or self.stride < 1:
            problems.append("stack_length, num_segments and stride must be >= 1")
        if self.channel_order != "rgb":
            problems.append(f"channel_order {self.channel_order!r}: only 'rgb' is supported")
        if self.tvl1 is not None and self.flow_method != "tvl1-torch":
            problems.append(f"tvl1 parameters are set but flow_method is {self.flow_method!r}, not 'tvl1-torch'")
        if self.tvl1 is not None and not isinstance(self.tvl1, TVL1Params):
            problems.append(f"tvl1 must be TVL1Params, got {type(self.tvl1).__name__}")
        if self.flow_compensation not in FLOW_COMPENSATIONS:
            problems.append(f"flow_compensation {self.flow_compensation!r} is not one of {FLOW_COMPENSATIONS}")
        if self.flow_stack_order not in FLOW_STACK_ORDERS:
            problems.append(f"flow_stack_order {self.flow_stack_order!r} is not one of {FLOW_STACK_ORDERS}")
        if self.flow_scaling not in FLOW_SCALINGS:
            problems.append(f"flow_scaling {self.flow_scaling!r} is not one of {FLOW_SCALINGS}")
        if self.flow_direction not in FLOW_DIRECTIONS:
            problems.append(f"flow_direction {self.flow_direction!r} is not one of {FLOW_DIRECTIONS}")
        elif self.flow_direction == "bidirectional":
            if self.stack_length % 2:
                problems.append(f"a bidirectional flow stack needs an even stack_length (L/2 backward and "
                                f"L/2 forward fields), got {self.stack_length}")
            if self.flow_source is not None:
                problems.append("a bidirectional flow stack needs backward fields, but pre-extracted JPEG flow "
                                "(flow_source) holds forward fields only")
        if self.flow_quantisation != FLOW_QUANTISATION:
            problems.append(f"unknown flow quantisation {self.flow_quantisation!r}")
        if self.flow_source is not None:
            if not isinstance(self.flow_source, FlowSource):
                problems.append(f"flow_source must be FlowSource, got {type(self.flow_source).__name__}")
            else:
                problems += self.flow_source.problems()
                live = JPEG_FLOW_METHODS.get(self.flow_source.method, ())
                if live and self.flow_method not in live:
                    problems.append(f"training flow was pre-extracted {self.flow_source.method}, but flow_method "
                                    f"{self.flow_method!r} is not the same algorithm (one of {live})")
                if self.flow_source.bound != self.flow_bound:
                    problems.append(f"training flow was clipped at +-{self.flow_source.bound} px, but flow_bound "
                                    f"is {self.flow_bound}")
        if self.multitask is not None:
            problems += self.multitask.problems() if isinstance(self.multitask, TaskHead) else \
                [f"multitask must be TaskHead, got {type(self.multitask).__name__}"]
        if not isinstance(self.events, EventPolicy):
            problems.append(f"events must be an EventPolicy, got {type(self.events).__name__}")
        elif self.events.background is not None and self.events.background not in self.classes:
            problems.append(f"event background {self.events.background!r} is not one of the classes")
        if problems:
            raise ContractMismatch("invalid model contract: " + "; ".join(problems))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def temporal_trunk(self) -> str:
        """The temporal tower's backbone: its own, else the spatial tower's."""
        return self.temporal_backbone or self.backbone

    @property
    def flow_channels(self) -> int:
        """2L: x and y of each of the L stacked flow fields."""
        return 2 * self.stack_length

    def flow_network_order(self) -> list[int] | None:
        """Channel i of the temporal network's input is channel order[i] of the oldest-first
        stack (2L indices), or None when the two agree ("oldest-first")."""
        if self.flow_stack_order == "oldest-first":
            return None
        length = self.stack_length  # "oldest-last": pair p holds field (p + 1) mod L
        return [2 * ((pair + 1) % length) + axis for pair in range(length) for axis in (0, 1)]

    def flow_normalisation(self) -> tuple[float, float]:
        """(mean, std) that map quantised flow q (0..255) to the temporal network's input,
        (q - mean) / std: see FLOW_SCALINGS."""
        if self.flow_scaling == "unit":
            return 0.0, 256.0
        return float(FLOW_NO_MOTION), FLOW_NO_MOTION / self.flow_bound

    def to_dict(self) -> dict:
        """Plain types only (lists, str, float, int, None; ``events``, ``tvl1``, ``flow_source`` nested dicts), so
        torch.load(weights_only=True) and ONNX metadata (JSON) can both carry it."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        if self.multitask is not None:
            out["multitask"] = {"dataset": self.multitask.dataset, "classes": list(self.multitask.classes)}
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelContract":
        if not isinstance(data, dict):
            raise ContractMismatch(f"model contract must be a mapping, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ContractMismatch(f"model contract has fields this code does not know: {unknown}")
        kwargs = {}
        for key, value in data.items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        if "events" in data:  # absent in files older than events: the defaults for the classes
            kwargs["events"] = EventPolicy.from_dict(data["events"])
        if data.get("tvl1") is not None:  # absent in files older than tvl1-torch: None
            kwargs["tvl1"] = TVL1Params.from_dict(data["tvl1"])
        if data.get("flow_source") is not None:  # absent in files older than flow sources: None
            kwargs["flow_source"] = FlowSource.from_dict(data["flow_source"])
        if data.get("multitask") is not None:  # absent in files older than multi-task training: None
            kwargs["multitask"] = TaskHead.from_dict(data["multitask"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ContractMismatch(f"model contract is incomplete: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "ModelContract":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ContractMismatch(f"model contract is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def check_runtime(self, *, flow_method: str, input_size: tuple[int, int], allow_mismatch: bool,
                      tvl1: TVL1Params | None = None) -> None:
        """Refuse run-time preprocessing that differs from training (ContractMismatch), or, when
        allowed, log a loud warning (this module's logger). ``tvl1``: the runtime's TV-L1
        parameters when it runs tvl1-torch (None: it runs the contract's own)."""
        diffs = []
        if flow_method != self.flow_method:
            diffs.append(f"flow method {flow_method!r} but the model was trained on {self.flow_method!r}")
        elif tvl1 is not None and tvl1 != self.tvl1:
            diffs.append(f"TV-L1 parameters {tvl1.to_dict()} but the model was trained with "
                         f"{self.tvl1.to_dict() if self.tvl1 else None}")
        if tuple(input_size) != tuple(self.input_size):
            diffs.append(f"input size {tuple(input_size)} but the model expects {tuple(self.input_size)}")
        if not diffs:
            return
        message = "; ".join(diffs)
        if not allow_mismatch:
            raise ContractMismatch(message + " (pass --allow-contract-mismatch to run anyway)")
        logger.warning("WARNING: preprocessing differs from the model's contract: %s. "
                       "Predictions may be badly wrong.", message)
