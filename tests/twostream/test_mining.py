"""Hard-example mining (twostream/mining.py, train.py fit --mine-pool): each clip's loss is the
model's own cross-entropy on its windows, the kept clips are the worst of every class over all
chunks of the pool, and the options say plainly when they cannot apply."""

import numpy as np
import pytest
import torch

import train
from twostream.card import render_card
from twostream.checkpoint import read_checkpoint, save_checkpoint
from twostream.contract import ModelContract
from twostream.data import Clip, ClipSet
from twostream.mining import clip_losses, mine_hard_clips
from twostream.model import TwoStreamNet
from twostream.preprocess import WindowPlan, tower_inputs

CONTRACT = ModelContract(classes=("a", "b", "c"), input_size=(32, 32), stack_length=2, num_segments=2, stride=2)


def _clips(seed: int, per_class: int, frames: int = 12) -> ClipSet:
    rng = np.random.default_rng(seed)
    clips = tuple(Clip(rng.integers(0, 256, (frames, 3, 32, 32), dtype=np.uint8),
                       rng.integers(0, 256, (frames, 4, 32, 32), dtype=np.uint8), label)
                  for label in range(3) for _ in range(per_class))
    return ClipSet(clips, CONTRACT.classes, ("generated",) * len(clips))


@pytest.fixture
def model():
    torch.manual_seed(3)
    return TwoStreamNet(CONTRACT).eval()


def test_a_clips_loss_is_the_cross_entropy_of_its_windows_through_the_whole_model(model):
    clips = _clips(0, 2)
    plan = WindowPlan.of(CONTRACT)
    losses = clip_losses(model, clips, per_clip=1)
    for clip, loss in zip(clips.clips, losses):
        end = plan.spread_ends(len(clip.rgb), 1)[0]
        rgb, flow = (torch.from_numpy(a)[None] for a in
                     tower_inputs(clip.rgb, clip.flow, plan.sampled(end), CONTRACT.stack_length))
        with torch.no_grad():
            expected = torch.nn.functional.cross_entropy(model(rgb, flow).double(), torch.tensor([clip.label]))
        assert loss == pytest.approx(float(expected), rel=1e-4)


def test_the_worst_clips_of_each_class_over_every_chunk_are_kept(model):
    chunks = [_clips(10, 4), _clips(11, 4)]
    rendered = []

    def render(j):
        rendered.append(j)
        return chunks[j]

    kept, report = mine_hard_clips(model, render, 2, keep_per_class=3)
    assert rendered == [0, 1]
    losses = [clip_losses(model, chunk) for chunk in chunks]
    for label in range(3):
        pool = sorted((float(l), c.rgb.tobytes()) for chunk, ls in zip(chunks, losses)
                      for c, l in zip(chunk.clips, ls) if c.label == label)
        worst = [b for _, b in pool[::-1][:3]]
        ours = [c.rgb.tobytes() for c in kept.clips if c.label == label]
        assert ours == worst  # the three highest losses, worst first
    assert (report.pool, report.kept) == (24, 9)
    assert all(k >= p for k, p in zip(report.kept_loss, report.pool_loss))
    assert set(kept.sources) == {"mined generated"} and kept.classes == CONTRACT.classes
    assert not model.training  # left as it was found


@pytest.mark.parametrize("argv, message", [
    (["--mine-pool", "10", "--mine-keep", "5"], "needs --init"),
    (["--mine-pool", "10", "--mine-keep", "0"], "keep between 1 and the pool"),
    (["--mine-pool", "4", "--mine-keep", "8", "--init", "x.pt"], "keep between 1 and the pool"),
])
def test_mining_options_that_cannot_apply_are_one_error(tmp_path, capsys, argv, message):
    assert train.main(["fit", "--out", str(tmp_path / "m.pt"), "--no-real", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --mine-pool") and message in err[0]
    assert not (tmp_path / "m.pt").exists()


def test_the_card_says_what_was_mined(model, tmp_path):
    _, report = mine_hard_clips(model, lambda j: _clips(20, 3), 1, keep_per_class=2)
    recipe = {"command": "python train.py fit --mine-pool 3 --mine-keep 2",
              "mining": {"pool_per_class": 3, "keep_per_class": 2, "seeds": "100012..100012", **report.to_dict()}}
    save_checkpoint(tmp_path / "m.pt", model, metrics={"recipe": recipe})
    card = render_card(tmp_path / "m.pt", read_checkpoint(tmp_path / "m.pt"))
    assert ("- hard-example mining: 9 fresh generated clips (seeds 100012..100012) scored by the model fine-tuned "
            "from; the 2 with the highest loss in each class (6 clips) added to the towers' training clips") in card
    save_checkpoint(tmp_path / "plain.pt", model, metrics={"recipe": {"command": "c"}})
    assert "mining" not in render_card(tmp_path / "plain.pt", read_checkpoint(tmp_path / "plain.pt"))
