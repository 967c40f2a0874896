"""Engine directories: the three built parts plus ``engine.json``, written atomically, and
opened only when they match this machine.

    DIR/engine.json     {"format": "twostream-engine", "version": 1, "backend", "precision",
                         "parts": {"spatial": {"file", "precision"}, "temporal": ..., "head": ...},
                         "contract": ModelContract.to_dict(), "tools": {package: version},
                         "tensorrt": {"version", "gpu", "compute_capability"} (TensorRT only),
                         "calibration": str | null, "parity": ParityReport.to_dict() | null}
    DIR/spatial.*       .onnx (ONNX Runtime), .xml + .bin (OpenVINO IR), .plan (TensorRT)
    DIR/temporal.*, DIR/head.*

ONNX parts also carry the contract in their own metadata; opening checks that both agree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterator

from engines.onnx_parts import PARTS, PartFiles, read_info
from engines.table import ENGINE_BACKENDS
from twostream.contract import ModelContract
from twostream.errors import ContractMismatch, EngineError

ENGINE_FORMAT = "twostream-engine"
ENGINE_VERSION = 1
ENGINE_JSON = "engine.json"
_TOOL_PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "openvino", "onnxconverter-common",
                  "opencv-contrib-python-headless", "tensorrt", "tensorrt-cu12", "tensorrt-cu13")


@dataclass(frozen=True)
class TensorRTTarget:
    """What a TensorRT plan is tied to: plans run only on the TensorRT version and GPU model
    (compute capability) they were built with."""

    version: str
    gpu: str
    compute_capability: str


@dataclass(frozen=True)
class EnginePart:
    file: str  # name inside the engine directory
    precision: str  # fp32, fp16 or int8: a part may stay fp32 when quantising it cost accuracy


@dataclass(frozen=True)
class EngineInfo:
    contract: ModelContract
    backend: str
    precision: str
    spatial: EnginePart
    temporal: EnginePart
    head: EnginePart
    tools: dict = field(default_factory=dict)  # package -> version, as built
    tensorrt: TensorRTTarget | None = None
    calibration: str | None = None
    parity: dict | None = None

    def files(self, root: Path) -> PartFiles:
        return PartFiles(root / self.spatial.file, root / self.temporal.file, root / self.head.file)

    def to_dict(self) -> dict:
        parts = {name: {"file": p.file, "precision": p.precision}
                 for name, p in (("spatial", self.spatial), ("temporal", self.temporal), ("head", self.head))}
        return {"format": ENGINE_FORMAT, "version": ENGINE_VERSION, "backend": self.backend,
                "precision": self.precision, "parts": parts, "contract": self.contract.to_dict(),
                "tools": dict(self.tools),
                "tensorrt": None if self.tensorrt is None else vars(self.tensorrt).copy(),
                "calibration": self.calibration, "parity": self.parity}

    @classmethod
    def from_dict(cls, data: dict, where: Path) -> "EngineInfo":
        if not isinstance(data, dict) or data.get("format") != ENGINE_FORMAT:
            raise EngineError(f"{where}: not a two-stream engine description (no '{ENGINE_FORMAT}' format)")
        if data.get("version") != ENGINE_VERSION:
            raise EngineError(f"{where}: engine format version {data.get('version')}, this code reads {ENGINE_VERSION}")
        if data.get("backend") not in ENGINE_BACKENDS:
            raise EngineError(f"{where}: unknown backend {data.get('backend')!r}")
        try:
            parts = {name: EnginePart(str(data["parts"][name]["file"]), str(data["parts"][name]["precision"]))
                     for name in ("spatial", "temporal", "head")}
            target = data.get("tensorrt")
            return cls(contract=ModelContract.from_dict(data["contract"]), backend=data["backend"],
                       precision=str(data["precision"]), **parts, tools=dict(data.get("tools") or {}),
                       tensorrt=None if target is None else TensorRTTarget(**target),
                       calibration=data.get("calibration"), parity=data.get("parity"))
        except ContractMismatch as exc:
            raise ContractMismatch(f"{where}: {exc}") from exc
        except (KeyError, TypeError) as exc:
            raise EngineError(f"{where}: incomplete engine description ({type(exc).__name__}: {exc})") from exc


def tool_versions() -> dict:
    """Versions of the installed packages that take part in a build (absent ones left out)."""
    versions = {"python": sys.version.split()[0]}
    for package in _TOOL_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions


@contextlib.contextmanager
def staged_output(out: Path, replace: bool = True) -> Iterator[Path]:
    """Build into a fresh folder next to ``out`` and move it into place only when the body
    finishes; on any error the folder is removed, so nothing half-written is left behind.
    An existing engine directory at ``out`` is replaced; any other existing folder is refused.
    ``replace=False`` keeps an engine directory that appeared at ``out`` meanwhile (another
    process built the same thing first) and drops this one."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and ((out / ENGINE_JSON).is_file() or not any(out.iterdir()))):
        raise EngineError(f"refusing to replace {out}: it exists and is not an engine directory")
    # A plain mkdir with a unique name rather than mkdtemp: mkdtemp makes the folder private
    # (0700), and the finished engine should get the user's usual permissions.
    staging = out.parent / f".{out.name}.building-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as exc:
        raise EngineError(f"cannot write the engine to {out}: {exc.strerror or exc}") from exc
    try:
        yield staging
        if replace:
            _swap_in(staging, out)
        else:
            _move_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, out: Path) -> None:
    """Rename the finished folder onto ``out`` (renames are atomic within one filesystem)."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rename(out, old / "engine")
    os.rename(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _move_in(staging: Path, out: Path) -> None:
    """Rename the finished folder onto ``out`` unless an engine directory is already there
    (a rename onto a non-empty folder fails, atomically: the first one in wins)."""
    try:
        os.rename(staging, out)
    except OSError as exc:
        if not is_engine_dir(out):
            raise EngineError(f"cannot move the engine into {out}: {exc.strerror or exc}") from exc
        shutil.rmtree(staging, ignore_errors=True)


def write_info(directory: Path, info: EngineInfo) -> None:
    (directory / ENGINE_JSON).write_text(json.dumps(info.to_dict(), indent=2) + "\n")


def is_engine_dir(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / ENGINE_JSON).is_file()


def read_engine(directory: str | Path) -> EngineInfo:
    """Read and check an engine directory: description, part files, and (ONNX parts) that each
    file carries the same contract as the description. EngineError/ContractMismatch otherwise."""
    directory = Path(directory)
    described = directory / ENGINE_JSON
    if not described.is_file():
        raise EngineError(f"{directory} is not an engine directory (no {ENGINE_JSON}); build one with build_engine.py")
    try:
        data = json.loads(described.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EngineError(f"{described}: unreadable engine description: {exc}") from exc
    info = EngineInfo.from_dict(data, described)
    files = info.files(directory)
    for part in PARTS:
        path = files.of(part)
        if not path.is_file():
            raise EngineError(f"{directory}: the {part.name} part ({path.name}) is missing")
        if path.suffix == ".onnx":
            carried = read_info(path).contract
            if carried != info.contract:
                raise ContractMismatch(f"engine directory {directory}: {ENGINE_JSON} says "
                                       f"{_differences(info.contract, carried, path.name)} ({ENGINE_JSON} edited, "
                                       "or parts of another build?); rebuild with build_engine.py")
    return info


def _differences(described: ModelContract, carried: ModelContract, part: str) -> str:
    """'num_segments 3, head.onnx carries 5; ...' for each compared field that differs."""
    said = []
    for item in dataclasses.fields(ModelContract):
        mine, theirs = getattr(described, item.name), getattr(carried, item.name)
        if not item.compare or mine == theirs:
            continue
        name = item.name
        if isinstance(mine, tuple) and isinstance(theirs, tuple) and max(len(mine), len(theirs)) > 4:
            if len(mine) != len(theirs):  # the class list: its length says it
                mine, theirs = f"[{len(mine)} names]", f"[{len(theirs)} names]"
            else:
                index = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b)
                name, mine, theirs = f"{name}[{index}]", repr(mine[index]), repr(theirs[index])
        else:
            mine, theirs = (list(v) if isinstance(v, tuple) else repr(v) for v in (mine, theirs))
        said.append(f"{name} {mine}, {part} carries {theirs}")
    return "; ".join(said)


def check_expected_contract(contract: ModelContract, expected: ModelContract | None, where: Path) -> None:
    """Refuse a model or engine built for another contract than the one the caller expects."""
    if expected is None or expected == contract:
        return
    diffs = [f"{k}: {v!r} vs expected {getattr(expected, k)!r}" for k, v in vars(contract).items()
             if k != "extra" and getattr(expected, k) != v]
    raise ContractMismatch(f"{where} was built for a different model contract ({'; '.join(diffs[:3])})")
