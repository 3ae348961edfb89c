"""The learning-rate finder, in one place: the `lr_find` subcommand, the callback that sweeps before a fit, the
raw losses of a sweep, makemore's smoothing and suggestion, and the loss-against-rate plot.

Lightning's finder sweeps (one SGD step per batch: makemore.steps gives it batches of one step, and the
diagnostics and BatchNorm calibration skip its steps, through makemore._compat.lr_finder_running); makemore
records each step's raw loss (`record_sweep_losses`), smooths it with bias correction and suggests the rate
where the smoothed loss falls fastest. Figures are matplotlib.figure.Figure objects: pyplot is never touched.
"""

import logging
import math
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import lightning as L
import torch
from jsonargparse.typing import PositiveFloat, PositiveInt
from lightning.pytorch.callbacks import LearningRateFinder
from lightning.pytorch.tuner import Tuner
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure

from makemore import _compat
from makemore.callbacks import run_dir, tensorboard
from makemore.errors import ConfigError

# The suggestion leaves out the sweep's first steps (the loss still falls from its untrained value whatever the rate)
# and its last (where the rate is too high), and needs a few points between to take a slope across.
SKIP_BEGIN, SKIP_END, MIN_POINTS = 10, 1, 3
MIN_SWEEP_STEPS = SKIP_BEGIN + SKIP_END + MIN_POINTS


def smooth(losses: list[float], beta: float = 0.98) -> list[float]:
    """Exponential moving average with bias correction: the first point is the first loss itself.

    (Lightning's finder divides its first average by 1 - beta^2 rather than 1 - beta, so its curve starts
    at about half the untrained loss and then jumps up; makemore smooths the raw losses itself.)
    """
    smoothed, average = [], 0.0
    for k, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (k + 1)))
    return smoothed


def suggest_learning_rate(
    lrs: list[float], losses: list[float], skip_begin: int = SKIP_BEGIN, skip_end: int = SKIP_END
) -> Optional[float]:
    """The rate where the (smoothed) loss falls fastest against log(rate), before its minimum.

    The slope at each point is taken across a window of a twentieth of the sweep on each side, so that a
    wiggle of the noisy curve does not count as a fall; points after the lowest loss (where the rate is
    already too high) are not considered. Lightning's `suggestion()` takes the slope against the rate
    itself, which on an exponential sweep favours the smallest rates.
    """
    lrs = torch.tensor(lrs, dtype=torch.float64)[skip_begin:-skip_end]
    losses = torch.tensor(losses, dtype=torch.float64)[skip_begin:-skip_end]
    finite = torch.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(losses) < MIN_POINTS:
        return None
    end = int(losses.argmin()) + 1  # the fall happens before the lowest loss
    half = max(1, len(losses) // 20)
    if end - half <= half:  # too short a fall for the window: neighbouring points
        half = 1
    if end - half <= half:
        return float(lrs[max(end - 1, 0)])
    x = lrs.log()
    centre = torch.arange(half, end - half)
    slope = (losses[centre + half] - losses[centre - half]) / (x[centre + half] - x[centre - half])
    return float(lrs[centre[slope.argmin()]])


def lr_find_figure(lrs: list[float], raw: list[float], smoothed: list[float], suggestion: float) -> Figure:
    """The loss against the learning rate (log axis): raw and smoothed, with the suggestion marked."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.plot(lrs, raw, color="tab:blue", alpha=0.25, label="loss of each step")
    ax.plot(lrs, smoothed, color="tab:blue", label="smoothed")
    ax.set_xscale("log")
    ax.plot(suggestion, smoothed[lrs.index(suggestion)], marker="o", markersize=10, color="red", label="suggestion")
    ax.set_ylim(top=max(raw[0], smoothed[0]) * 1.5)  # the divergence at the end would squash the curve
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate finder: suggestion {suggestion:.3g} (steepest fall against log rate)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


# What Lightning's finder says of its own temporary checkpoint (that it saves it without `weights_only`, restores
# it, and that the sweep's fit stopped at its last step), by these loggers at INFO: nothing a user can act on.
SWEEP_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.trainer.connectors.checkpoint_connector")


@contextmanager
def quiet_sweep() -> Iterator[None]:
    """Raise SWEEP_LOGGERS to WARNING while a sweep runs (their warnings and errors still show), then put them back."""
    loggers = [logging.getLogger(name) for name in SWEEP_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def run_lr_sweep(trainer: L.Trainer, pl_module: L.LightningModule, sweep) -> tuple[Any, list[float]]:
    """Run `sweep()` (Lightning's finder) while the module records the raw loss of every step; (finder, losses)."""
    pl_module.sweep_losses = []
    try:
        with quiet_sweep():
            return sweep(), pl_module.sweep_losses
    finally:
        del pl_module.sweep_losses


def report_lr_find(trainer: L.Trainer, finder: Any, raw: list[float]) -> Optional[float]:
    """Print the suggested learning rate of a finished sweep (Lightning's finder object and the raw losses), save
    the plot as PNG and to TensorBoard."""
    lrs = finder.results["lr"][: len(raw)]
    smoothed = smooth(raw)
    suggestion = suggest_learning_rate(lrs, smoothed)
    if suggestion is None:
        finite = sum(math.isfinite(loss) for loss in smoothed[SKIP_BEGIN:-SKIP_END])
        rank_zero_info(
            f"makemore: no suggested learning rate: of the sweep's {len(raw)} steps, {finite} after its first"
            f" {SKIP_BEGIN} have a finite loss, fewer than the {MIN_POINTS} a slope needs (the loss diverged early:"
            " lower the sweep's max_lr)"
        )
    if trainer.is_global_zero and suggestion is not None:
        fig = lr_find_figure(lrs, raw, smoothed, suggestion)
        path = run_dir(trainer) / "lr_find.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        writer = tensorboard(trainer)
        if writer is not None:
            writer.add_figure("plots/lr_find", fig, trainer.global_step)
            writer.flush()
        lightning = finder.suggestion()
        print(
            f"suggested learning rate: {suggestion:.4g} (Lightning's own heuristic: "
            + (f"{lightning:.4g}" if lightning is not None else "none")
            + f"; plot: {path})"
        )
    return suggestion


def check_sweep(
    min_lr: float,
    max_lr: float,
    steps: int,
    min_name: str = "--min_lr",
    max_name: str = "--max_lr",
    steps_name: str = "--num_training",
) -> None:
    """Refuse, before any work, a sweep that cannot suggest a rate: rates not positive or not rising, or too few steps.

    Args:
        min_lr: the sweep's lowest rate.
        max_lr: its highest.
        steps: its SGD steps.
        min_name: how the message names min_lr (the first name is its subject: "lr_find: --min_lr").
        max_name: how it names max_lr.
        steps_name: how it names the steps.
    """
    if not 0 < min_lr < max_lr:
        raise ConfigError(
            f"{min_name} {min_lr} must be above 0 and below {max_name} {max_lr}: the sweep rises from the one to the"
            " other"
        )
    if steps < MIN_SWEEP_STEPS:
        raise ConfigError(
            f"{steps_name} {steps} is too short a sweep to suggest a rate: the suggestion leaves out its first"
            f" {SKIP_BEGIN} steps and its last {SKIP_END}, and needs {MIN_POINTS} between; give at least"
            f" {MIN_SWEEP_STEPS}"
        )


class FindLearningRate(LearningRateFinder):
    """Lightning's LearningRateFinder with the lecture's sweep (1e-3 to 1 over 1,000 steps) and a saved plot.

    Add it to fit's callbacks to sweep first and train with the suggested rate.

    Args:
        min_lr: lowest learning rate of the sweep.
        max_lr: highest learning rate of the sweep.
        num_training_steps: SGD steps in the sweep.
    """

    def __init__(
        self, min_lr: PositiveFloat = 1e-3, max_lr: PositiveFloat = 1.0, num_training_steps: PositiveInt = 1000
    ) -> None:
        check_sweep(min_lr, max_lr, num_training_steps, "FindLearningRate: min_lr", "max_lr", "num_training_steps")
        super().__init__(min_lr=min_lr, max_lr=max_lr, num_training_steps=num_training_steps, attr_name="learning_rate")

    def lr_find(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _, raw = run_lr_sweep(trainer, pl_module, lambda: super(FindLearningRate, self).lr_find(trainer, pl_module))
        suggestion = report_lr_find(trainer, self.optimal_lr, raw) if self.optimal_lr is not None else None
        if suggestion is not None:  # train with our suggestion, not Lightning's (see suggest_learning_rate)
            pl_module.learning_rate = suggestion
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = suggestion


def record_sweep_losses(module: L.LightningModule, losses: torch.Tensor) -> bool:
    """Keep the raw losses of a sweep's steps (MakemoreModule.training_step calls it); whether a sweep is running."""
    if not _compat.lr_finder_running(module.trainer):
        return False
    if isinstance(getattr(module, "sweep_losses", None), list):  # makemore's sweep (run_lr_sweep), not a bare one
        module.sweep_losses.extend(losses.tolist())
    return True


def sweep(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: Optional[L.LightningDataModule],
    min_lr: float,
    max_lr: float,
    num_training: int,
) -> Optional[float]:
    """The lr_find subcommand: Lightning's finder sweeps, makemore prints its suggestion and saves the plot."""
    finder, raw = run_lr_sweep(
        trainer,
        model,
        lambda: Tuner(trainer).lr_find(
            model, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr, num_training=num_training, update_attr=False
        ),
    )
    return report_lr_find(trainer, finder, raw)
