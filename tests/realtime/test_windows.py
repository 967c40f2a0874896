"""Window geometry (twostream.preprocess.WindowPlan): the frames a window samples, scored every
hop frames; training, evaluation and the runtime all read it from there."""

from __future__ import annotations

import pytest

from twostream.preprocess import WindowPlan
from twostream.contract import GESTURE_CLASSES, ModelContract


def test_plan_of_the_default_contract():
    contract = ModelContract(classes=GESTURE_CLASSES)
    plan = WindowPlan.of(contract)
    assert plan.first_end == 22 and plan.span == 23 and plan.reach == 13
    assert plan.sampled(30).tolist() == [18, 21, 24, 27, 30]
    assert WindowPlan.of(contract, stride=2).sampled(30).tolist() == [22, 24, 26, 28, 30]
    assert plan.spread_ends(30, 3) == [22, 26, 29] and plan.spread_ends(22, 3) == []


@pytest.mark.parametrize(
    "T, tau, L, hop, scored, featured",
    [
        # hop 1: every frame from the first window on is scored; every frame >= L gets features
        (5, 3, 10, 1, [22, 23, 24, 25], [10, 11, 12, 13, 14, 15]),
        # hop tau: windows every tau frames sample only frames = first_end mod tau
        (5, 3, 10, 3, [22, 25, 28], [10, 13, 16, 19, 22, 25]),
        # hop 2 with tau 3: sampled sets of consecutive windows interleave
        (5, 3, 10, 2, [22, 24, 26], [10, 12, 13, 14, 15, 16]),
        (2, 4, 2, 1, [6, 7, 8], [2, 3, 4, 5, 6]),
    ],
)
def test_scored_and_featured_frames(T, tau, L, hop, scored, featured):
    plan = WindowPlan(T, tau, L, hop)
    first_scored = [s for s in range(40) if plan.is_scored(s)][: len(scored)]
    assert first_scored == scored
    needed = [s for s in range(40) if plan.needs_features(s)]
    assert needed[: len(featured)] == featured
    assert min(needed) == L  # the first sampled frame's stack needs L earlier frames
    for end in range(40):
        if plan.is_scored(end):
            assert all(plan.needs_features(int(s)) for s in plan.sampled(end))


def test_hop_tau_runs_the_towers_on_one_frame_in_tau():
    plan = WindowPlan(5, 3, 10, hop=3)
    featured = sum(plan.needs_features(s) for s in range(1000))
    assert abs(featured - 1000 / 3) < 5
