"""A conv fusion head trained on fixed random tower features, as one process (``python
ddp_head.py OUT``) or as each rank of ``torchrun --nproc-per-node 2 ddp_head.py OUT``:
test_distributed.py compares what rank 0 saves to OUT.

Three runs of 2 epochs: "exact" without dropout (each rank's masks are its own, so only then is
the run the single-process one), "straight" with dropout, and "resumed" with dropout, stopped
after epoch 1 and continued from what a checkpoint holds (the weights and Progress, written by
rank 0, read by every rank), which must end where "straight" does.
"""

import sys
from pathlib import Path

import torch

from twostream.checkpoint import build_model, read_checkpoint, save_checkpoint
from twostream.contract import GESTURE_CLASSES, ModelContract
from twostream.distributed import World, process_group
from twostream.model import TwoStreamNet
from twostream.training import ClipFeatures, Progress, TrainSettings, train_head

CONTRACT = ModelContract(classes=GESTURE_CLASSES, backbone="tiny", fusion="conv", input_size=(48, 48),
                         stack_length=2, num_segments=2, stride=2)


def features() -> list[ClipFeatures]:
    """Two clips per class of 12 frames of (96, 3, 3) tower features (tiny backbone, 48 x 48)."""
    g = torch.Generator().manual_seed(1)
    return [ClipFeatures(torch.randn(12, 96, 3, 3, generator=g), torch.randn(12, 96, 3, 3, generator=g), k % 10)
            for k in range(20)]


def train(world: World, dropout: float, stop_after: int | None, folder: Path) -> dict:
    """The head's state_dict after 2 epochs (global batch 8), stopped and resumed after
    ``stop_after`` epochs through a checkpoint in ``folder`` when given."""
    torch.manual_seed(0)
    model = TwoStreamNet(CONTRACT)
    model.head.dropout.p = dropout
    settings = TrainSettings(head_epochs=2, head_batch=8, samples_per_clip=2, world=world)
    start = Progress("head")
    if stop_after is not None:
        class Stop(Exception):
            pass

        def save_and_stop(progress: Progress, figures: dict) -> None:
            if world.main:
                save_checkpoint(folder / "mid.pt", model, train_state=progress.to_train_state())
            world.barrier()
            if progress.epoch == stop_after:
                raise Stop

        try:
            train_head(model, features(), settings, start, save_and_stop)
        except Stop:
            pass
        checkpoint = read_checkpoint(folder / "mid.pt")  # every rank, as train.py fit --resume
        model, start = build_model(checkpoint), Progress.from_train_state(checkpoint.train_state)
        model.head.dropout.p = dropout
    train_head(model, features(), settings, start, lambda progress, figures: None)
    return model.head.state_dict()


def main(out: str) -> None:
    torch.set_num_threads(1)
    world = World.from_env()
    folder = Path(out).parent
    with process_group(world, "cpu"):
        runs = {"exact": train(world, 0.0, None, folder), "straight": train(world, 0.5, None, folder),
                "resumed": train(world, 0.5, 1, folder)}
    if world.main:
        torch.save(runs, out)


if __name__ == "__main__":
    main(sys.argv[1])
