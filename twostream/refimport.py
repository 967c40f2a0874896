"""Import of the ResNet-101 two-stream reference implementation's released checkpoints.

Its ``model_best.pth.tar`` files, one for the spatial and one for the motion net, are
torch.save'd dicts {epoch, state_dict, best_prec1, optimizer} written by PyTorch 0.3/0.4 under
Python 2 (torch's legacy, non-zip container). ``state_dict`` has torchvision's ResNet-101 keys,
except the first conv, ``conv1_custom`` ((64, 3, 7, 7) spatial, (64, 20, 7, 7) motion), and the
classifier, ``fc_custom`` ((K, 2048) and (K,)); a DataParallel-wrapped net prefixes "module.".

They are read with twostream.checkpoint.load_untrusted (torch's weights_only unpickler: tensors,
storages, OrderedDict and plain data), so a file that holds anything else is refused before any
of it runs. The weights become this project's late-fusion ResNet-101 (twostream.model): the
trunks as they are, ``fc_custom`` as each tower's per-frame classifier, the video score the mean
of the two towers' logits (the reference's average fusion of logits). Its motion input is
carried over in the contract: ``flow_stack_order`` "oldest-last" (its loader writes field j of a
stack to channels 2(j-1), 2(j-1)+1) and ``flow_scaling`` "unit" (flow JPEGs through ToTensor:
(d + bound) / (2 bound), no mean subtracted), at 224 x 224, the RGB net on ImageNet-normalised
frames as this project's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from twostream.backbones import build_backbone
from twostream.checkpoint import load_untrusted, tensor_problems
from twostream.contract import ModelContract
from twostream.errors import CheckpointError, DataError
from twostream.model import TwoStreamNet

REFERENCE_BACKBONE = "resnet101"
REFERENCE_SIZE = (224, 224)
REFERENCE_STACK = 10  # L: its motion net takes 10 fields, 20 channels
REFERENCE_FLOW_BOUND = 20.0  # px: the bound of the TV-L1 flow JPEGs it was trained on
REFERENCE_FPS = 25.0  # UCF101's frame rate
REFERENCE_FEATURES = 2048  # ResNet-101's layer4 channels, fc_custom's input
# The reference's top-level module names -> the index of the same layer in build_backbone's
# nn.Sequential (conv1, bn1, relu, maxpool, layer1..layer4).
_TRUNK_INDEX = {"conv1_custom": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
_CLASSIFIER = "fc_custom"
_FOREIGN = "not a PyTorch checkpoint ({looks}); pass the reference's model_best.pth.tar"


@dataclass(frozen=True)
class ReferenceTower:
    """One net of a reference checkpoint, renamed for this project.

    trunk: build_backbone's state_dict keys ("0.weight", "4.0.conv1.weight", ...) -> tensors;
    fc_weight (K, 2048) and fc_bias (K,): the per-frame classifier; epoch and best_prec1 as
    the file records them (None when absent), for the model's provenance.
    """

    path: Path
    trunk: dict
    fc_weight: torch.Tensor
    fc_bias: torch.Tensor
    epoch: int | None
    best_prec1: float | None

    @property
    def num_classes(self) -> int:
        return int(self.fc_weight.shape[0])


def read_class_index(path: str | Path) -> tuple[str, ...]:
    """UCF101's classInd.txt: lines "<index> <name>", indices 1..K in order (the reference's
    labels are index - 1). One DataError naming the file and line for anything else."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the class list {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    names = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{path}, line {number}: expected '<index> <class name>', got {line.strip()!r}")
        if int(parts[0]) != len(names) + 1:
            raise DataError(f"{path}, line {number}: class index {parts[0]}, expected {len(names) + 1} "
                            "(indices run 1, 2, 3, ... in order)")
        names.append(parts[1])
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"{path}: expected at least 2 distinct class names, got {len(names)} "
                        f"({len(set(names))} distinct)")
    return tuple(names)


def read_reference(path: str | Path, in_channels: int, net: str) -> ReferenceTower:
    """Read one reference checkpoint (``net``: "spatial" or "motion", for messages) whose first
    conv takes ``in_channels``; check every tensor against torchvision's ResNet-101. Every
    failure is one CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{net} checkpoint not found: {path}")
    payload = load_untrusted(path, f"{net} checkpoint", _FOREIGN)
    if isinstance(payload, dict) and any(str(key).endswith(f"{_CLASSIFIER}.weight") for key in payload):
        payload = {"state_dict": payload}  # the bare state_dict, as some copies of the weights come
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        found = sorted(map(str, payload)) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not a reference checkpoint (a dict with a 'state_dict'); found {found}")
    state = _plain_keys(payload["state_dict"])
    if state and all(key.startswith("module.") for key in state):  # saved from nn.DataParallel
        state = {key[len("module."):]: value for key, value in state.items()}
    classifier = {key: state.pop(f"{_CLASSIFIER}.{key}", None) for key in ("weight", "bias")}
    if classifier["weight"] is None or classifier["bias"] is None:
        raise CheckpointError(f"{path}: no {_CLASSIFIER}.weight and .bias (the reference's classifier); "
                              f"is it a checkpoint of the ResNet-101 reference implementation?")
    trunk = {}
    for key, value in state.items():
        top, _, rest = key.partition(".")
        if top not in _TRUNK_INDEX or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: unexpected entry {key!r} for the reference's ResNet-101 "
                                  f"(conv1_custom, bn1, layer1-4, fc_custom)")
        trunk[f"{_TRUNK_INDEX[top]}.{rest}"] = value
    _check_trunk(path, trunk, in_channels, net)
    weight, bias = classifier["weight"], classifier["bias"]
    if weight.dim() != 2 or bias.shape != weight.shape[:1] or weight.shape[1] != REFERENCE_FEATURES:
        raise CheckpointError(f"{path}: {_CLASSIFIER} is {tuple(weight.shape)} + {tuple(bias.shape)}, expected "
                              f"(K, {REFERENCE_FEATURES}) + (K,)")
    epoch, best = payload.get("epoch"), payload.get("best_prec1")
    return ReferenceTower(path, trunk, weight.float(), bias.float(),
                          int(epoch) if isinstance(epoch, (int, float)) else None,
                          float(best) if isinstance(best, (int, float)) else None)


def _plain_keys(state: dict) -> dict:
    """Keys as str: a Python 2 pickle's byte strings may arrive as bytes."""
    return {key.decode("latin-1") if isinstance(key, bytes) else str(key): value for key, value in state.items()}


def _expected_trunk(in_channels: int) -> dict:
    """build_backbone's ResNet-101 state_dict on the meta device: names and shapes, no memory."""
    with torch.device("meta"):
        trunk, _ = build_backbone(REFERENCE_BACKBONE, in_channels)
    return trunk.state_dict()


def _check_trunk(path: Path, trunk: dict, in_channels: int, net: str) -> None:
    """Every tensor of the ResNet-101 trunk present once, with its shape. BatchNorm's
    num_batches_tracked (PyTorch >= 0.4.1) is filled with 0 when a 0.3-era file lacks it: it
    only counts training steps and no layer here uses it."""
    conv = trunk.get("0.weight")
    if conv is not None and conv.dim() == 4 and conv.shape[1] != in_channels:
        other = {3: "spatial (RGB)", 2 * REFERENCE_STACK: "motion (flow)"}.get(int(conv.shape[1]), "another")
        raise CheckpointError(f"{path}: conv1_custom takes {conv.shape[1]} input channels, the {net} net takes "
                              f"{in_channels}: this is the {other} net's checkpoint")
    expected = _expected_trunk(in_channels)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in trunk:
            trunk[key] = torch.zeros((), dtype=value.dtype)
    problems = tensor_problems(trunk, expected, _reference_name)
    if problems:
        raise CheckpointError(f"{path}: not the reference's ResNet-101 {net} net: " + "; ".join(problems))
    for key, value in expected.items():
        if value.dtype.is_floating_point:
            trunk[key] = trunk[key].float()


def _reference_name(key: str) -> str:
    """Our trunk key ("4.0.conv1.weight") back to the reference's ("layer1.0.conv1.weight")."""
    index, _, rest = key.partition(".")
    names = {str(i): name for name, i in _TRUNK_INDEX.items()}
    return f"{names.get(index, index)}.{rest}"


def reference_contract(classes: tuple[str, ...], *, flow_method: str = "tvl1", flow_bound: float = REFERENCE_FLOW_BOUND,
                       num_segments: int = 5, stride: int = 3, flow_frame_size: tuple[int, int] | None = None,
                       extra: dict | None = None) -> ModelContract:
    """The contract of the imported model: the reference's input (module docstring); the
    window (T segments tau frames apart, averaged as its test averages 19 frames) is the live
    runtime's choice, not the reference's. ``flow_frame_size``: (H, W) of the frames its flow
    JPEGs were extracted from (the checkpoints do not record it): live flow then runs there and
    is resized to 224 x 224 with its values kept, as its loader resized the JPEGs."""
    return ModelContract(classes=classes, backbone=REFERENCE_BACKBONE, fusion="late", input_size=REFERENCE_SIZE,
                         flow_method=flow_method, flow_bound=flow_bound, stack_length=REFERENCE_STACK,
                         flow_stack_order="oldest-last", flow_scaling="unit", num_segments=num_segments,
                         stride=stride, train_fps=REFERENCE_FPS, flow_frame_size=flow_frame_size, extra=extra or {})


def import_reference(spatial: str | Path, motion: str | Path, classes: tuple[str, ...], **contract_options) -> TwoStreamNet:
    """Both reference checkpoints -> this project's late-fusion ResNet-101 (eval mode), its
    contract from reference_contract(classes, **contract_options). CheckpointError when a file
    is unreadable, refused, not the net it should be, or its class count is not len(classes)."""
    towers = {"spatial": read_reference(spatial, 3, "spatial"),
              "temporal": read_reference(motion, 2 * REFERENCE_STACK, "motion")}
    for tower in towers.values():
        if tower.num_classes != len(classes):
            raise CheckpointError(f"{tower.path}: its classifier has {tower.num_classes} classes, the class list "
                                  f"has {len(classes)}")
    provenance = {name: {"file": tower.path.name, "epoch": tower.epoch, "best_prec1": tower.best_prec1}
                  for name, tower in towers.items()}
    contract = reference_contract(tuple(classes), extra={"imported_from": "resnet101-twostream reference",
                                                         "towers": provenance}, **contract_options)
    model = TwoStreamNet(contract)
    state = model.state_dict()
    filled = set()
    for name, tower in towers.items():
        for key, value in tower.trunk.items():
            state[f"{name}_tower.trunk.{key}"] = value
            filled.add(f"{name}_tower.trunk.{key}")
        for part, value in (("weight", tower.fc_weight), ("bias", tower.fc_bias)):
            state[f"head.{name}_fc.{part}"] = value
            filled.add(f"head.{name}_fc.{part}")
    # The towers' normalisation buffers come from the contract; nothing else may stay random.
    unfilled = [key for key in state if key not in filled and not key.endswith((".mean", ".inv_std"))]
    if unfilled:
        raise CheckpointError(f"the late-fusion ResNet-101 has tensors the reference does not fill: {unfilled[:3]}")
    model.load_state_dict(state)
    return model.eval()
