"""Parity of a backend with PyTorch fp32 on held-out windows, and the accuracy cost of each
quantised part.

Every window is scored as the runtime scores it: each frame through the towers once (features
cached per frame), then the head on T cached feature pairs at the run-time stride tau.

Error measures (over all windows, logits (M, K)):
    max_abs_err     max |logit - reference logit|
    max_rel_err     worst window of max_k |logit - ref| / max_k |ref| (scaled per window: an
                    element-wise ratio is meaningless for logits near zero)
    top1_agreement  share of windows whose arg-max equals the reference's
    top1            fused held-out top-1 against the true labels (generated windows only)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from engines.base import Backend
from engines.onnx_export import relative_error
from realtime.flow import stack_fields
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.data import ClipSet, eval_windows, generate_clips, window_frames

HELD_OUT_SEED = 1000  # training uses seed 0: seed 1000 never renders a training clip


@dataclass(frozen=True)
class WindowSet:
    """Clips preprocessed by the runtime's flow code, and the windows (clip index, newest frame)
    to score at the contract's stride. ``labelled``: clip labels are true classes."""

    clips: ClipSet
    pairs: tuple[tuple[int, int], ...]
    labelled: bool
    description: str

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.clips.clips[ci].label for ci, _ in self.pairs])


def generated_windows(contract: ModelContract, clips_per_class: int = 10, per_clip: int = 5,
                      seed: int = HELD_OUT_SEED, frames: int = 32) -> WindowSet:
    """Held-out gesture windows: ``clips_per_class`` x 10 classes x ``per_clip`` windows."""
    clips = generate_clips(contract, clips_per_class, seed, frames=frames)
    pairs = tuple(eval_windows(clips, contract, per_clip))
    return WindowSet(clips, pairs, True, f"generated: {clips_per_class} clips/class x {frames} frames, "
                                         f"seed {seed}, {per_clip} windows per clip")


def can_generate(contract: ModelContract) -> bool:
    """Generated windows carry the gesture classes: only a gesture model can be scored on them."""
    return tuple(contract.classes) == GESTURE_CLASSES


@dataclass(frozen=True)
class WindowFeatures:
    """Per clip, tower features of every frame from L on: spatial and temporal (F, C, h, w)
    (frames before L have no full flow stack and hold zeros, as in twostream.training)."""

    spatial: tuple[np.ndarray, ...]
    temporal: tuple[np.ndarray, ...]


def tower_features(backend: Backend, windows: WindowSet, batch: int = 32) -> WindowFeatures:
    """Run both towers of ``backend`` once over the frames of every clip."""
    length = backend.contract.stack_length
    spatial, temporal = [], []
    for clip in windows.clips.clips:
        frames = len(clip.rgb)
        rgb = clip.rgb[length:].transpose(0, 3, 1, 2).astype(np.float32)
        stacks = np.stack([stack_fields(clip.flow[s - length + 1:s + 1]) for s in range(length, frames)])
        stacks = stacks.astype(np.float32)
        s_out = np.concatenate([np.array(backend.spatial(rgb[i:i + batch])) for i in range(0, len(rgb), batch)])
        t_out = np.concatenate([np.array(backend.temporal(stacks[i:i + batch]))
                                for i in range(0, len(stacks), batch)])
        pad = np.zeros((length, *s_out.shape[1:]), np.float32)
        spatial.append(np.concatenate([pad, s_out]))
        temporal.append(np.concatenate([pad, t_out]))
    return WindowFeatures(tuple(spatial), tuple(temporal))


def gather(features: WindowFeatures, windows: WindowSet, contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    """Head inputs of every window: spatial and temporal (M, T, C, h, w)."""
    s, t = [], []
    for ci, end in windows.pairs:
        frames = window_frames(end, contract, contract.stride)
        s.append(features.spatial[ci][frames])
        t.append(features.temporal[ci][frames])
    return np.stack(s), np.stack(t)


def head_logits(backend: Backend, s: np.ndarray, t: np.ndarray, batch: int = 64) -> np.ndarray:
    """(M, T, C, h, w) x 2 -> logits (M, K), in batches."""
    return np.concatenate([np.array(backend.head(s[i:i + batch], t[i:i + batch]))
                           for i in range(0, len(s), batch)])


@dataclass(frozen=True)
class Thresholds:
    """What parity must reach; None = not checked."""

    max_rel_err: float | None = None
    min_top1_agreement: float | None = None
    max_top1_drop: float | None = None  # fused held-out top-1, reference minus candidate


def thresholds_for(precision: str) -> Thresholds:
    """fp32 must match PyTorch to 1e-3 relative logit error; reduced precisions must agree on
    at least 99% of windows, and int8 must lose at most 1 point of held-out top-1."""
    if precision == "fp32":
        return Thresholds(max_rel_err=1e-3)
    if precision in ("fp16", "bf16"):
        return Thresholds(max_rel_err=5e-2, min_top1_agreement=0.99)
    return Thresholds(min_top1_agreement=0.99, max_top1_drop=0.01)


@dataclass(frozen=True)
class PartCost:
    """Accuracy with only ``part`` quantised (the others fp32); ``all`` = every part quantised."""

    part: str
    top1_agreement: float
    top1: float | None


@dataclass(frozen=True)
class ParityReport:
    backend: str
    precision: str
    reference: str
    windows: int
    held_out: str
    max_abs_err: float
    max_rel_err: float
    top1_agreement: float
    top1_reference: float | None
    top1: float | None
    spatial_rel_err: float  # worst frame's relative feature error, spatial tower alone
    temporal_rel_err: float  # the same for the temporal tower
    head_rel_err: float  # the head alone, on the reference features (worst window's logits)
    thresholds: Thresholds
    failures: tuple[str, ...]
    part_costs: tuple[PartCost, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        out = asdict(self)
        out["passed"] = self.passed
        out["failures"] = list(self.failures)
        return out


def _top1(logits: np.ndarray, windows: WindowSet) -> float | None:
    return float((logits.argmax(1) == windows.labels).mean()) if windows.labelled else None


def _failures(report: ParityReport) -> tuple[str, ...]:
    limits, out = report.thresholds, []
    if limits.max_rel_err is not None and not report.max_rel_err <= limits.max_rel_err:
        out.append(f"max_rel_err {report.max_rel_err:.2e} > {limits.max_rel_err:.0e}")
    if limits.min_top1_agreement is not None and report.top1_agreement < limits.min_top1_agreement:
        out.append(f"top1_agreement {report.top1_agreement:.4f} < {limits.min_top1_agreement}")
    drop = None if report.top1 is None else report.top1_reference - report.top1
    if limits.max_top1_drop is not None and drop is not None and drop > limits.max_top1_drop + 1e-9:
        out.append(f"held-out top-1 fell {100 * drop:.2f} points (limit {100 * limits.max_top1_drop:g})")
    return tuple(out)


@dataclass(frozen=True)
class Scored:
    """One backend's features and logits over a window set (reused between comparisons)."""

    features: WindowFeatures
    s: np.ndarray  # (M, T, C, h, w)
    t: np.ndarray
    logits: np.ndarray  # (M, K)


def score(backend: Backend, windows: WindowSet) -> Scored:
    features = tower_features(backend, windows)
    s, t = gather(features, windows, backend.contract)
    return Scored(features, s, t, head_logits(backend, s, t))


def _feature_rel_err(candidate: tuple[np.ndarray, ...], reference: tuple[np.ndarray, ...], length: int) -> float:
    return max(relative_error(c[length:], r[length:]) for c, r in zip(candidate, reference))


def parity_report(candidate: Backend, reference: Backend, windows: WindowSet, precision: str, *,
                  reference_scored: Scored | None = None, candidate_scored: Scored | None = None,
                  part_costs: tuple[PartCost, ...] = (),
                  thresholds: Thresholds | None = None) -> ParityReport:
    """Score ``windows`` with both backends and compare (``*_scored``: a pass already made on
    the same windows, reused)."""
    ref = reference_scored or score(reference, windows)
    cand = candidate_scored or score(candidate, windows)
    head_alone = head_logits(candidate, ref.s, ref.t)
    length = reference.contract.stack_length
    report = ParityReport(
        backend=candidate.name, precision=precision, reference=f"{reference.name} fp32",
        windows=len(windows.pairs), held_out=windows.description,
        max_abs_err=float(np.abs(cand.logits - ref.logits).max()),
        max_rel_err=relative_error(cand.logits, ref.logits),
        top1_agreement=float((cand.logits.argmax(1) == ref.logits.argmax(1)).mean()),
        top1_reference=_top1(ref.logits, windows), top1=_top1(cand.logits, windows),
        spatial_rel_err=_feature_rel_err(cand.features.spatial, ref.features.spatial, length),
        temporal_rel_err=_feature_rel_err(cand.features.temporal, ref.features.temporal, length),
        head_rel_err=relative_error(head_alone, ref.logits),
        thresholds=thresholds or thresholds_for(precision), failures=(), part_costs=part_costs)
    return replace(report, failures=_failures(report))


def part_costs(quantised: Backend, reference: Backend, windows: WindowSet,
               reference_scored: Scored, quantised_scored: Scored) -> tuple[PartCost, ...]:
    """Swap one part at a time from fp32 to quantised: what each part costs on its own."""
    ref = reference_scored
    mixes = (
        ("spatial", head_logits(reference, quantised_scored.s, ref.t)),
        ("temporal", head_logits(reference, ref.s, quantised_scored.t)),
        ("head", head_logits(quantised, ref.s, ref.t)),
        ("all", quantised_scored.logits),
    )
    reference_top1 = ref.logits.argmax(1)
    return tuple(PartCost(name, float((logits.argmax(1) == reference_top1).mean()), _top1(logits, windows))
                 for name, logits in mixes)
