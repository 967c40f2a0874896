"""Where a training run stands between epochs (Progress), and the optimizer, schedule, loss scale
and generators it takes to continue it exactly: what twostream.training checkpoints after every
epoch and a resumed run starts from."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from twostream.errors import CheckpointError

STAGES = ("towers", "head", "done")


def on_cuda(device: str) -> bool:
    return device.startswith("cuda")


@dataclass(frozen=True)
class Progress:
    """Where a run stands between epochs, with everything beyond the weights that continuing it
    exactly needs; a checkpoint stores it as ``train_state`` (plain types and tensors only, so
    it loads with weights_only=True).

    ``epoch`` epochs of ``stage`` are done. ``optimizer`` and ``scheduler`` are the stage's AdamW
    and OneCycleLR state_dicts (moments, step counts, learning rate and momentum): None at epoch
    0, where a stage starts both afresh. ``torch_rng`` is torch.get_rng_state(), uint8 (N,), for
    the head's dropout masks to come on the CPU (the towers draw nothing from it, but a run
    resumed mid-towers must still reach the head with the generator of the uninterrupted run).
    None (a fresh run) leaves it as it is. On CUDA the dropout masks come from the device's
    generator: ``cuda_rng`` is torch.cuda.get_rng_state(), uint8, and ``scaler`` the GradScaler's
    state_dict (its loss scale) when the run uses fp16 autocast; both None otherwise.
    numpy needs nothing: every epoch draws from its own np.random.default_rng([seed, stage, epoch]).
    Every tensor is on the CPU (``_after_epoch`` copies device tensors), so the file loads anywhere.
    """

    stage: str = "towers"
    epoch: int = 0
    optimizer: dict | None = None
    scheduler: dict | None = None
    torch_rng: torch.Tensor | None = None
    cuda_rng: torch.Tensor | None = None
    scaler: dict | None = None

    def next_stage(self) -> "Progress":
        """Epoch 0 of the following stage: fresh optimizer, schedule and loss scale, the same
        generators. "done" keeps nothing (the shipped model file stays small)."""
        stage = STAGES[STAGES.index(self.stage) + 1]
        if stage == "done":
            return Progress(stage, 0)
        return Progress(stage, 0, torch_rng=self.torch_rng, cuda_rng=self.cuda_rng)

    def to_train_state(self) -> dict:
        """The checkpoint's ``train_state``: stage and epoch, plus the fields that are set."""
        state = {"stage": self.stage, "epoch": self.epoch}
        for key in ("optimizer", "scheduler", "torch_rng", "cuda_rng", "scaler"):
            if getattr(self, key) is not None:
                state[key] = getattr(self, key)
        return state

    @staticmethod
    def from_train_state(state: dict) -> "Progress":
        """The point a checkpoint's ``train_state`` resumes from; CheckpointError (one line)
        where it cannot resume exactly, rather than continuing a different run in silence."""
        if not state:
            raise CheckpointError("no training state (not written by train.py fit): nothing to resume; "
                                  "fine-tune from it with --init instead")
        stage, epoch = state.get("stage"), state.get("epoch")
        if stage not in STAGES or not isinstance(epoch, int) or epoch < 0:
            raise CheckpointError(f"malformed training state: stage {stage!r}, epoch {epoch!r}")
        if stage == "done":  # only the held-out evaluation is left, and it draws nothing at random
            return Progress(stage, epoch)
        rng = state.get("torch_rng")
        missing = [key for key in ("optimizer", "scheduler") if epoch > 0 and not isinstance(state.get(key), dict)]
        if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8:
            missing.append("torch_rng")
        if missing:
            raise CheckpointError(f"{stage} epoch {epoch} checkpoint lacks {', '.join(missing)} (written before "
                                  "exact resume, or damaged): it cannot be resumed exactly; start the run again, "
                                  "or fine-tune from it with --init")
        cuda_rng, scaler = state.get("cuda_rng"), state.get("scaler")
        return Progress(stage, epoch, state.get("optimizer"), state.get("scheduler"), rng,
                        cuda_rng if isinstance(cuda_rng, torch.Tensor) else None,
                        scaler if isinstance(scaler, dict) else None)


def continue_from(start: Progress, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
              scaler: torch.amp.GradScaler, device: str) -> None:
    """Put a fresh optimizer, schedule, loss scale and generators where ``start`` left them: the
    optimizer's state_dict brings the moments (load_state_dict moves them to the parameters'
    device) and the learning rate and betas set for the next step, the scheduler's its place
    in the cycle. A loss scale or CUDA generator from a run on another device has nothing to
    continue here and is left out."""
    if start.optimizer is not None:
        opt.load_state_dict(start.optimizer)
        sched.load_state_dict(start.scheduler)
    if start.scaler is not None and scaler.is_enabled():
        scaler.load_state_dict(start.scaler)
    if start.torch_rng is not None:
        torch.set_rng_state(start.torch_rng)
    if start.cuda_rng is not None and on_cuda(device):
        torch.cuda.set_rng_state(start.cuda_rng, device)


def _host(value):
    """``value`` (a state_dict: nested dicts and lists of tensors and plain values) with every
    tensor on the CPU. A CPU tensor stays itself (no copy)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_host(v) for v in value)
    return value


def after_epoch(stage: str, epoch: int, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
                 scaler: torch.amp.GradScaler, device: str) -> Progress:
    """Progress after ``epoch`` epochs, on the CPU. On the CPU the state_dicts reference the
    live tensors: the on_epoch callback saves them before the next step changes them."""
    return Progress(stage, epoch, _host(opt.state_dict()), sched.state_dict(), torch.get_rng_state(),
                    torch.cuda.get_rng_state(device) if on_cuda(device) else None,
                    scaler.state_dict() if scaler.is_enabled() else None)
