"""Which parts stay int8: measured, not assumed.

Each quantised part costs some top-1 agreement with fp32; the costs add up. Starting from every
part int8, the part that costs most on its own goes back to fp32 until the whole model agrees
with fp32 on at least ``target`` of the decision windows. The decision windows are a
validation set: generated clips with their own seed (twostream.seeds.VALIDATION) for gesture models (never the held-out
windows the parity report scores), else the calibration windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.base import Backend
from calibration.scoring import Scored, WindowSet, head_logits, score

PART_NAMES = ("spatial", "temporal", "head")


@dataclass(frozen=True)
class PartChoice:
    """``int8``: (spatial, temporal, head) stay int8; ``solo``: each part's top-1 agreement
    with fp32 when only it is int8; ``agreement``: the whole model's, as chosen."""

    int8: tuple[bool, bool, bool]
    solo: tuple[float, float, float]
    agreement: float
    windows: int
    target: float

    def describe(self) -> str:
        kept = [n for n, q in zip(PART_NAMES, self.int8) if q] or ["none"]
        solo = ", ".join(f"{n} {100 * (1 - a):.1f}%" for n, a in zip(PART_NAMES, self.solo))
        return (f"int8 parts: {', '.join(kept)} (top-1 changed alone: {solo}; as chosen "
                f"{100 * (1 - self.agreement):.1f}% of {self.windows} validation windows, limit "
                f"{100 * (1 - self.target):.1f}%)")


def mixed_logits(reference: Backend, quantised: Backend, ref: Scored, quant: Scored,
                 int8: tuple[bool, bool, bool]) -> np.ndarray:
    """Logits (M, K) with the chosen parts int8 and the others fp32, from cached features."""
    s = quant.s if int8[0] else ref.s
    t = quant.t if int8[1] else ref.t
    return head_logits(quantised if int8[2] else reference, s, t)


def choose_parts(reference: Backend, quantised: Backend, windows: WindowSet, target: float = 0.995) -> PartChoice:
    ref, quant = score(reference, windows), score(quantised, windows)
    truth = ref.logits.argmax(1)

    def agreement(int8: tuple[bool, bool, bool]) -> float:
        return float((mixed_logits(reference, quantised, ref, quant, int8).argmax(1) == truth).mean())

    solo = tuple(agreement(tuple(i == j for j in range(3))) for i in range(3))
    chosen = [True, True, True]
    current = agreement(tuple(chosen))
    while current < target and any(chosen):
        worst = min((i for i in range(3) if chosen[i]), key=lambda i: solo[i])
        chosen[worst] = False
        current = agreement(tuple(chosen))
    return PartChoice(tuple(chosen), solo, current, len(windows.pairs), target)
