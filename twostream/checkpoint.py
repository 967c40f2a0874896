"""Model files: weights plus the preprocessing contract, loaded with weights_only=True.

Layout (a torch.save'd dict of plain types and tensors, so no pickled code runs on load):
    format: "twostream-checkpoint", version: 1,
    contract: ModelContract.to_dict(), state_dict: {name: tensor},
    metrics: {...} (optional, held-out accuracy), train_state: {...} (optional, for resume)

train_state (twostream.training.Progress) of a run between epochs: stage, epoch, and for an
exact resume the stage's optimizer and LR scheduler state_dicts and torch's RNG state (uint8);
a finished model keeps only {"stage": "done", "epoch": 0}, so the shipped file stays small.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from twostream.contract import ModelContract
from twostream.errors import CheckpointError, ContractMismatch
from twostream.model import TwoStreamNet

FORMAT = "twostream-checkpoint"
VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    contract: ModelContract
    state_dict: dict
    metrics: dict = field(default_factory=dict)
    train_state: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: TwoStreamNet, metrics: dict | None = None,
                    train_state: dict | None = None) -> None:
    """Write atomically (temp file + rename): a crash never leaves a truncated model file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "contract": model.contract.to_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "metrics": _plain(metrics or {}),
        "train_state": train_state or {},
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a model file is meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _plain(data: dict) -> dict:
    """JSON-plain copy (numpy scalars -> float): weights_only loading refuses other types."""
    return json.loads(json.dumps(data, default=float))


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a model file; every failure is one CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many types (IndexError on garbage)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable model file (corrupt or truncated?): {first}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a two-stream checkpoint (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {payload.get('version')} but this code reads {VERSION}")
    try:
        contract = ModelContract.from_dict(payload.get("contract"))
    except ContractMismatch as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: checkpoint has no state_dict")
    train_state = payload.get("train_state") or {}
    if not isinstance(train_state, dict):
        raise CheckpointError(f"{path}: checkpoint train_state is a {type(train_state).__name__}, not a dict")
    return Checkpoint(contract, state, payload.get("metrics") or {}, train_state)


def build_model(checkpoint: Checkpoint) -> TwoStreamNet:
    """Instantiate the network its contract describes and load the weights strictly."""
    model = TwoStreamNet(checkpoint.contract)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(checkpoint.state_dict))
    unexpected = sorted(set(checkpoint.state_dict) - set(expected))
    shapes = [f"{k}: file {tuple(checkpoint.state_dict[k].shape)} vs code {tuple(v.shape)}"
              for k, v in expected.items()
              if k in checkpoint.state_dict and tuple(checkpoint.state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing tensors (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (first: {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (first: {shapes[0]})")
        raise CheckpointError("checkpoint does not match the model code: " + "; ".join(parts))
    model.load_state_dict(checkpoint.state_dict)
    return model.eval()


def load_model(path: str | Path) -> tuple[TwoStreamNet, Checkpoint]:
    """Read, validate and build: the one call the runtime and tools use."""
    checkpoint = read_checkpoint(path)
    try:
        return build_model(checkpoint), checkpoint
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
