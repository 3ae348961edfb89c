"""The LightningModule: SGD steps, losses and perplexity per split, learning rate, samples."""

import inspect
import pickle
import re
from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities.model_helpers import is_overridden
from torchmetrics import MeanMetric

try:  # torch's own rule for the optimizers' default implementation (private: without it torch decides per step)
    from torch.optim.optimizer import _default_to_fused_or_foreach
except ImportError:
    _default_to_fused_or_foreach = None

from makemore.callbacks import StepIntervals, StepProgressBar
from makemore.data import Vocabulary
from makemore.model import MLP


class CheckpointError(ValueError):
    """A file that cannot serve as a makemore checkpoint; the message names it."""


class MakemoreModule(L.LightningModule):
    """Trains the embedding-MLP on batches that each carry many SGD steps (see `training_step`).

    Args:
        vocab: the vocabulary, `.` first; linked from the data by the CLI and kept in checkpoints.
        block_size: context length; linked from the data.
        n_embd: embedding dimensions per character.
        n_hidden: width of each hidden layer.
        n_layers: number of hidden layers.
        batch_norm: BatchNorm1d before each tanh.
        dropout: dropout probability after each tanh.
        learning_rate: the optimizer's learning rate (the LR finder sets this).
        optimizer: the torch.optim class and its other arguments; called with the parameters and lr.
        lr_scheduler: learning-rate schedule, called with the optimizer; None keeps the rate constant.
        lr_scheduler_interval: step the schedule after every SGD step ("step") or every epoch ("epoch").
        num_samples: names sampled to TensorBoard text at each validation.
        max_sample_length: longest name sampling will produce.
    """

    def __init__(
        self,
        vocab: str,
        block_size: int = 3,
        n_embd: int = 10,
        n_hidden: int = 200,
        n_layers: int = 1,
        batch_norm: bool = False,
        dropout: float = 0.0,
        learning_rate: float = 0.1,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        num_samples: int = 10,
        max_sample_length: int = 50,
    ) -> None:
        super().__init__()
        # The optimizer and schedule are callables: the CLI config keeps them, the checkpoint keeps
        # their state. Everything saved is plain data, so checkpoints load with weights_only=True.
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.automatic_optimization = False  # training_step takes many SGD steps per Lightning batch
        self.vocabulary = Vocabulary(vocab)
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.net = MLP(len(self.vocabulary), block_size, n_embd, n_hidden, n_layers, batch_norm, dropout)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def configure_callbacks(self) -> list[L.Callback]:
        # A batch here is many SGD steps: the trainer's intervals and the progress bar count steps.
        callbacks: list[L.Callback] = [StepIntervals()]
        bar = self.trainer.progress_bar_callback
        if type(bar) is TQDMProgressBar:
            callbacks.append(StepProgressBar(refresh_rate=bar.refresh_rate, leave=bar._leave))
        return callbacks

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        return self.net(idx, targets)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters(), lr=self.learning_rate)
        for group in optimizer.param_groups if _default_to_fused_or_foreach else []:
            # Left unset, torch.optim chooses between its for-loop and foreach code at every step; on a
            # small model that check costs several percent of the step. Make torch's own choice once.
            if "foreach" in group and group["foreach"] is None and group.get("fused") is None:
                group["foreach"] = _default_to_fused_or_foreach(group["params"], group.get("differentiable", False))[1]
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.lr_scheduler_interval}}

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One SGD step per mini-batch in the batch: X (steps, b, block_size), Y (steps, b)."""
        X, Y = batch
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        step_scheduler = scheduler is not None and self._scheduler_interval() == "step"
        # Never run past max_steps: global_step counts optimizer steps.
        max_steps = self.trainer.max_steps
        steps = len(Y) if max_steps < 0 else min(len(Y), max_steps - self.global_step)
        direct = self._direct_steps()
        net, torch_optimizer = self.net, optimizer.optimizer
        losses = []
        for x, y in zip(X[:steps].unbind(), Y[:steps].unbind()):
            _, loss = net(x, y)
            torch_optimizer.zero_grad()  # what LightningOptimizer.zero_grad forwards to
            if direct:
                # What manual_backward and LightningOptimizer.step do on one device in 32-bit with no hooks
                # to call, minus their per-call overhead: backward, then the torch optimizer, counted as a step.
                loss.backward()
                optimizer._on_before_step()
                torch_optimizer.step()
                optimizer._on_after_step()
            else:
                self.manual_backward(loss)
                optimizer.step()
            if step_scheduler:
                scheduler.step()
            losses.append(loss.detach())
        total = torch.stack(losses).sum() if losses else torch.zeros((), device=Y.device)
        mean = total / max(steps, 1)
        # Log against the SGD step, not Lightning's batch count (`step` sets the logger's x-axis).
        self.log("step", float(self.global_step), on_step=True, on_epoch=False, logger=True)
        self.log("train_loss", mean, on_step=True, on_epoch=False, prog_bar=True)
        self.log("lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)
        return mean

    def _direct_steps(self) -> bool:
        """Whether an SGD step may skip Lightning's wrappers without changing what runs.

        Those wrappers exist for several processes (DDP's gradient sync), mixed precision (loss scaling)
        and the backward/optimizer hooks; here they would be pure overhead per step (see README, Performance).
        """
        trainer = self.trainer
        if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
            return False
        hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
        return not any(
            is_overridden(hook, self, L.LightningModule) or any(is_overridden(hook, cb, L.Callback) for cb in trainer.callbacks)
            for hook in hooks
        )

    def _scheduler_interval(self) -> str:
        return self.trainer.lr_scheduler_configs[0].interval

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None and self._scheduler_interval() == "epoch":
            scheduler.step()

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], metric: MeanMetric) -> None:
        X, Y = batch
        _, loss = self.net(X, Y)
        metric.update(loss, weight=len(Y))  # example-weighted: exact whatever the batch sizes

    def _log_split(self, stage: str, metric: MeanMetric) -> None:
        loss = metric.compute()  # reduced over processes
        metric.reset()
        if self.trainer.state.fn == "fit":  # x-axis: SGD steps (validate/test alone have no step count)
            self.log("step", float(self.global_step))
        self.log(f"{stage}_loss", loss, prog_bar=True)
        self.log(f"{stage}_perplexity", loss.exp())

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_split("val", self.val_loss)
        if not self.trainer.sanity_checking and isinstance(self.logger, TensorBoardLogger) and self.trainer.is_global_zero:
            generator = torch.Generator(self.device).manual_seed(self.global_step)
            names = self.sample(self.hparams.num_samples, generator)
            self.logger.experiment.add_text("samples", "  \n".join(names), self.global_step)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss)

    def on_test_epoch_end(self) -> None:
        self._log_split("test", self.test_loss)

    def sample(self, num_samples: int, generator: Optional[torch.Generator] = None) -> list[str]:
        """Draw names from the model, each until it samples `.`."""
        was_training = self.net.training
        self.net.eval()
        ids = self.net.generate(num_samples, self.hparams.max_sample_length, generator)
        self.net.train(was_training)
        # generate() fills everything from a word's `.` on with 0, so the nonzero ids are the word
        return [self.vocabulary.decode(row[row != 0].tolist()) for row in ids.cpu()]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning does not keep the random state: a resumed run needs it for the same dropout masks.
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_available():
            checkpoint["cuda_rng_states"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"].cpu())
        if "cuda_rng_states" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in checkpoint["cuda_rng_states"]])
        # The data decides the vocabulary and the context length: weights trained on others cannot fit.
        saved = checkpoint.get("hyper_parameters") or {}
        trainer = self._trainer
        source = f"{trainer.ckpt_path}: " if trainer is not None and trainer.ckpt_path else ""
        if "vocab" in saved and saved["vocab"] != self.hparams.vocab:
            raise CheckpointError(
                f"{source}the checkpoint was trained on the vocabulary {saved['vocab']!r}, but the data has"
                f" {self.hparams.vocab!r}; use the data file it was trained on"
            )
        if "block_size" in saved and saved["block_size"] != self.hparams.block_size:
            raise CheckpointError(
                f"{source}the checkpoint was trained with data.block_size {saved['block_size']}, but this run has"
                f" {self.hparams.block_size}; use the block_size it was trained with"
            )


def read_checkpoint(path: str, map_location: str = "cpu") -> dict:
    """Load a makemore checkpoint as plain data (weights_only); CheckpointError, naming the file, if it is not one."""
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file") from None
    except PermissionError:
        raise CheckpointError(f"{path}: cannot read: permission denied") from None
    except Exception as err:  # torch raises many kinds for truncated or foreign files and unsafe pickles
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
        if unsafe:
            raise CheckpointError(
                f"{path}: refused: it holds Python code ({unsafe.group(1)}) that loading could run; makemore"
                " checkpoints hold only weights and plain data, so do not trust this file"
            ) from None
        raise CheckpointError(f"{path}: not a checkpoint (truncated, corrupt, or not written by torch.save)") from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or "vocab" not in hparams or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a makemore checkpoint (no makemore hyperparameters or weights)")
    return checkpoint


def load_checkpoint(path: str, map_location: str = "cpu") -> MakemoreModule:
    """Rebuild a trained module from a checkpoint alone, refusing anything but plain data (weights_only)."""
    checkpoint = read_checkpoint(path, map_location)
    hparams = checkpoint["hyper_parameters"]
    accepted = inspect.signature(MakemoreModule).parameters
    try:
        module = MakemoreModule(**{k: v for k, v in hparams.items() if k in accepted})  # the CLI adds _instantiator
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a makemore checkpoint (bad hyperparameters: {err})") from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError:
        raise CheckpointError(f"{path}: not a makemore checkpoint (its weights do not fit its hyperparameters)") from None
    return module.to(map_location)
