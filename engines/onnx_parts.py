"""The three part files of an exported model and the metadata each ONNX file carries.

    spatial   rgb (N, 3, H, W) float32 0..255              -> features (N, C, h, w) float32
    temporal  flow (N, 2L, H, W) float32 0..255            -> features (N, C, h, w) float32
    head      spatial_features, temporal_features
              (N, T, C, h, w) float32 each                 -> logits (N, K) float32

Every ONNX part carries the model's preprocessing contract, its part name and its precision in
its ``metadata_props``; backends read them when they open a file (building/export.py writes them).
Every backend also checks, on open, that the shapes its three files declare fit the contract it
was given (``check_part_shapes``): an edited engine.json, or parts of different builds, is one
EngineError naming the field and both values, never an IndexError in the middle of a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from twostream.contract import ModelContract
from twostream.errors import ContractMismatch, EngineError

META_CONTRACT = "twostream.contract"
META_PART = "twostream.part"
META_PRECISION = "twostream.precision"


@dataclass(frozen=True)
class PartSpec:
    """One exported part: its name (also its file stem) and its tensor names."""

    name: str
    inputs: tuple[str, ...]
    output: str


SPATIAL = PartSpec("spatial", ("rgb",), "features")
TEMPORAL = PartSpec("temporal", ("flow",), "features")
HEAD = PartSpec("head", ("spatial_features", "temporal_features"), "logits")
PARTS = (SPATIAL, TEMPORAL, HEAD)


@dataclass(frozen=True)
class PartFiles:
    """The three files of one exported model (ONNX, OpenVINO IR .xml or TensorRT plans)."""

    spatial: Path
    temporal: Path
    head: Path

    def of(self, part: PartSpec) -> Path:
        return getattr(self, part.name)

    def as_tuple(self) -> tuple[Path, Path, Path]:
        return (self.spatial, self.temporal, self.head)


@dataclass(frozen=True)
class OnnxInfo:
    """What an exported file says about itself (its metadata_props)."""

    contract: ModelContract
    part: str
    precision: str


def tag(path: Path, contract: ModelContract, part: str, precision: str) -> None:
    """Write the contract, the part name and the precision into the file's metadata_props."""
    proto = onnx.load(str(path))
    values = {META_CONTRACT: contract.to_json(), META_PART: part, META_PRECISION: precision}
    kept = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "twostream"
    onnx.save(proto, str(path))


def unreadable_onnx(path: Path) -> EngineError:
    """The error for a part file that does not parse as ONNX: protobuf cannot say how much is
    missing, so the message gives the size there is."""
    try:
        size = f"{path.stat().st_size} bytes"
    except OSError as exc:
        size = exc.strerror or "unreadable"
    return EngineError(f"{path} ({size}) is not a readable ONNX model: truncated or corrupt; "
                       "rebuild with build_engine.py")


def load_part(path: Path) -> onnx.ModelProto:
    """The parsed file (weights included: parts keep no external data); EngineError if it
    does not parse."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise unreadable_onnx(path) from exc


def read_info(path: Path) -> OnnxInfo:
    """The contract, part and precision an exported file carries; ContractMismatch if absent."""
    proto = load_part(path)
    props = {p.key: p.value for p in proto.metadata_props}
    if META_CONTRACT not in props:
        raise ContractMismatch(f"{path}: no model contract in its ONNX metadata (not exported by this code?)")
    return OnnxInfo(ModelContract.from_json(props[META_CONTRACT]), props.get(META_PART, "?"),
                    props.get(META_PRECISION, "?"))


Shape = tuple[int | None, ...]  # None: an axis the file leaves free (the batch axis)


@dataclass(frozen=True)
class PartShape:
    """The shapes one opened part file declares, batch axis first: its inputs (in
    ``PartSpec.inputs`` order) and its output."""

    path: Path
    inputs: tuple[Shape, ...]
    output: Shape


def _contradicts(want: Shape, got: Shape) -> bool:
    """Whether declared sizes (None: free) contradict the wanted ones."""
    return len(want) != len(got) or any(None not in (w, g) and w != g for w, g in zip(want, got))


def check_part_shapes(contract: ModelContract, input_size: tuple[int, int],
                      spatial: PartShape, temporal: PartShape, head: PartShape) -> None:
    """Refuse part files whose declared shapes do not fit ``contract``, or the frames the runner
    will be fed (``input_size``, (H, W)): one EngineError naming the folder, each field and both
    values. Shapes as in the module docstring; the files fix every axis but the batch, so this
    finds on open what running them would show only as an empty or misshaped output."""
    folder = spatial.path.parent
    for part, shape, channels in ((SPATIAL, spatial, 3), (TEMPORAL, temporal, None), (HEAD, head, None)):
        ranks = (5, 5) if part == HEAD else (4,)
        if (tuple(len(s) for s in shape.inputs) != ranks or len(shape.output) != (2 if part == HEAD else 4)
                or _contradicts((None, channels), shape.inputs[0][:2])):
            raise EngineError(f"{shape.path}: not a {part.name} part (inputs {list(shape.inputs)}, output "
                              f"{list(shape.output)}); rebuild with build_engine.py")
    found = {}  # field -> (the contract's value, the first file that differs, its value)
    for shape in (spatial, temporal):
        if _contradicts(contract.input_size, shape.inputs[0][2:]):
            found.setdefault("input_size", (list(contract.input_size), shape.path.name, list(shape.inputs[0][2:])))
    channels = temporal.inputs[0][1]
    if channels is not None and channels != contract.flow_channels:
        found["stack_length"] = (f"{contract.stack_length} ({contract.flow_channels} flow channels)",
                                 temporal.path.name, f"{channels / 2:g} ({channels} flow channels)")
    segments = {features[1] for features in head.inputs} - {None, contract.num_segments}
    if segments:
        found["num_segments"] = (contract.num_segments, head.path.name, min(segments))
    classes = head.output[1]
    if classes is not None and classes != contract.num_classes:
        found["classes"] = (f"[{contract.num_classes} names]", head.path.name, f"{classes} outputs")
    if found:
        said = "; ".join(f"{field} {want}, {name} has {got}" for field, (want, name, got) in found.items())
        raise EngineError(f"engine directory {folder}: the contract says {said} (engine.json edited, or parts "
                          "of another build?); rebuild with build_engine.py")
    # Each tower's features are what the head takes as that tower's input (spatial first): the
    # two shapes differ when the temporal tower has a backbone of its own (late fusions).
    for tower, features in zip((spatial, temporal), head.inputs):
        if _contradicts(tower.output[1:], features[2:]):
            raise EngineError(f"engine directory {folder}: {tower.path.name} gives features "
                              f"{list(tower.output[1:])}, {head.path.name} takes {list(features[2:])} "
                              "(parts of different builds?); rebuild with build_engine.py")
    if tuple(input_size) != tuple(contract.input_size):
        raise EngineError(f"engine directory {folder} takes {list(contract.input_size)} frames only (its "
                          f"input_size), not {list(input_size)}: build an engine for that size")
