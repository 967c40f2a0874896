"""The published action datasets as distributed, read into the clips training and evaluation use.

    UCF101   ROOT/<Class>/v_<Class>_gGG_cCC.avi, and (in ROOT/ucfTrainTestlist/, ROOT, or --lists)
             classInd.txt      "1 ApplyEyeMakeup"                         (1-based class index)
             trainlist0N.txt   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
             testlist0N.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"
    HMDB51   ROOT/<class>/<video>.avi, and (in ROOT/testTrainMulti_7030_splits/, ROOT, or --lists)
             <class>_test_splitN.txt  "<video>.avi 1"   1 = train, 2 = test, 0 = unused
    JPEG     pre-extracted frames and flow (Feichtenhofer's twostreamfusion layout), JROOT/
             jpegs_256/v_<video>/frame000001.jpg               RGB frame k (1-based)
             tvl1_flow/{u,v}/v_<video>/frame000001.jpg         x / y flow, frame k -> k+1
             flow quantised with its own bound (contract.FlowSource): read back to px, resized
             with the frames (displacement scaled with them) and quantised as live flow is.

A video's id is its file stem without UCF101's "v_" prefix ("ApplyEyeMakeup_g08_c01"); its
JPEG folders are "v_<id>". Readers return a DatasetSplit of Samples; ``dataset_clips`` turns
one part of it into a ClipSet (decoded and preprocessed by twostream.data, or read from JPEGs).
Every problem with the lists is one SplitError line naming the file and the line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from twostream.clipstore import ClipStore, check_disk, jpeg_origin, stored_clips, video_origin
from twostream.contract import FlowSource, ModelContract
from twostream.data import VIDEO_SUFFIXES, Clip, ClipPrep, ClipSet, clips_in_workers, read_files
from twostream.errors import DataError, SplitError
from twostream.preprocess import WindowPlan, compensate, field_channels, no_motion, quantise_flow, resize_frame

DATASETS = ("ucf101", "hmdb51")
SPLITS = (1, 2, 3)
PARTS = ("train", "test")
_LIST_DIRS = {"ucf101": "ucfTrainTestlist", "hmdb51": "testTrainMulti_7030_splits"}


@dataclass(frozen=True)
class Sample:
    """One labelled video of a split: its id (file stem without "v_"), class index, and file."""

    video: str
    label: int
    path: Path


@dataclass(frozen=True)
class DatasetSplit:
    """One official split of a dataset: the classes (index order) and the two parts."""

    dataset: str
    split: int
    classes: tuple[str, ...]
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]

    def part(self, name: str) -> tuple[Sample, ...]:
        if name not in PARTS:
            raise DataError(f"split part {name!r} is not one of {PARTS}")
        return self.train if name == "train" else self.test


def video_id(path: Path | str) -> str:
    stem = Path(path).stem
    return stem[2:] if stem.startswith("v_") else stem


def _list_dir(dataset: str, root: Path, lists: Path | None) -> Path:
    if lists is not None:
        if not Path(lists).is_dir():
            raise SplitError(f"split list folder not found: {lists}")
        return Path(lists)
    for folder in (root / _LIST_DIRS[dataset], root):
        if folder.is_dir():
            return folder
    raise DataError(f"{dataset} folder not found: {root}")


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) of every non-blank line; SplitError if the file is absent."""
    if not path.is_file():
        raise SplitError(f"split file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


class _Files:
    """Video files under a root, found by relative path ignoring case: UCF101's lists spell
    some names otherwise than its files (HandStandPushups vs HandstandPushups). With
    ``required`` False (frames and flow read from JPEGs) a listed video need not be there."""

    def __init__(self, root: Path, required: bool = True):
        if required and not root.is_dir():
            raise DataError(f"dataset folder not found: {root}")
        self.root, self.required = root, required
        self._by_name = {str(p.relative_to(root)).lower(): p for p in root.glob("*/*")
                         if p.suffix.lower() in VIDEO_SUFFIXES}

    def find(self, relative: str, where: str) -> Path:
        path = self._by_name.get(relative.lower())
        if path is None and self.required:
            raise SplitError(f"{where}: video {relative} is not under {self.root}")
        return path or self.root / relative


def _check_split(split: int) -> None:
    if split not in SPLITS:
        raise SplitError(f"split {split} is not one of {SPLITS}")


def read_ucf101(root: Path, split: int, lists: Path | None = None, videos: bool = True) -> DatasetSplit:
    """UCF101 split ``split`` (1..3): classInd.txt, trainlist0N.txt, testlist0N.txt; every
    listed video must be under ``root`` unless ``videos`` is False (read from JPEGs)."""
    _check_split(split)
    root = Path(root)
    folder = _list_dir("ucf101", root, lists)
    files = _Files(root, videos)
    index_file = folder / "classInd.txt"
    classes = []
    for n, fields in _lines(index_file):
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) != len(classes) + 1:
            raise SplitError(f"{index_file}:{n}: expected '<{len(classes) + 1}> <class name>', "
                             f"got {' '.join(fields)!r}")
        classes.append(fields[1])
    if len(classes) < 2:
        raise SplitError(f"{index_file}: needs at least two classes, has {len(classes)}")
    by_name = {name.lower(): i for i, name in enumerate(classes)}
    parts = {}
    for part, name in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        path, samples = folder / name, []
        for n, fields in _lines(path):
            where = f"{path}:{n}"
            if len(fields) not in (1, 2) or "/" not in fields[0]:
                raise SplitError(f"{where}: expected '<Class>/<video>.avi [index]', got {' '.join(fields)!r}")
            label = by_name.get(fields[0].split("/")[0].lower())
            if label is None:
                raise SplitError(f"{where}: class {fields[0].split('/')[0]!r} is not in {index_file.name}")
            if len(fields) == 2 and fields[1] != str(label + 1):
                raise SplitError(f"{where}: class index {fields[1]} but {index_file.name} gives "
                                 f"{classes[label]} index {label + 1}")
            video = files.find(fields[0], where)
            samples.append(Sample(video_id(video), label, video))
        if not samples:
            raise SplitError(f"{path} lists no videos")
        parts[part] = tuple(samples)
    return DatasetSplit("ucf101", split, tuple(classes), parts["train"], parts["test"])


def read_hmdb51(root: Path, split: int, lists: Path | None = None, videos: bool = True) -> DatasetSplit:
    """HMDB51 split ``split`` (1..3): one <class>_test_split<N>.txt per class, classes in
    sorted name order; 1 = train, 2 = test, 0 = unused. ``videos``: as read_ucf101."""
    _check_split(split)
    root = Path(root)
    folder = _list_dir("hmdb51", root, lists)
    files = _Files(root, videos)
    suffix = f"_test_split{split}.txt"
    split_files = sorted(folder.glob(f"*{suffix}"))
    classes = tuple(p.name[:-len(suffix)] for p in split_files)
    if len(classes) < 2:
        raise SplitError(f"{folder}: needs <class>{suffix} files for at least two classes, found {len(classes)}")
    parts = {"train": [], "test": []}
    for label, path in enumerate(split_files):
        for n, fields in _lines(path):
            where = f"{path}:{n}"
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise SplitError(f"{where}: expected '<video>.avi <0|1|2>', got {' '.join(fields)!r}")
            if fields[1] == "0":
                continue
            video = files.find(f"{classes[label]}/{fields[0]}", where)
            parts["train" if fields[1] == "1" else "test"].append(Sample(video_id(video), label, video))
    for part, samples in parts.items():
        if not samples:
            raise SplitError(f"{folder}: split {split} has no {part} videos")
    return DatasetSplit("hmdb51", split, classes, tuple(parts["train"]), tuple(parts["test"]))


def read_split(dataset: str, root: Path, split: int, lists: Path | None = None, videos: bool = True) -> DatasetSplit:
    if dataset == "ucf101":
        return read_ucf101(root, split, lists, videos)
    if dataset == "hmdb51":
        return read_hmdb51(root, split, lists, videos)
    raise DataError(f"dataset {dataset!r} is not one of {DATASETS}")


@dataclass(frozen=True)
class JpegLayout:
    """Pre-extracted frames and flow under ``root`` (jpegs_256/, tvl1_flow/u/, tvl1_flow/v/)."""

    root: Path

    def rgb_dir(self, video: str) -> Path:
        return Path(self.root) / "jpegs_256" / f"v_{video}"

    def flow_dirs(self, video: str) -> tuple[Path, Path]:
        flow = Path(self.root) / "tvl1_flow"
        return flow / "u" / f"v_{video}", flow / "v" / f"v_{video}"


def _jpegs(folder: Path, grey: bool) -> list[np.ndarray]:
    files = sorted(folder.glob("frame*.jpg"))
    if not files:
        raise DataError(f"no frame*.jpg in {folder}")
    images = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) for f in files]
    broken = [f.name for f, image in zip(files, images) if image is None]
    if broken:
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        raise DataError(f"{folder}: cannot decode {broken[0]}{more}")
    return images


def jpeg_flow_pixels(q: np.ndarray, source: FlowSource) -> np.ndarray:
    """uint8 JPEG flow values (any shape) -> float32 displacement in px at the extraction size:
    the inverse of source.quantisation, q * 2 bound / 255 - bound."""
    return q.astype(np.float32) * np.float32(2 * source.bound / 255) - np.float32(source.bound)


def read_jpeg_clip(layout: JpegLayout, video: str, contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    """A video's pre-extracted frames and flow -> rgb (F, 3, H, W) and flow (F, 2, H, W) uint8,
    exactly the arrays twostream.preprocess.preprocess_clip makes from frames: field 0 is zero
    motion, field k (k >= 1) is JPEG flow k (frame k -> k+1, 1-based), each axis back in px,
    resized to (H, W) = contract.input_size with its displacement scaled by the resize,
    compensated as the contract says and quantised as live flow is. F = min(frames, flows + 1)."""
    source = contract.flow_source
    if source is None:
        raise DataError("reading pre-extracted flow needs a contract with a flow_source (its quantisation)")
    height, width = contract.input_size
    frames = _jpegs(layout.rgb_dir(video), grey=False)
    u_dir, v_dir = layout.flow_dirs(video)
    us, vs = _jpegs(u_dir, grey=True), _jpegs(v_dir, grey=True)
    if len(us) != len(vs):
        raise DataError(f"{video}: {len(us)} x-flow but {len(vs)} y-flow JPEGs ({u_dir.parent.parent})")
    count = min(len(frames), len(us) + 1)
    rgb = np.stack([resize_frame(frame, (height, width))[0] for frame in frames[:count]])
    fields = [no_motion((height, width))]
    for u, v in zip(us[:count - 1], vs[:count - 1]):
        scale = np.array([width / u.shape[1], height / u.shape[0]], np.float32)  # px at extraction -> at (H, W)
        pixels = jpeg_flow_pixels(np.stack([u, v], axis=-1), source)
        small = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA) * scale
        fields.append(quantise_flow(compensate(small, contract.flow_compensation), contract.flow_bound))
    return rgb, np.stack(fields)


def _read_jpeg_one(job: tuple) -> Clip:
    layout, video, contract, label = job
    return Clip(*read_jpeg_clip(layout, video, contract), label)


def _frame_count(sample: Sample, layout: JpegLayout | None) -> int:
    if layout is not None:
        return len(list(layout.rgb_dir(sample.video).glob("frame*.jpg")))
    capture = cv2.VideoCapture(str(sample.path))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()


def check_memory(samples: list[Sample], contract: ModelContract, layout: JpegLayout | None,
                 budget: float | None = None) -> int:
    """Bytes the clips of ``samples`` take at the model's size, uint8 rgb and flow (5 planes a
    frame, 7 with bidirectional fields): training holds every clip of a part in memory.
    DataError past ``budget`` bytes (default: half this machine's memory), before hours of
    decoding end in the OOM killer."""
    height, width = contract.input_size
    planes = 3 + field_channels(contract.flow_direction)
    needed = sum(_frame_count(s, layout) for s in samples) * planes * height * width
    budget = budget or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2
    if needed > budget:
        raise DataError(f"{len(samples)} videos would hold {needed / 2**30:.1f} GiB of frames and flow at "
                        f"{height}x{width}, over {budget / 2**30:.1f} GiB (half this machine's memory): "
                        "limit them with --videos-per-class N or a smaller --input-size, or keep them on "
                        "disk, memory-mapped, with --flow-cache DIR")
    return needed


def _read_samples(samples: list[Sample], layout: JpegLayout | None, contract: ModelContract, prep: ClipPrep,
                  workers: int, desc: str) -> list[Clip]:
    """The samples' clips in memory: read from their JPEGs, or decoded and preprocessed."""
    if layout is not None:
        return clips_in_workers(_read_jpeg_one, [(layout, s.video, contract, s.label) for s in samples], prep,
                                workers, desc)
    return read_files([(s.path, s.label) for s in samples], prep, workers, desc)


def _stored_samples(samples: list[Sample], layout: JpegLayout | None, contract: ModelContract, prep: ClipPrep,
                    workers: int, desc: str) -> list[Clip]:
    """The samples' clips memory-mapped from the clip store under the flow cache (made there
    first when missing): a split larger than memory (twostream/clipstore.py)."""
    store = ClipStore(Path(prep.cache.root) / "videos")
    fields = f"{contract.input_size} {contract.flow_source} {contract.flow_compensation} {contract.flow_bound}"
    keys = [store.key(jpeg_origin(layout.rgb_dir(s.video), layout.flow_dirs(s.video), fields) if layout
                      else video_origin(s.path), prep.spec) for s in samples]
    new = [s for s, key in zip(samples, keys) if not store.has(key)]
    check_disk(store, sum(_frame_count(s, layout) for s in new), contract.input_size, prep.spec.channels)
    direct = dataclasses.replace(prep, cache=None)  # the store holds them: no second copy in the flow cache

    def read(indices: list[int]) -> list[Clip]:
        return _read_samples([samples[i] for i in indices], layout, contract, direct, workers,
                             f"{desc}: {len(indices)} to the clip store")

    return stored_clips(store, keys, [s.label for s in samples], contract.input_size, prep.spec.channels, read,
                        chunk=max(16, 8 * workers))


def dataset_clips(split: DatasetSplit, part: str, contract: ModelContract, prep: ClipPrep,
                  jpegs: Path | None = None, per_class: int | None = None, workers: int = 2) -> ClipSet:
    """One part ("train" or "test") of a split as Clips, in ``workers`` processes: decoded from
    the video files and preprocessed as ``prep`` says, or (``jpegs``) read from the
    pre-extracted JPEG layout there. ``per_class``: only the first N videos of each class (a
    quick run; None: all). Refused up front when they would not fit in memory (check_memory),
    unless ``prep`` has a cache: then they are kept there and memory-mapped (clipstore)."""
    if tuple(contract.classes) != split.classes:
        raise DataError(f"{split.dataset} split {split.split} has {len(split.classes)} classes "
                        f"{list(split.classes[:3])}... but the model has {list(contract.classes[:3])}...")
    if jpegs is not None and contract.flow_source is None:
        raise DataError(f"{jpegs}: the model was not trained on pre-extracted flow (its contract has no flow_source)")
    if jpegs is None and contract.flow_source is not None:
        raise DataError("the model was trained on pre-extracted JPEG flow: read the same JPEGs (--jpegs DIR)")
    samples, taken = [], [0] * len(split.classes)
    for sample in split.part(part):
        if per_class is None or taken[sample.label] < per_class:
            samples.append(sample)
            taken[sample.label] += 1
    span = WindowPlan.of(contract).span
    layout = JpegLayout(Path(jpegs)) if jpegs is not None else None
    desc = f"{split.dataset} split {split.split} {part}"
    if prep.cache is None:
        check_memory(samples, contract, layout)
        clips = _read_samples(samples, layout, contract, prep, workers, desc)
    else:
        clips = _stored_samples(samples, layout, contract, prep, workers, desc)
    for sample, clip in zip(samples, clips):
        if len(clip.rgb) < span:
            raise DataError(f"{sample.video} has {len(clip.rgb)} frames, fewer than one window ({span})")
    return ClipSet(tuple(clips), split.classes, tuple(s.video for s in samples))


@dataclass(frozen=True)
class DatasetSource:
    """An official dataset on disk, as train.py's --dataset, --root, --lists, --jpegs and
    --videos-per-class name it: the split lists under ``root`` (or ``lists``), the videos under
    ``root``, or their frames and flow pre-extracted under ``jpegs`` (then the videos need not
    be there, only the lists); ``per_class`` limits each
    class to its first N videos of a part (None: all)."""

    dataset: str
    root: Path
    lists: Path | None = None
    jpegs: Path | None = None
    per_class: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise DataError(f"dataset {self.dataset!r} is not one of {DATASETS}")
        if self.per_class is not None and self.per_class < 1:
            raise DataError(f"videos per class must be >= 1, got {self.per_class}")

    def split(self, number: int) -> DatasetSplit:
        return read_split(self.dataset, Path(self.root), number, self.lists, videos=self.jpegs is None)

    def clips(self, number: int, part: str, contract: ModelContract, prep: ClipPrep, workers: int = 2,
              per_class: int | None = None) -> ClipSet:
        """Part ``part`` ("train" or "test") of split ``number``, preprocessed for ``contract``
        (video files decoded in ``workers`` processes); ``per_class`` caps each class further."""
        caps = [n for n in (self.per_class, per_class) if n is not None]
        return dataset_clips(self.split(number), part, contract, prep, self.jpegs, min(caps) if caps else None,
                             workers)

    def describe(self, number: int, part: str) -> str:
        """Where a part came from, for the model card and reports."""
        jpegs = f" (frames and TV-L1 flow JPEGs from {self.jpegs})" if self.jpegs else ""
        limit = f", first {self.per_class} videos per class" if self.per_class else ""
        return f"{self.dataset} split {number} {part} list, {self.root}{jpegs}{limit}"
