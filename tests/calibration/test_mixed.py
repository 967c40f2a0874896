"""Choosing the int8 parts: from all int8, the costliest part alone goes back to fp32 until the
model agrees with fp32 on enough validation windows."""

from __future__ import annotations

import pytest

from calibration.mixed import choose_parts, mixed_logits
from engines.auto import construct
from calibration.scoring import generated_windows, score
from twostream import seeds
from engines.torch_backend import TorchBackend
from tests.engines.conftest import SMALL, build


@pytest.fixture(scope="module")
def setup(small_model, engine_root):
    built, folder = build(small_model, engine_root, "onnxruntime", "int8", name="mixed")
    windows = generated_windows(SMALL, clips_per_class=1, per_clip=3, frames=16, seed=seeds.VALIDATION)
    reference = TorchBackend(small_model)
    quantised = construct("onnxruntime", built.info, built.info.files(folder))
    return reference, quantised, windows


@pytest.mark.parametrize("target", [0.0, 0.9, 1.0])
def test_parts_go_back_to_fp32_costliest_first_until_the_target(setup, target):
    reference, quantised, windows = setup
    choice = choose_parts(reference, quantised, windows, target)
    assert choice.windows == len(windows.pairs) == 30
    assert choice.agreement >= target or not any(choice.int8)
    if target == 0.0:
        assert choice.int8 == (True, True, True)
    # A part that stayed int8 never costs more alone than one that went back to fp32.
    kept = [a for a, q in zip(choice.solo, choice.int8) if q]
    dropped = [a for a, q in zip(choice.solo, choice.int8) if not q]
    assert not kept or not dropped or min(kept) >= max(dropped)
    assert "int8 parts:" in choice.describe()


def test_mixed_logits_take_each_part_from_where_it_is_chosen(setup):
    reference, quantised, windows = setup
    ref, quant = score(reference, windows), score(quantised, windows)
    assert (mixed_logits(reference, quantised, ref, quant, (False, False, False)) == ref.logits).all()
    assert (mixed_logits(reference, quantised, ref, quant, (True, True, True)) == quant.logits).all()


def test_validation_windows_are_never_the_held_out_ones():
    assert seeds.VALIDATION not in (seeds.TRAIN, seeds.HELD_OUT, seeds.DEMO_CALIBRATION)
