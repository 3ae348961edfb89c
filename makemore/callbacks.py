"""The callbacks of every fit (best and last checkpoints, the embedding figure) and per-step weight averaging.

Figures are built with matplotlib.figure.Figure, not pyplot: nothing changes matplotlib's backend or
pyplot's list of open figures (a notebook keeps its inline plots).
"""

from pathlib import Path
from typing import Any, Optional, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from matplotlib.figure import Figure

from makemore import _compat
from makemore.errors import ConfigError
from makemore.text import Vocabulary

# Counted in SGD steps (makemore.steps): train_loss is the mean of this many steps. It also caps the steps one
# Lightning batch carries, so a small value costs speed.
LOG_EVERY_N_STEPS = 1000


def fit_callbacks() -> list[L.Callback]:
    """The callbacks every makemore fit has (CLI and makemore.api): the best-val_loss checkpoint, last.ckpt and
    the embedding figure at the end."""
    return [
        BestCheckpoint(),
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


class BestCheckpoint(ModelCheckpoint):
    """The checkpoint of the lowest val_loss, written when a validation ends and named by its SGD step
    (step=S-val_loss=L.ckpt); a resumed run keeps the best of the run it resumes until it does better.

    At an epoch's end (Lightning's choice here) it would also be tried where no validation ran, and warn of a missing
    val_loss (Lightning restarts the epoch end of the checkpoint a run resumes from). A resumed run writes into a new
    run folder, and Lightning's ModelCheckpoint then restores only `best_model_path`, not its score: the resumed run's
    first validation, however much worse, would become its best. Here the score is restored too, with the paths of
    the best checkpoints that still exist (where the run folder was, or beside the checkpoint resumed from, if it
    moved); Lightning removes a checkpoint it replaces only inside this run's folder, so the older run's stays.
    """

    def __init__(self) -> None:
        super().__init__(
            monitor="val_loss", mode="min", filename="{step}-{val_loss:.4f}", save_on_train_epoch_end=False
        )
        self._resumed_from: Optional[Path] = None

    @property
    def state_key(self) -> str:
        # the key of Lightning's ModelCheckpoint, so that checkpoints written before this class resume with their best
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._resumed_from = Path(trainer.ckpt_path) if trainer.ckpt_path else None

    def _existing(self, path: str) -> Optional[str]:
        """`path` if that checkpoint exists, else the file of its name beside the checkpoint resumed from, else None."""
        if not path:
            return None
        candidates = [Path(path)] + ([self._resumed_from.parent / Path(path).name] if self._resumed_from else [])
        return next((str(candidate) for candidate in candidates if candidate.is_file()), None)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("dirpath", self.dirpath) == self.dirpath or state_dict.get("monitor") != self.monitor:
            return super().load_state_dict(state_dict)
        best_k_models = {
            found: score
            for path, score in state_dict.get("best_k_models", {}).items()
            if (found := self._existing(path))
        }
        best = self._existing(state_dict.get("best_model_path", ""))
        if best is None or best not in best_k_models:  # the best is gone: this run's own validations decide
            return
        super().load_state_dict(
            {
                **state_dict,
                "dirpath": self.dirpath,
                "best_model_path": best,
                "best_k_models": best_k_models,
                "kth_best_model_path": self._existing(state_dict.get("kth_best_model_path", "")) or best,
                "last_model_path": "",
            }
        )


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
        labels = Vocabulary(pl_module.hparams.vocab).labels()
        tables = [
            m for m in pl_module.net.modules() if isinstance(m, torch.nn.Embedding) and m.num_embeddings == len(labels)
        ]
        if not tables:  # a network without a character embedding (the bigram's table is its logits)
            return
        weight = tables[0].weight.detach().cpu()
        writer.add_figure("plots/embeddings", embedding_figure(weight, labels), trainer.global_step)
        writer.add_embedding(weight, metadata=labels, tag="character_embeddings", global_step=trainer.global_step)
        writer.flush()


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
            if 0 < trainer.max_steps < self._first + self.every_n_steps:
                rank_zero_info(
                    f"makemore: SWAWeightAveraging averages nothing: from step {self._first} (start {self.start}) it"
                    f" would add a step every {self.every_n_steps}, and the fit ends at trainer.max_steps"
                    f" ({trainer.max_steps}) first; the weights are the trained ones"
                )
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
