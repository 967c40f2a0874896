"""Training and evaluation data: labelled clips preprocessed by twostream.preprocess, the code
the runtime's flow stage runs, so training sees exactly what inference sees.

A clip is stored once at model resolution, rgb (F, 3, H, W) and quantised flow (F, C, H, W)
uint8 (C = 2, or 4 for bidirectional stacks: twostream.preprocess.field_channels); a window is
a gather of T sampled frames and their L-deep flow stacks (twostream.preprocess.WindowPlan,
tower_inputs).

Real footage (twostream.realdata) adds ``no_gesture`` clips augmented from files nobody
gestures in (``real_clips``) and real moving backgrounds behind generated gestures
(``generate_clips(backdrops=...)``, twostream.backdrops).

Where flow runs (``ClipPrep``): worker processes render or augment the BGR frames. Flow on the
CPU (OpenCV's methods, or tvl1-torch on device "cpu") runs in those workers too; torch flow on a
CUDA device runs in the main process, each clip's pairs in one batched call, as the workers hand
the frames over (CUDA does not survive a fork). With a cache (twostream.flowcache) the workers
look each clip up first and only a miss is computed, and stored.
"""

from __future__ import annotations

import multiprocessing
import signal
import zlib
from dataclasses import dataclass
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from twostream.backdrops import BackdropPool, RealBackdrop
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.errors import DataError
from twostream.flowcache import FlowCache
from twostream.gestures import render_clip
from twostream.preprocess import FlowSpec, WindowPlan, preprocess_clip
from twostream.realdata import RealVideo, augment_clip, read_video

VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v"}
RENDER_SIZES = ((160, 120), (224, 168), (320, 240))
NO_GESTURE = "no_gesture"
_BACKDROP_STREAM = 1  # seeds the backdrop draw apart from the clip's own seed (clips stay as they were)
_REAL_STREAM = 2


@dataclass(frozen=True)
class Clip:
    rgb: np.ndarray  # (F, 3, H, W) uint8, RGB
    flow: np.ndarray  # (F, C, H, W) uint8 quantised (C: field_channels); field 0 has no predecessor (zero motion)
    label: int


@dataclass(frozen=True)
class ClipSet:
    clips: tuple[Clip, ...]
    classes: tuple[str, ...]
    sources: tuple[str, ...] = ()  # per clip where known: "generated", "generated+<file>" or a real file name

    def __len__(self) -> int:
        return len(self.clips)


@dataclass(frozen=True)
class ClipPrep:
    """How clip frames become Clips: the flow spec (FlowSpec.of(contract, device=...)), where
    preprocessed clips are cached (None: nowhere), and whether flow runs in the main process
    rather than in the rendering workers."""

    spec: FlowSpec
    cache: FlowCache | None = None
    flow_in_main: bool = False

    @classmethod
    def of(cls, contract: ModelContract, device: str = "cpu", cache: Path | None = None) -> "ClipPrep":
        """Torch flow on a device other than the CPU runs in the main process: CUDA does not
        survive a fork. Everything else runs in the workers, in parallel."""
        spec = FlowSpec.of(contract, device=device)
        return cls(spec, FlowCache(Path(cache)) if cache else None,
                   flow_in_main=spec.method == "tvl1-torch" and spec.device != "cpu")


@dataclass(frozen=True)
class _Pending:
    """Frames a worker rendered whose flow the main process computes (ClipPrep.flow_in_main)."""

    frames: np.ndarray  # BGR uint8 (F, h, w, 3)
    label: int
    key: str | None  # the cache entry to store, None without a cache


def _prepared(frames: np.ndarray, label: int, prep: ClipPrep) -> Clip | _Pending:
    """In a worker (or the main process): the clip from the cache, else preprocessed here if
    flow runs here, else handed to the main process."""
    key = None
    if prep.cache is not None:
        key = prep.cache.key(frames, prep.spec)
        hit = prep.cache.load(key, prep.spec, len(frames))
        if hit is not None:
            return Clip(*hit, label)
    if prep.flow_in_main:
        return _Pending(frames, label, key)
    return _computed(frames, label, key, prep)


def _computed(frames: np.ndarray, label: int, key: str | None, prep: ClipPrep) -> Clip:
    rgb, flow = preprocess_clip(frames, prep.spec)
    if key is not None:
        prep.cache.store(key, prep.spec, rgb, flow)
    return Clip(rgb, flow, label)


def prepare_frames(frames: np.ndarray, label: int, prep: ClipPrep) -> Clip:
    """One clip's BGR frames (F, h, w, 3) -> Clip, in this process: from the cache, or
    preprocessed (and cached) here."""
    return _finished([_prepared(frames, label, prep)], prep)[0]


def _finished(items: Iterable[Clip | _Pending], prep: ClipPrep) -> list[Clip]:
    """In the main process, in order: the workers' clips, the pending ones preprocessed here."""
    return [item if isinstance(item, Clip) else _computed(item.frames, item.label, item.key, prep)
            for item in items]


def _init_worker() -> None:
    """A forked clip worker: one torch thread, and SIGTERM's default action back.

    One thread: a forked child whose parent already ran torch's OpenMP thread pool hangs in its
    first parallel op (measured: tvl1-torch flow of held-out clips rendered after training never
    returned), and with one thread it never enters one; nor do the workers then oversubscribe
    the cores. SIGTERM: a fork inherits the parent's Python-level handler (app.py turns SIGTERM
    into Ctrl-C's clean path), which runs only between bytecodes, so Pool.terminate's SIGTERM
    landing just before a worker blocks on the task queue's lock was lost and the worker waited
    there for good (seen: the test suite hung in Pool.__exit__); the default action kills it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch.set_num_threads(1)


def _pool(workers: int):
    """Forked clip workers (_init_worker)."""
    return multiprocessing.get_context("fork").Pool(workers, initializer=_init_worker)


def _in_windows(pool, fn: Callable, jobs: list, workers: int) -> Iterator:
    """``pool.imap(fn, jobs)`` with at most two windows of jobs in flight: the workers render
    one window ahead while the main process takes the previous one's results. Plain imap would
    render every clip ahead of a main process that is slower than the workers (device flow of
    a heavy preset), each of them BGR frames at render size (up to 9 MB) waiting in memory."""
    size = max(16, 8 * workers)
    windows = deque()
    for start in range(0, len(jobs), size):
        windows.append(pool.imap(fn, jobs[start:start + size], chunksize=4))
        if len(windows) == 2:
            yield from windows.popleft()
    while windows:
        yield from windows.popleft()


def clip_seed(seed: int, class_index: int, clip_index: int) -> int:
    """Independent seed per (split seed, class, clip): split seeds never share a clip."""
    return int(np.random.SeedSequence([seed, class_index, clip_index]).generate_state(1)[0])


def _generate_one(job: tuple) -> Clip | _Pending:
    contract, prep, label_index, seed, frames, size, backdrop = job
    bgr = render_clip(GESTURE_CLASSES[label_index], seed, size=size, frames=frames, fps=contract.train_fps,
                      backdrop=backdrop)
    return _prepared(bgr, label_index, prep)


def _backdrop_for(backdrops: BackdropPool | None, fraction: float, seed: int, size: tuple[int, int],
                  frames: int, fps: float) -> RealBackdrop | None:
    """A real backdrop for ``fraction`` of the clips, drawn from a stream of its own."""
    if backdrops is None or fraction <= 0:
        return None
    rng = np.random.default_rng([seed, _BACKDROP_STREAM])
    return backdrops.sample(rng, size, frames, fps) if rng.random() < fraction else None


def generate_clips(contract: ModelContract, clips_per_class: int, seed: int, frames: int = 40,
                   workers: int = 2, backdrops: BackdropPool | None = None,
                   backdrop_fraction: float = 0.0, prep: ClipPrep | None = None) -> ClipSet:
    """Render ``clips_per_class`` gesture clips per class at random sizes and preprocess them
    (``prep``: where flow runs and is cached; default the CPU, no cache);
    ``backdrop_fraction`` of them over a real moving background from ``backdrops``."""
    prep = prep or ClipPrep.of(contract)
    if tuple(contract.classes) != GESTURE_CLASSES:
        raise DataError("generated clips carry the gesture classes; the contract lists others")
    span = WindowPlan.of(contract).span
    if frames < span:
        raise DataError(f"clips of {frames} frames are shorter than one window ({span})")
    if not 0 <= backdrop_fraction <= 1:
        raise DataError(f"backdrop fraction {backdrop_fraction} is not in 0..1")
    jobs = []
    for i in range(clips_per_class):
        for c in range(len(GESTURE_CLASSES)):
            s = clip_seed(seed, c, i)
            # The size is the first draw of the clip's seed, as it always was.
            size = RENDER_SIZES[int(np.random.default_rng(s).integers(len(RENDER_SIZES)))]
            backdrop = _backdrop_for(backdrops, backdrop_fraction, s, size, frames, contract.train_fps)
            jobs.append((contract, prep, c, s, frames, size, backdrop))
    sources = tuple("generated" if j[-1] is None else "generated+real backdrop" for j in jobs)
    with _pool(workers) as pool:
        # Clips come over in order as they are rendered: the main process computes the pending
        # ones' device flow while the workers render the next.
        clips = _finished(tqdm(_in_windows(pool, _generate_one, jobs, workers), total=len(jobs),
                               desc=f"generate clips (seed {seed})", unit="clip", disable=None), prep)
    return ClipSet(tuple(clips), GESTURE_CLASSES, sources)


def _preprocess_one(job: tuple) -> Clip | _Pending:
    prep, bgr, label = job
    return _prepared(bgr, label, prep)


def real_clips(contract: ModelContract, videos: tuple[RealVideo, ...], clips_per_file: int, seed: int,
               frames: int = 40, workers: int = 2, prep: ClipPrep | None = None) -> ClipSet:
    """``clips_per_file`` augmented ``no_gesture`` clips of ``frames`` frames from each decoded
    real video (twostream.realdata.augment_clip), preprocessed as ``prep`` says (default: on
    the CPU, no cache); ``sources`` names each clip's file. Seeded per (seed, file name, clip),
    so adding a file changes no other file's clips."""
    if NO_GESTURE not in contract.classes:
        raise DataError(f"real footage is {NO_GESTURE!r}, a class this model does not have")
    label = tuple(contract.classes).index(NO_GESTURE)
    span = WindowPlan.of(contract).span
    if frames < span:
        raise DataError(f"clips of {frames} frames are shorter than one window ({span})")
    prep = prep or ClipPrep.of(contract)
    clips, sources = [], []
    with _pool(workers) as pool:
        # One file at a time: its augmented frames go to the workers without piling up in memory.
        for video in tqdm(videos, desc=f"real no_gesture clips (seed {seed})", unit="file", disable=None):
            rngs = [np.random.default_rng([seed, _REAL_STREAM, zlib.crc32(video.name.encode()), i])
                    for i in range(clips_per_file)]
            jobs = [(prep, augment_clip(video, rng, frames, contract.train_fps), label) for rng in rngs]
            clips += _finished(pool.map(_preprocess_one, jobs), prep)
            sources += [video.name] * len(jobs)
    return ClipSet(tuple(clips), tuple(contract.classes), tuple(sources))


def _read_one(job: tuple) -> Clip | _Pending:
    path, label, prep = job
    return _prepared(read_video(path).frames, label, prep)


def clips_in_workers(fn: Callable[[tuple], Clip | _Pending], jobs: list[tuple], prep: ClipPrep, workers: int = 2,
                     desc: str = "clips") -> list[Clip]:
    """``fn(job)`` for every job in ``workers`` forked processes, in order: a Clip, or (via
    _prepared) frames whose flow the main process computes as ``prep`` says. ``fn`` is a
    module-level function (the pool pickles it by name)."""
    with _pool(workers) as pool:
        return _finished(tqdm(_in_windows(pool, fn, jobs, workers), total=len(jobs), desc=desc, unit="clip",
                              disable=None), prep)


def read_files(files: list[tuple[Path, int]], prep: ClipPrep, workers: int = 2,
               desc: str = "read videos") -> list[Clip]:
    """(video file, label) pairs -> Clips in the same order, decoded and preprocessed in
    ``workers`` forked processes (flow in the main process when ``prep.flow_in_main``), looked
    up in and stored to ``prep.cache`` when it has one."""
    return clips_in_workers(_read_one, [(Path(path), label, prep) for path, label in files], prep, workers, desc)


def merge_clips(*sets: ClipSet) -> ClipSet:
    """One ClipSet of several with the same classes, in order."""
    if len({s.classes for s in sets}) != 1:
        raise DataError("cannot merge clip sets of different classes")
    sources = () if any(len(s.sources) != len(s) for s in sets) else sum((s.sources for s in sets), ())
    return ClipSet(sum((s.clips for s in sets), ()), sets[0].classes, sources)


def folder_classes(root: Path) -> tuple[str, ...]:
    """Class names = sorted sub-folder names of ``root``."""
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DataError(f"{root} needs at least two class sub-folders, found {len(classes)}")
    return classes


def load_folder(root: Path, contract: ModelContract, split: str, val_fraction: float = 0.2,
                prep: ClipPrep | None = None) -> ClipSet:
    """Labelled clips from ``root/<class>/<video>``, preprocessed as ``prep`` says (default: on
    the CPU, no cache). Split is deterministic: every round(1/val_fraction)-th clip of each
    class (sorted by name) is held out."""
    root = Path(root)
    prep = prep or ClipPrep.of(contract)
    classes = folder_classes(root)
    if tuple(contract.classes) != classes:
        raise DataError(f"{root} has classes {list(classes)} but the model has {list(contract.classes)}")
    every = max(2, round(1 / val_fraction))
    clips = []
    for index, name in enumerate(classes):
        videos = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        chosen = [v for i, v in enumerate(videos) if (i % every == every - 1) == (split == "val")]
        for video in tqdm(chosen, desc=f"read {name} ({split})", unit="clip", leave=False, disable=None):
            frames = read_video(video).frames
            if len(frames) < WindowPlan.of(contract).span:
                raise DataError(f"{video} has {len(frames)} frames, fewer than one window "
                                f"({WindowPlan.of(contract).span})")
            clips.append(prepare_frames(frames, index, prep))
    if not clips:
        raise DataError(f"no {split} clips under {root} (looked for {sorted(VIDEO_SUFFIXES)})")
    return ClipSet(tuple(clips), classes)


def eval_windows(clips: ClipSet, contract: ModelContract, per_clip: int = 3) -> list[tuple[int, int]]:
    """(clip index, window end) pairs at the run-time stride, evenly spread over each clip."""
    plan = WindowPlan.of(contract)
    return [(ci, end) for ci, clip in enumerate(clips.clips) for end in plan.spread_ends(len(clip.rgb), per_clip)]
