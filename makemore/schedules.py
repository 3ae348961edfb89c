"""Learning-rate schedules that torch does not have as one class a config can name."""

import math

import torch
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosineLR(LRScheduler):
    """Linear warmup, then cosine decay to a floor: the schedule of nanoGPT and the GPT lecture.

    The rate at SGD step s (0-based, stepped once per SGD step with model.lr_scheduler_interval step) is
    base_lr * (s + 1) / (warmup_steps + 1) during the warmup, then follows half a cosine from base_lr down to
    eta_min at step T_max, and stays at eta_min after it (nanoGPT's get_lr, with T_max its lr_decay_iters).

    Args:
        optimizer: the optimizer (given by makemore).
        warmup_steps: SGD steps of the linear warmup (0: none).
        T_max: the SGD step where the decay reaches eta_min (usually trainer.max_steps).
        eta_min: the floor of the rate (nanoGPT's min_lr; the lecture uses a tenth of the rate).
        last_epoch: the index of the last step, as torch's schedulers count (-1: a new run).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 0,
        T_max: int = 5000,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be at least 0, got {warmup_steps}")
        if warmup_steps >= T_max:
            raise ValueError(f"warmup_steps ({warmup_steps}) must be below T_max ({T_max})")
        if eta_min < 0:
            raise ValueError(f"eta_min must be at least 0, got {eta_min}")
        self.warmup_steps, self.T_max, self.eta_min = warmup_steps, T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def rate(self, step: int, base_lr: float) -> float:
        """The learning rate at SGD step `step` (0-based) for the base rate `base_lr`."""
        if step < self.warmup_steps:
            return base_lr * (step + 1) / (self.warmup_steps + 1)
        if step >= self.T_max:
            return self.eta_min
        progress = (step - self.warmup_steps) / (self.T_max - self.warmup_steps)
        return self.eta_min + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - self.eta_min)

    def get_lr(self) -> list[float]:
        return [self.rate(self.last_epoch, base_lr) for base_lr in self.base_lrs]
