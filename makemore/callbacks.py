"""Callbacks: SGD-step intervals and progress bar, the embedding figure, the learning-rate finder's report."""

from pathlib import Path
from typing import Any, Optional

import lightning as L
import matplotlib

matplotlib.use("Agg")  # figures are written to files and TensorBoard, never shown
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.callbacks import LearningRateFinder, TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.tuner.lr_finder import _LRFinder
from lightning.pytorch.utilities import rank_zero_only

from makemore.data import CharDataModule, DataError, lr_finder_running, steps_per_batch_for


def tensorboard(trainer: L.Trainer):
    """The trainer's TensorBoard SummaryWriter, or None when it logs elsewhere."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def run_dir(trainer: L.Trainer) -> Path:
    """The folder of this run: the logger's version folder, else the trainer's root."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class StepIntervals(L.Callback):
    """Makes the trainer's batch-counted intervals count SGD steps, as they do in the lecture's loop.

    A makemore training batch carries many SGD steps (CharDataModule's steps_per_batch). Lightning counts
    `log_every_n_steps`, an integer `val_check_interval` and `limit_train_batches` in batches; a
    float `val_check_interval` is a share of the epoch's batches. For the length of a fit on a
    CharDataModule this callback reads all of them as SGD steps: it sizes the batches so that each interval (and a ModelCheckpoint's
    `every_n_train_steps`, which Lightning checks against global_step) ends on a batch boundary, at most
    `steps_per_batch` steps, and hands Lightning the same intervals in batches. The trainer's own values
    are put back when the fit ends. Validation that counts across epochs (`check_val_every_n_epoch:
    null`) also needs the epoch to be whole batches.
    """

    def __init__(self) -> None:
        self._saved: Optional[dict[str, Any]] = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if stage != "fit" or not isinstance(data, CharDataModule) or lr_finder_running(trainer):
            return
        epoch = data.epoch_steps()
        limit = trainer.limit_train_batches  # an int counts steps; a float is a share of the epoch
        if not isinstance(limit, int) or limit <= 0 or trainer.overfit_batches:  # overfit_batches sets it itself
            limit = None
        else:
            epoch = min(epoch, limit)
        # The trainer's intervals, read as SGD steps; Lightning gets them in batches.
        counted = {"log_every_n_steps": trainer.log_every_n_steps}
        timed = getattr(trainer, "_val_check_time_interval", None) is not None  # a wall-clock interval: untouched
        val = None if timed else trainer.val_check_interval
        if isinstance(val, float) and val < 1.0:
            val = max(1, int(epoch * val))  # Lightning's rule for a share of the epoch, in steps
        if isinstance(val, int):
            if trainer.check_val_every_n_epoch is not None and val > epoch and trainer.limit_val_batches > 0:
                raise DataError(
                    f"trainer.val_check_interval ({val} SGD steps) is longer than an epoch ({epoch} steps, see"
                    " data.steps_per_epoch); shorten it, or set trainer.check_val_every_n_epoch to null to count"
                    " it across epochs"
                )
            counted["val_check_interval"] = val
        if limit is not None:
            counted["limit_train_batches"] = limit
        # Also on batch boundaries: checkpoints every n steps (checked against global_step) and, when
        # validation counts batches across epochs, the epoch ends.
        aligned = [getattr(callback, "_every_n_train_steps", 0) for callback in trainer.checkpoint_callbacks]
        if "val_check_interval" in counted and trainer.check_val_every_n_epoch is None:
            aligned.append(epoch)
        steps = steps_per_batch_for([n for n in [*counted.values(), *aligned] if n > 0], data.hparams.steps_per_batch)
        data.batch_steps = steps
        self._saved = {name: getattr(trainer, name) for name in counted}
        for name, value in counted.items():
            setattr(trainer, name, value // steps)

    def _restore(self, trainer: L.Trainer) -> None:
        if self._saved is not None:
            for name, value in self._saved.items():
                setattr(trainer, name, value)
            self._saved = None
        if isinstance(trainer.datamodule, CharDataModule):
            trainer.datamodule.batch_steps = None

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore(trainer)


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting SGD steps (global_step) rather than Lightning batches.

    A makemore batch carries many SGD steps, so the stock bar would read 30/3000 after 3,000 steps.
    """

    def _total_steps(self, trainer: L.Trainer) -> float:
        if trainer.max_steps > 0:
            return trainer.max_steps
        steps_per_epoch = getattr(trainer.train_dataloader, "steps_per_epoch", None)
        if steps_per_epoch is None or trainer.max_epochs is None or trainer.max_epochs < 0:
            return float("inf")
        return steps_per_epoch * trainer.max_epochs

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.total = convert_inf(self._total_steps(trainer))
        # tqdm's rate counts from `initial` and `last_print_n`: start both at the steps already done
        bar.n = bar.initial = bar.last_print_n = trainer.global_step
        bar.refresh()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()


def embedding_figure(weight: torch.Tensor, labels: list[str]) -> plt.Figure:
    """A labelled scatter of character embeddings: the two dimensions, or the first two principal components."""
    points = weight.detach().float().cpu()
    if points.shape[1] == 2:
        axes_names = ("dimension 0", "dimension 1")
    else:
        _, _, V = torch.pca_lowrank(points, q=2)
        points = (points - points.mean(0)) @ V[:, :2]
        axes_names = ("principal component 1", "principal component 2")
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(points[:, 0], points[:, 1], s=200, color="tab:blue")
    for (x, y), label in zip(points.tolist(), labels):
        ax.text(x, y, label, ha="center", va="center", color="white")
    ax.set_xlabel(axes_names[0])
    ax.set_ylabel(axes_names[1])
    ax.set_title("character embeddings")
    ax.grid(alpha=0.3)
    return fig


class EmbeddingVisualizer(L.Callback):
    """At the end of fit, the character embeddings go to TensorBoard: a scatter figure and the projector."""

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard(trainer)
        if writer is None:
            return
        weight = pl_module.net.embedding.weight.detach().cpu()
        labels = list(pl_module.hparams.vocab)
        writer.add_figure("embeddings", embedding_figure(weight, labels), trainer.global_step)
        writer.add_embedding(weight, metadata=labels, tag="character_embeddings", global_step=trainer.global_step)
        writer.flush()


def suggest_learning_rate(finder: _LRFinder, skip_begin: int = 10, skip_end: int = 1) -> Optional[float]:
    """The rate where the (smoothed) loss falls fastest against log(rate), skipping the sweep's ends.

    Lightning's `suggestion()` takes the slope against the rate itself; on an exponential sweep that
    favours the smallest rates (it suggests 0.0015 for the lecture's model, whose loss keeps falling
    until about 0.1).
    """
    lrs = torch.tensor(finder.results["lr"], dtype=torch.float64)[skip_begin:-skip_end]
    losses = torch.tensor(finder.results["loss"], dtype=torch.float64)[skip_begin:-skip_end]
    finite = torch.isfinite(losses)
    lrs, losses = lrs[finite], losses[finite]
    if len(losses) < 2:
        return None
    slope = torch.gradient(losses, spacing=[lrs.log()])[0]
    return float(lrs[slope.argmin()])


def report_lr_find(trainer: L.Trainer, finder: _LRFinder) -> Optional[float]:
    """Print the suggested learning rate, save the loss-vs-rate plot as PNG and to TensorBoard."""
    suggestion = suggest_learning_rate(finder)
    if trainer.is_global_zero and suggestion is not None:
        fig = finder.plot(suggest=False)
        ax = fig.axes[0]
        index = finder.results["lr"].index(suggestion)
        ax.plot(suggestion, finder.results["loss"][index], marker="o", markersize=10, color="red")
        ax.set_title(f"learning-rate finder: suggestion {suggestion:.3g} (steepest fall against log rate)")
        path = run_dir(trainer) / "lr_find.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        writer = tensorboard(trainer)
        if writer is not None:
            writer.add_figure("lr_find", fig, trainer.global_step)
            writer.flush()
        print(f"suggested learning rate: {suggestion:.4g} (Lightning's own heuristic: {finder.suggestion():.4g}; plot: {path})")
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
        super().lr_find(trainer, pl_module)
        suggestion = report_lr_find(trainer, self.optimal_lr) if self.optimal_lr is not None else None
        if suggestion is not None:  # train with our suggestion, not Lightning's (see suggest_learning_rate)
            pl_module.learning_rate = suggestion
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = suggestion
