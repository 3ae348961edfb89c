"""The LightningModule: trains any makemore network with many SGD steps per batch; losses, perplexity, samples."""

import inspect
from typing import Any, Literal, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.loggers import TensorBoardLogger
from torchmetrics import MeanMetric

from makemore import steps
from makemore.checkpoint import network_config, network_factory, read_checkpoint
from makemore.errors import CheckpointError
from makemore.model import MLP, NetworkCallable
from makemore.sampling import sample_words
from makemore.text import Vocabulary


class MakemoreModule(L.LightningModule):
    """Trains a character-level network on batches that each carry many SGD steps (see makemore.steps).

    Args:
        vocab: the vocabulary, `.` first; linked from the data by the CLI and kept in checkpoints.
        block_size: context length; linked from the data.
        net: the network: an nn.Module class built as Net(vocab_size, block_size, **init_args) whose
            forward(idx, targets=None) returns (logits, loss); in YAML its class_path and init_args.
            Default: the lecture's embedding-MLP, makemore.model.MLP; its options: --model.net.help makemore.model.MLP.
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
        net: NetworkCallable = MLP,
        learning_rate: float = 0.1,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        num_samples: int = 10,
        max_sample_length: int = 50,
    ) -> None:
        super().__init__()
        # The optimizer and schedule are callables: the CLI config keeps them, the checkpoint keeps their
        # state. The network is kept as its class path and arguments. Everything saved is plain data, so
        # checkpoints load with weights_only=True.
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler"])
        self.hparams.pop("_instantiator", None)  # the CLI's; makemore rebuilds modules from `net` instead
        self.hparams["net"] = network_config(net)
        self.automatic_optimization = False  # makemore.steps takes many SGD steps per Lightning batch
        self.vocabulary = Vocabulary(vocab)
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.net = net(len(self.vocabulary), block_size)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def configure_callbacks(self) -> list[L.Callback]:
        return steps.step_callbacks(self.trainer)

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        return self.net(idx, targets)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters(), lr=self.learning_rate)
        steps.settle_implementation(optimizer)
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.lr_scheduler_interval},
        }

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Many SGD steps, one per mini-batch of the batch: X (steps, b, block_size), Y (steps, b)."""
        mean = steps.train_steps(self, batch)
        # Log against the SGD step, not Lightning's batch count (`step` sets the logger's x-axis).
        self.log("step", float(self.global_step), on_step=True, on_epoch=False, logger=True)
        self.log("train_loss", mean, on_step=True, on_epoch=False, prog_bar=True)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return mean

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.trainer.lr_scheduler_configs[0].interval == "epoch":
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
        if (
            not self.trainer.sanity_checking
            and isinstance(self.logger, TensorBoardLogger)
            and self.trainer.is_global_zero
        ):
            generator = torch.Generator(self.device).manual_seed(self.global_step)
            names = self.sample(self.hparams.num_samples, generator)
            self.logger.experiment.add_text("samples", "  \n".join(names), self.global_step)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_loss)

    def on_test_epoch_end(self) -> None:
        self._log_split("test", self.test_loss)

    def sample(self, num_samples: int, generator: Optional[torch.Generator] = None) -> list[str]:
        """Draw names from the model, each until it samples `.`."""
        hparams = self.hparams
        return sample_words(
            self.net, self.vocabulary, hparams.block_size, num_samples, hparams.max_sample_length, generator
        )

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


def load_checkpoint(path: str, map_location: str = "cpu") -> MakemoreModule:
    """Rebuild a trained module from a checkpoint alone, refusing anything but plain data (weights_only)."""
    checkpoint = read_checkpoint(path, map_location)
    hparams = dict(checkpoint["hyper_parameters"])
    accepted = inspect.signature(MakemoreModule).parameters
    try:
        hparams["net"] = network_factory(network_config(hparams["net"]))
        module = MakemoreModule(**{k: v for k, v in hparams.items() if k in accepted})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: not a makemore checkpoint (bad hyperparameters: {err})") from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError:
        raise CheckpointError(
            f"{path}: not a makemore checkpoint (its weights do not fit its hyperparameters)"
        ) from None
    return module.to(map_location)
