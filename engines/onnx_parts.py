"""The three part files of an exported model and the metadata each ONNX file carries.

    spatial   rgb (N, 3, H, W) float32 0..255              -> features (N, C, h, w) float32
    temporal  flow (N, 2L, H, W) float32 0..255            -> features (N, C, h, w) float32
    head      spatial_features, temporal_features
              (N, T, C, h, w) float32 each                 -> logits (N, K) float32

Every ONNX part carries the model's preprocessing contract, its part name and its precision in
its ``metadata_props``; backends read them when they open a file (building/export.py writes them).
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


def read_info(path: Path) -> OnnxInfo:
    """The contract, part and precision an exported file carries; ContractMismatch if absent."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise EngineError(f"{path}: not a readable ONNX file: {exc}") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if META_CONTRACT not in props:
        raise ContractMismatch(f"{path}: no model contract in its ONNX metadata (not exported by this code?)")
    return OnnxInfo(ModelContract.from_json(props[META_CONTRACT]), props.get(META_PART, "?"),
                    props.get(META_PRECISION, "?"))
