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

import codecs
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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
    payload = load_untrusted(path, "model checkpoint",
                             "not a model checkpoint of this project ({looks}); model checkpoints are written by train.py")
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


def load_untrusted(path: Path, what: str, foreign: str) -> object:
    """torch.load(weights_only=True): tensors, storages, OrderedDict and plain data only (torch's
    own allow-list), so no pickled code runs, whoever wrote the file. Every failure is one
    CheckpointError naming ``path``: "{path} is not a readable {what} (...)", or, for a file that
    is neither a zip archive nor a pickle, "{path} is " + ``foreign`` with {looks} filled in."""
    kind = _container(path, foreign)
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of files it then refuses anyway
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises many types (IndexError on garbage)
        raise CheckpointError(f"{path} is not a readable {what} ({kind}; {_load_failure(exc)})") from exc


def _container(path: Path, foreign: str) -> str:
    """What kind of file torch.load would get, from its first bytes: "a zip archive" (what
    torch.save writes) or "a pickle" (its legacy format, also PyTorch 0.x's); anything else is
    refused here, before torch sees it, with a CheckpointError that says what the file looks
    like (``foreign``, see load_untrusted)."""
    try:
        with path.open("rb") as file:
            head = file.read(4096)
    except OSError as exc:
        raise CheckpointError(f"cannot read the model file {path}: {exc.strerror or exc}") from exc
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if head[:1] == b"\x80":  # the PROTO opcode every pickle of protocol 2 or later starts with
        return "a pickle"
    if not head:
        looks = "an empty file"
    elif _is_text(head):
        looks = "a text file"
    else:
        looks = "binary data, neither a zip archive nor a pickle"
    raise CheckpointError(f"{path} is " + foreign.format(looks=looks))


def _is_text(head: bytes) -> bool:
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head)  # a character cut at the end is fine
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def _load_failure(exc: Exception) -> str:
    """What went wrong in torch.load, in a few words. Never torch's own advice, which is to
    load again with weights_only=False: that runs whatever code an untrusted file holds."""
    text = " ".join(str(exc).split())
    # "Unsupported global: GLOBAL x.y" for a name off the allow-list; "unsupported GLOBAL x.y whose
    # module x is blocked" for modules torch blocks outright (os, posix, subprocess, ...).
    named = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
    if named:
        return (f"it holds a {named.group(1)} object, not only tensors and plain data; refused, as "
                "loading it could run code")
    reason = re.search(r"WeightsUnpickler error: (.+?)(?: Check the documentation|$)", text)
    if reason:  # the safe unpickler met an instruction it does not run: a foreign or cut pickle
        return f"truncated, corrupt or not written by torch.save: {reason.group(1).rstrip('. ')}"
    if "weights_only" in text or not text:
        return f"truncated or corrupt: {type(exc).__name__}"
    # PytorchStreamReader's messages: the first sentence says it, the rest is general advice.
    return f"truncated or corrupt: {text.split('. ')[0][:160]}"


def tensor_problems(found: dict, expected: dict, name: Callable[[str], str] = str) -> list[str]:
    """What keeps the tensors ``found`` from loading strictly where a module's state_dict
    ``expected`` has its own: missing, unexpected and misshaped ones, each kind counted with its
    first (``name`` spells a key as the user knows it). Empty when they load."""
    missing = [key for key in expected if key not in found]
    extra = [key for key in found if key not in expected]
    shapes = [f"{key}: file {tuple(found[key].shape)}, expected {tuple(value.shape)}"
              for key, value in expected.items() if key in found and tuple(found[key].shape) != tuple(value.shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing (first: {name(missing[0])})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensors (first: {name(extra[0])})")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches (first: {name(shapes[0])})")
    return problems


def build_model(checkpoint: Checkpoint) -> TwoStreamNet:
    """Instantiate the network its contract describes and load the weights strictly."""
    model = TwoStreamNet(checkpoint.contract)
    problems = tensor_problems(checkpoint.state_dict, model.state_dict())
    if problems:
        raise CheckpointError("checkpoint does not match the model code: " + "; ".join(problems))
    model.load_state_dict(checkpoint.state_dict)
    return model.eval()


def load_model(path: str | Path) -> tuple[TwoStreamNet, Checkpoint]:
    """Read, validate and build: the one call the runtime and tools use."""
    checkpoint = read_checkpoint(path)
    try:
        return build_model(checkpoint), checkpoint
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
