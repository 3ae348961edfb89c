"""Callbacks and figures: the embedding figure, the learning-rate finder's suggestion and plot.

Figures are built with matplotlib.figure.Figure, not pyplot: nothing changes matplotlib's backend or
pyplot's list of open figures (a notebook keeps its inline plots).
"""

from pathlib import Path
from typing import Any, Optional, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateFinder, ModelCheckpoint, WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.figure import Figure

from makemore import _compat
from makemore.errors import ConfigError

# Counted in SGD steps (makemore.steps): train_loss is the mean of this many steps. It also caps the steps one
# Lightning batch carries, so a small value costs speed.
LOG_EVERY_N_STEPS = 1000


def fit_callbacks() -> list[L.Callback]:
    """The callbacks every makemore fit has (CLI and makemore.api): the best-val_loss checkpoint, last.ckpt and
    the embedding figure at the end."""
    return [
        ModelCheckpoint(monitor="val_loss", mode="min", filename="{epoch}-{step}-{val_loss:.4f}"),
        LastCheckpoint(),
        EmbeddingVisualizer(),
    ]


def tensorboard(trainer: L.Trainer):
    """The trainer's TensorBoard SummaryWriter, or None when it logs elsewhere."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run: the logger's version folder, else the trainer's root."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt` in the run's checkpoints folder: at every validation and at the end of every epoch, the last one
    (cut short by max_steps or a stop) included.

    Lightning's `save_last` follows only improvements of the monitored metric, and a plain ModelCheckpoint
    writes nothing after the last validation: a run whose intervals do not end on its last step would lose
    those steps. The epoch end comes after the epoch's last validation and before on_train_end, where weight
    averaging puts the averaged weights in place of the trained ones: the checkpoint keeps both, and a run
    extended from it continues exactly. A fit that stops on an error (divergence, SIGTERM, a kill) does not
    reach the epoch end.
    """

    def __init__(self) -> None:
        # at each validation's end as usual; the epoch-end write is this class's own
        super().__init__(filename="last", enable_version_counter=False, save_on_train_epoch_end=False)
        self._at_epoch_end = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.fast_dev_run and trainer.global_step > 0 and not _compat.lr_finder_running(trainer):
            self._at_epoch_end = True
            try:
                trainer.save_checkpoint(self.format_checkpoint_name({}), weights_only=self.save_weights_only)
            finally:
                self._at_epoch_end = False

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> dict:
        if self._at_epoch_end:
            _compat.mark_saved_after_the_batch_counted(checkpoint)
        return super().on_save_checkpoint(trainer, pl_module, checkpoint)


def embedding_figure(weight: torch.Tensor, labels: list[str]) -> Figure:
    """A labelled scatter of character embeddings: the two dimensions, or the first two principal components."""
    points = weight.detach().float().cpu()
    if points.shape[1] == 2:
        axes_names = ("dimension 0", "dimension 1")
    else:
        _, _, V = torch.pca_lowrank(points, q=2)
        points = (points - points.mean(0)) @ V[:, :2]
        axes_names = ("principal component 1", "principal component 2")
    fig = Figure(figsize=(6, 6))
    ax = fig.subplots()
    ax.scatter(points[:, 0], points[:, 1], s=200, color="tab:blue")
    for (x, y), label in zip(points.tolist(), labels):
        ax.text(x, y, label, ha="center", va="center", color="white")
    ax.set_xlabel(axes_names[0])
    ax.set_ylabel(axes_names[1])
    ax.set_title("character embeddings")
    ax.grid(alpha=0.3)
    return fig


class EmbeddingVisualizer(L.Callback):
    """At the end of fit, the character embeddings go to TensorBoard: a scatter figure and the projector.

    The embedding is the network's first nn.Embedding with one row per character; a network without one
    gets neither.
    """

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard(trainer)
        if writer is None:
            return
        labels = list(pl_module.hparams.vocab)
        tables = [
            m for m in pl_module.net.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == len(labels)
        ]
        if not tables:  # a network without a character embedding (the bigram's table is its logits)
            return
        weight = tables[0].weight.detach().cpu()
        writer.add_figure("plots/embeddings", embedding_figure(weight, labels), trainer.global_step)
        writer.add_embedding(weight, metadata=labels, tag="character_embeddings", global_step=trainer.global_step)
        writer.flush()


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
    lrs: list[float], losses: list[float], skip_begin: int = 10, skip_end: int = 1
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
    if len(losses) < 3:
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


def run_lr_sweep(trainer: L.Trainer, pl_module: L.LightningModule, sweep) -> tuple[Any, list[float]]:
    """Run `sweep()` (Lightning's finder) while the module records the raw loss of every step; (finder, losses)."""
    pl_module.sweep_losses = []
    try:
        return sweep(), pl_module.sweep_losses
    finally:
        del pl_module.sweep_losses


def report_lr_find(trainer: L.Trainer, finder: Any, raw: list[float]) -> Optional[float]:
    """Print the suggested learning rate of a finished sweep (Lightning's finder object and the raw losses), save
    the plot as PNG and to TensorBoard."""
    lrs = finder.results["lr"][: len(raw)]
    smoothed = smooth(raw)
    suggestion = suggest_learning_rate(lrs, smoothed)
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


class FindLearningRate(LearningRateFinder):
    """Lightning's LearningRateFinder with the lecture's sweep (1e-3 to 1 over 1,000 steps) and a saved plot.

    Add it to fit's callbacks to sweep first and train with the suggested rate.

    Args:
        min_lr: lowest learning rate of the sweep.
        max_lr: highest learning rate of the sweep.
        num_training_steps: SGD steps in the sweep.
    """

    def __init__(self, min_lr: float = 1e-3, max_lr: float = 1.0, num_training_steps: int = 1000) -> None:
        super().__init__(min_lr=min_lr, max_lr=max_lr, num_training_steps=num_training_steps, attr_name="learning_rate")

    def lr_find(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _, raw = run_lr_sweep(trainer, pl_module, lambda: super(FindLearningRate, self).lr_find(trainer, pl_module))
        suggestion = report_lr_find(trainer, self.optimal_lr, raw) if self.optimal_lr is not None else None
        if suggestion is not None:  # train with our suggestion, not Lightning's (see suggest_learning_rate)
            pl_module.learning_rate = suggestion
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = suggestion


class SWAWeightAveraging(WeightAveraging):
    """Stochastic weight averaging (Izmailov et al. 2018) after every SGD step: the equal average of the weights from
    step `start` on, validated, checkpointed and sampled in their place (Lightning's WeightAveraging does that).

    Lightning's StochasticWeightAveraging averages once per epoch and swaps in its own learning-rate schedule at epoch
    starts; this one averages per SGD step and leaves the rate to model.lr_scheduler. Before `start` the average is
    the current weights, so validation then scores the network as it trains.

    Args:
        start: the first SGD step in the average: an integer counts steps, a number below 1 is that share of
            trainer.max_steps.
        every_n_steps: add the weights to the average after every n-th SGD step from `start`.
        use_buffers: average the buffers too (BatchNorm's running statistics); false keeps the network's own.
    """

    def __init__(self, start: Union[int, float] = 0.75, every_n_steps: int = 1, use_buffers: bool = True) -> None:
        if isinstance(start, float) and not 0 < start < 1 or start <= 0:
            raise ConfigError(
                f"SWAWeightAveraging: start is a step (at least 1) or a share of max_steps below 1, got {start}"
            )
        if every_n_steps < 1:
            raise ConfigError(f"SWAWeightAveraging: every_n_steps must be at least 1, got {every_n_steps}")
        super().__init__(use_buffers=use_buffers, avg_fn=self._average)
        self.start, self.every_n_steps = start, every_n_steps
        self._first = 1  # the first step averaged, in this fit
        self._step = 0  # the step being added to the average

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            if isinstance(self.start, float):
                if trainer.max_steps < 1:
                    raise ConfigError("SWAWeightAveraging: a start given as a share of trainer.max_steps needs it set")
                self._first = max(1, round(self.start * trainer.max_steps))
            else:
                self._first = self.start
        super().setup(trainer, pl_module, stage)

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        if step_idx is None:
            return False
        self._step = step_idx + 1  # step_idx counts from 0: the step just taken is step_idx + 1
        return self._step <= self._first or (self._step - self._first) % self.every_n_steps == 0

    def _average(self, averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        averaged_before = (self._step - self._first) // self.every_n_steps  # steps in the average so far
        if averaged_before <= 0:  # up to `start` the average follows the weights
            return current
        return averaged + (current - averaged) / (averaged_before + 1)
