"""Preprocessed training clips kept on disk (``train.py fit --flow-cache DIR``), so flow that
took long to compute (TV-L1) is computed once for every run that trains on the same clips.

An entry is what twostream.preprocess.preprocess_clip made of one clip: rgb (F, 3, H, W) and
flow (F, 2, H, W), uint8, in an uncompressed .npz (compressing it would cost more time in the
process that feeds the GPU than the read saves). Its name is a hash of

  - the clip: its BGR frames (F, h, w, 3), bytes and shape. Content, not a name: a generated
    clip, a real file's augmented clip or a folder's video is the same entry whenever it has the
    same frames, whatever produced them, and a changed generator never reuses old flow;
  - the flow: every field of the FlowSpec that changes the result (method, size, bound,
    compensation, the TV-L1 parameters: a changed preset is another entry), but not
    ``device``, which decides where flow runs, not what it is (as in the contract);
  - ``VERSION``, to bump when the flow code changes what it computes for the same spec.

The entry also records the spec it was made with, and a load compares it. Entries are written to
a temporary file and renamed (os.replace), so rendering workers writing at once, or a run killed
mid-write, never leave a half-written entry under an entry's name; one that cannot be read
anyway (a truncated copy, a foreign file) is recomputed and rewritten, with a warning line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from twostream.preprocess import FlowSpec

logger = logging.getLogger(__name__)

VERSION = 1


def spec_record(spec: FlowSpec) -> str:
    """The spec as the cache keys it: JSON of every field but ``device`` (nested TV-L1
    parameters included), so a field added to FlowSpec later is part of the key unasked.
    ``direction`` only when not "forward", ``frame_size`` only when set: entries made before
    they existed stay valid."""
    fields = {k: v for k, v in dataclasses.asdict(spec).items()
              if k != "device" and not (k == "direction" and v == "forward") and not (k == "frame_size" and v is None)}
    return json.dumps(fields, sort_keys=True)


@dataclass(frozen=True)
class FlowCache:
    """Entries under ``root``, two hex digits of fan-out (root/ab/abcdef....npz)."""

    root: Path

    def key(self, frames: np.ndarray, spec: FlowSpec) -> str:
        """The entry name of BGR ``frames`` (F, h, w, 3) uint8 preprocessed with ``spec``."""
        frames = np.ascontiguousarray(frames)
        digest = hashlib.blake2b(digest_size=20)
        digest.update(f"twostream-flow-cache {VERSION} {spec_record(spec)} {frames.dtype} {frames.shape}".encode())
        digest.update(memoryview(frames).cast("B"))
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return Path(self.root) / key[:2] / f"{key}.npz"

    def load(self, key: str, spec: FlowSpec, frames: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(rgb (F, 3, H, W), flow (F, C, H, W), C = spec.channels) of entry ``key``, or None when there is none.
        An entry that cannot be read, or does not hold what ``spec`` and ``frames`` frames make,
        is logged as one warning line and treated as absent (the caller recomputes it)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                rgb, flow, made_with = entry["rgb"], entry["flow"], str(entry["spec"])
        except Exception as exc:  # noqa: BLE001 - zipfile, numpy and OS errors of a damaged file
            reason = f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        else:
            reason = _mismatch(rgb, flow, made_with, spec, frames)
            if reason is None:
                return rgb, flow
        logger.warning(f"flow cache: {path} is {reason}; recomputing it")
        return None

    def store(self, key: str, spec: FlowSpec, rgb: np.ndarray, flow: np.ndarray) -> None:
        """Write entry ``key`` atomically (temporary file in the same folder, then rename)."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                np.savez(file, rgb=rgb, flow=flow, spec=np.array(spec_record(spec)))
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a cache folder may be shared
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _mismatch(rgb: np.ndarray, flow: np.ndarray, made_with: str, spec: FlowSpec, frames: int) -> str | None:
    """Why an entry that loaded is not the one asked for, or None when it is."""
    if made_with != spec_record(spec):
        return f"for another flow spec ({made_with})"
    height, width = spec.size
    want_rgb, want_flow = (frames, 3, height, width), (frames, spec.channels, height, width)
    if rgb.dtype != np.uint8 or flow.dtype != np.uint8 or rgb.shape != want_rgb or flow.shape != want_flow:
        return (f"malformed: rgb {rgb.dtype} {rgb.shape}, flow {flow.dtype} {flow.shape}; expected uint8 "
                f"{want_rgb} and {want_flow}")
    return None
