"""Preprocessed dataset videos kept on disk and read memory-mapped, so that a split larger than
memory trains and evaluates (UCF101's split 1 train list at 224x224 is about 440 GiB of uint8
frames and flow; at 112x112 about 110 GiB).

``train.py fit/evaluate --dataset ... --flow-cache DIR`` keeps each video of the split under
DIR/videos/ once preprocessed: rgb (F, 3, H, W) and flow (F, 2, H, W) uint8 as two .npy files,
exactly what twostream.preprocess.preprocess_clip (or datasets.read_jpeg_clip) made. Clips then
hold np.memmap arrays: training reads the pages its batches touch, the operating system keeps
what fits in its page cache, and forked loader workers share the same mappings.

An entry's name is a hash of where the video came from (its file's absolute path, size and
modification time, or its JPEG folders and their frame count) and of everything that changes
the arrays (the FlowSpec record of twostream.flowcache, and for pre-extracted JPEGs the contract
fields that read them), so a changed video or another flow setting is another entry. The two
files are written under temporary names and renamed, rgb last: an entry whose rgb file exists
is whole; one that cannot be opened or does not hold what was asked is rebuilt, with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from twostream.data import Clip
from twostream.errors import DataError
from twostream.flowcache import spec_record
from twostream.preprocess import FlowSpec

logger = logging.getLogger(__name__)

VERSION = 1


@dataclass(frozen=True)
class ClipStore:
    """Entries under ``root``, two hex digits of fan-out (root/ab/<key>.rgb.npy, .flow.npy)."""

    root: Path

    def key(self, origin: str, spec: FlowSpec) -> str:
        """The entry name of the video ``origin`` describes (video_origin, jpeg_origin),
        preprocessed with ``spec``."""
        text = f"twostream-clip-store {VERSION} {origin} {spec_record(spec)}"
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()

    def paths(self, key: str) -> tuple[Path, Path]:
        folder = Path(self.root) / key[:2]
        return folder / f"{key}.rgb.npy", folder / f"{key}.flow.npy"

    def has(self, key: str) -> bool:
        return self.paths(key)[0].is_file()

    def open(self, key: str, size: tuple[int, int], channels: int = 2) -> tuple[np.ndarray, np.ndarray] | None:
        """(rgb (F, 3, H, W), flow (F, C, H, W)) of entry ``key`` as read-only memory maps, or
        None when it is absent, unreadable or not of frames of ``size`` (H, W) with fields of
        ``channels`` C (preprocess.field_channels) (one warning line: the caller rebuilds it)."""
        rgb_path, flow_path = self.paths(key)
        if not rgb_path.is_file():
            return None
        try:
            rgb, flow = np.load(rgb_path, mmap_mode="r"), np.load(flow_path, mmap_mode="r")
        except Exception as exc:  # noqa: BLE001 - numpy and OS errors of a damaged or foreign file
            reason = f"unreadable: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        else:
            height, width = size
            if (rgb.dtype == np.uint8 and flow.dtype == np.uint8 and rgb.shape[1:] == (3, height, width)
                    and flow.shape == (len(rgb), channels, height, width)):
                return rgb, flow
            reason = f"malformed: rgb {rgb.dtype} {rgb.shape}, flow {flow.dtype} {flow.shape}"
        logger.warning(f"clip store: {rgb_path} is {reason}; rebuilding it")
        return None

    def put(self, key: str, rgb: np.ndarray, flow: np.ndarray) -> None:
        """Write entry ``key``: each file to a temporary name then renamed, flow first, rgb last
        (open() takes an entry with an rgb file as whole)."""
        rgb_path, flow_path = self.paths(key)
        rgb_path.parent.mkdir(parents=True, exist_ok=True)
        for path, array in ((flow_path, flow), (rgb_path, rgb)):
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    np.save(file, np.ascontiguousarray(array))
                os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; a store may be shared
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)


def video_origin(path: Path) -> str:
    """A video file as an entry name sees it: absolute path, size, modification time (a file
    replaced or re-encoded gets a new entry)."""
    stat = Path(path).stat()
    return f"video {Path(path).resolve()} {stat.st_size} {stat.st_mtime_ns}"


def jpeg_origin(rgb_dir: Path, flow_dirs: tuple[Path, Path], contract_fields: str) -> str:
    """A pre-extracted video's folders, their JPEG counts, and the contract fields that read them
    (input size, flow source, compensation, bound: datasets.read_jpeg_clip uses no FlowSpec)."""
    counts = [len(list(Path(d).glob("frame*.jpg"))) for d in (rgb_dir, *flow_dirs)]
    return f"jpegs {Path(rgb_dir).resolve()} {counts} {contract_fields}"


def check_disk(store: ClipStore, frames: int, size: tuple[int, int], channels: int = 2) -> int:
    """Bytes ``frames`` new frames take in ``store`` (uint8 rgb and flow, 3 + ``channels`` planes
    of (H, W) each); DataError when the disk under it has less free space."""
    height, width = size
    needed = frames * (3 + channels) * height * width
    Path(store.root).mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(store.root).free
    if needed > free:
        raise DataError(f"clip store {store.root}: {frames} new frames need {needed / 2**30:.1f} GiB at "
                        f"{height}x{width}, but only {free / 2**30:.1f} GiB is free there: "
                        "give --flow-cache a larger disk, or a smaller --input-size")
    return needed


def stored_clips(store: ClipStore, keys: list[str], labels: list[int], size: tuple[int, int], channels: int,
                 read: Callable[[list[int]], list[Clip]], chunk: int = 32) -> list[Clip]:
    """Clip i (label ``labels[i]``) memory-mapped from entry ``keys[i]``. The entries not there
    yet are made first by ``read(indices)`` (Clips of those samples, in order), ``chunk`` at a
    time, so at most a chunk of clips is ever in memory."""
    opened = [store.open(key, size, channels) for key in keys]
    missing = [i for i, entry in enumerate(opened) if entry is None]
    for start in range(0, len(missing), chunk):
        batch = missing[start:start + chunk]
        for i, clip in zip(batch, read(batch)):
            store.put(keys[i], clip.rgb, clip.flow)
            opened[i] = store.open(keys[i], size, channels)
            if opened[i] is None:
                raise DataError(f"clip store {store.root}: entry {keys[i]} cannot be read back after writing it")
    return [Clip(rgb, flow, label) for (rgb, flow), label in zip(opened, labels)]
