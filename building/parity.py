"""Parity of a backend with PyTorch fp32 on held-out windows, and the accuracy cost of each
quantised part. Windows are scored as the runtime scores them (calibration.scoring).

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

from calibration.scoring import Scored, WindowSet, head_logits, relative_error, score
from engines.base import Backend


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
