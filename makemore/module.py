"""The LightningModule: trains any makemore network with many SGD steps per batch; losses, perplexity, samples."""

import inspect
import math
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Literal, Optional

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Timer, WeightAveraging
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MeanMetric

from makemore import _compat, distillation, steps
from makemore.checkpoint import (
    attached_trainer,
    bound_class,
    check_fits,
    class_config,
    class_paths,
    network_builder,
    network_class_config,
    random_states_of_every_process,
    read_checkpoint,
    restore_random_states,
)
from makemore.errors import CheckpointError, ConfigError
from makemore.formats import FormatName, format_class
from makemore.lr_finder import record_sweep_losses
from makemore.models import MLP, NetworkCallable, batches_nll, eval_mode, is_sequence_model, scored
from makemore.optimizers import building, takes_named_parameters
from makemore.sampling import generate_text, novelty, sample_words
from makemore.text import Vocabulary


class MakemoreModule(L.LightningModule):
    """The model: a character-level network, how it trains (optimizer, schedule) and what it samples and logs

    Trains on batches that each carry many SGD steps (see makemore.steps).

    Args:
        vocab: the vocabulary, the data format's start token first; linked from the data by the CLI and kept in
            checkpoints.
        block_size: context length; linked from the data.
        data_format: the data.format the model trains on (makemore.formats); linked from the data by the CLI and
            kept in checkpoints: whether it samples words (`sample`'s names) or a passage (`sample --prompt`).
        net: the network: an nn.Module class built as Net(vocab_size, block_size, **init_args) whose
            forward(idx, targets=None) returns (logits, loss); in YAML its class_path and init_args.
            Default: the lecture's embedding-MLP, makemore.models.MLP; its options: --model.net.help makemore.models.MLP.
        learning_rate: the optimizer's learning rate (the LR finder sets this).
        optimizer: the torch.optim class and its other arguments; called with the parameters and lr. Several
            optimizers, each over its own parameter group (Muon for the matrices, AdamW for the rest):
            makemore.optimizers.ParameterGroups, whose groups select parameters by name and ndim and set each
            group's rate as a multiple of learning_rate (--model.optimizer.help makemore.optimizers.ParameterGroups).
        lr_scheduler: learning-rate schedule, called with the optimizer; None keeps the rate constant.
        lr_scheduler_interval: step the schedule after every SGD step ("step") or every epoch ("epoch").
        num_samples: names sampled to TensorBoard text at each validation (a word list).
        max_sample_length: longest name sampling will produce.
        passage_length: characters of the passage sampled to TensorBoard text at each validation (a text).
        untrained_loss: log the untrained network's val loss at step 0 of a new fit (untrained_val_loss, beside
            uniform_loss: the lecture's check of the initialisation). It costs one validation of the whole split
            before the first SGD step; false skips it (the speedrun's configs, where every second counts).
        max_loss_factor: training stops, with an error naming the step, when a step's loss is not finite or
            above max_loss_factor x ln(vocab_size) (ln(vocab_size) is the loss of uniform guessing; the
            lecture's badly initialised MLP starts near 8 x). null: only a non-finite loss stops it.
        hand_backward: train with the network's hand-written backward and the update p -= lr * grad, with no
            autograd graph (makemore.models.MLP has one, lecture part 4): what torch.optim.SGD without momentum or
            weight decay does, faster. It applies with that optimizer, on one device in 32-bit, without dropout.
            null: wherever it applies and is faster (not with BatchNorm); true: wherever it applies, and a fit
            where it cannot says why once; false: never.
        split_fingerprint: the fingerprint of the data's train/val/test split; linked from the data by the CLI and kept in
            checkpoints, so that a checkpoint is not evaluated on a split that holds its training words.
        teacher: checkpoints to distil from (Hinton et al. 2015; makemore.distillation): before training, their mean
            predicted distribution for every training character is computed once, and each SGD step also fits it.
            They must have been trained on this fit's split, vocabulary and block_size. null: no distillation.
        distill_weight: the teacher's share of the objective, between 0 and 1: (1 - w) x cross-entropy with the
            targets + w x cross-entropy with the teacher's distribution (train_loss logs the first).
        gradient_clip_val: clip each SGD step's gradient to this norm (or value); null or 0: no clipping. Applied
            where Lightning's automatic optimisation applies trainer.gradient_clip_val (which makemore's manual
            optimisation cannot take): after a mixed-precision plugin has unscaled the gradient.
        gradient_clip_algorithm: "norm" clips the gradient's total norm, "value" each entry.
    """

    # Set to True to evaluate (validate, test) a checkpoint on a split other than the one it was trained on.
    allow_other_split: bool = False
    _checkpoint_step: Optional[int] = None  # the global_step of the checkpoint loaded, for validate/test
    _train_losses: Optional[list[torch.Tensor]] = None  # the step losses since train_loss was last logged
    _said_partial: bool = False  # whether a partial evaluation was said (once per module)
    _other_split: bool = False  # whether validate/test scores a checkpoint on a split it was not trained on
    # How this fit takes its SGD steps, decided when training starts (see `on_train_start` and `sgd_step`).
    hand_backward_active: bool = False  # the network's hand-written backward and p -= lr * grad, no autograd
    direct: bool = False  # the torch optimizer without Lightning's per-step wrappers (one device, 32-bit, no hooks)
    timer: Optional[Timer] = None  # the Timer of trainer.max_time, checked between SGD steps
    averaging: tuple[WeightAveraging, ...] = ()  # weight averaging callbacks, updated after every SGD step
    _sequence_model: Optional[bool] = None  # whether the network predicts at every position (text evaluation)
    teacher_probabilities: Optional[torch.Tensor] = None  # model.teacher's rows, one per training character

    def __init__(
        self,
        vocab: str,
        block_size: int = 3,
        data_format: FormatName = "words",
        net: NetworkCallable = MLP,
        learning_rate: float = 0.1,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: Optional[Callable[[torch.optim.Optimizer], LRScheduler]] = None,
        lr_scheduler_interval: Literal["step", "epoch"] = "step",
        num_samples: int = 10,
        max_sample_length: int = 50,
        passage_length: int = 500,
        untrained_loss: bool = True,
        max_loss_factor: Optional[float] = 10.0,
        hand_backward: Optional[bool] = None,
        split_fingerprint: Optional[dict] = None,
        teacher: Optional[list[str]] = None,
        distill_weight: float = distillation.DEFAULT_WEIGHT,
        gradient_clip_val: Optional[float] = None,
        gradient_clip_algorithm: Literal["norm", "value"] = "norm",
    ) -> None:
        super().__init__()
        distillation.check_weight(distill_weight, teacher)
        if gradient_clip_val is not None and gradient_clip_val < 0:
            raise ConfigError(
                f"model.gradient_clip_val must be 0 or more (0 or null: no clipping), got {gradient_clip_val}"
            )
        # Everything saved is plain data, so checkpoints load with weights_only=True. The callables (network,
        # optimizer, schedule) are saved below as class paths and arguments; `_instantiator` is the CLI's.
        self.save_hyperparameters(ignore=["net", "optimizer", "lr_scheduler", "_instantiator"])
        optimizer_config = class_config(optimizer, skip=1)  # (params) is given at call time
        if optimizer_config is not None:
            optimizer_config["init_args"].pop("lr", None)  # learning_rate sets it
        # The network, optimizer and schedule as plain data too: checkpoints rebuild the network from it, and a
        # resumed run is compared with its checkpoint. (A second call: hparams.yaml and TensorBoard get them.)
        self.save_hyperparameters(
            {
                "net": network_class_config(net),
                "optimizer": optimizer_config,
                "lr_scheduler": None if lr_scheduler is None else class_config(lr_scheduler, skip=1),
            }
        )
        self.automatic_optimization = False  # training_step takes many SGD steps per Lightning batch
        self.vocabulary = Vocabulary(vocab)
        self.samples_passage = format_class(data_format).passage
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        with building("model.net", self.hparams.net):
            self.net = net(len(self.vocabulary), block_size)
        self.max_loss = math.inf if max_loss_factor is None else max_loss_factor * math.log(len(self.vocabulary))
        # The exact mean loss of each evaluated split. Not submodules: they hold nothing to save, and the model summary
        # lists the network alone; each goes to the module's device when it is used.
        self.split_losses = {"val": MeanMetric(), "test": MeanMetric()}
        # One context: the model summary gives the network's FLOPs and sizes for one forward pass of it.
        self.example_input_array = torch.zeros(1, block_size, dtype=torch.long)

    def configure_callbacks(self) -> list[L.Callback]:
        return steps.step_callbacks(self)

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None):
        return self.net(idx, targets)

    def configure_optimizers(self) -> Any:
        # a recipe of parameter groups (makemore.optimizers) selects the network's parameters by name
        named = takes_named_parameters(self.hparams.optimizer)
        parameters = self.net.named_parameters() if named else self.parameters()
        with building("model.optimizer", self.hparams.optimizer, {"model.learning_rate": self.learning_rate}):
            optimizer = self.optimizer(parameters, lr=self.learning_rate)
        steps.settle_implementation(optimizer)
        if self.lr_scheduler is None:
            return optimizer
        with building("model.lr_scheduler", self.hparams.lr_scheduler):
            scheduler = self.lr_scheduler(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.lr_scheduler_interval},
        }

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        if stage != "fit" or data is None:
            return
        # One training-shaped batch through the network (eval mode: no statistics move), so that a batch it cannot
        # take (an Ensemble's batch smaller than its members) is one line before training, not a traceback in it.
        batch_size = data.hparams.get("batch_size", 2)
        with eval_mode(self.net):
            device = next(self.net.parameters()).device
            idx = torch.zeros(batch_size, self.hparams.block_size, dtype=torch.long, device=device)
            try:
                logits, _ = self.net(idx, torch.zeros(batch_size, dtype=torch.long, device=device))
            except ValueError as err:
                raise ConfigError(f"model.net: {err} (data.batch_size {batch_size})") from None
        if data.hparams.get("train_on") == "words" and logits.dim() != 3:
            raise ConfigError(
                f"data.train_on words trains a prediction at every position of a word, but"
                f" {type(self.net).__name__} predicts only the next character (it would learn only the word"
                " ends); use data.train_on characters"
            )

    def on_fit_start(self) -> None:
        teacher, data = self.hparams.teacher, self.trainer.datamodule
        if teacher and self.teacher_probabilities is None:  # once per module (the LR finder's sweep fits first)
            if not hasattr(data, "whole_split"):
                raise ConfigError("model.teacher needs makemore's CharDataModule, which gives the training split")
            # a teacher may name makemore's and torch's classes, and those this fit names itself
            self.teacher_probabilities = distillation.teacher_probabilities(
                teacher, data, self.device, allowed=class_paths(self.hparams)
            )

    def on_train_start(self) -> None:
        # How this fit's SGD steps run, decided once (see sgd_step).
        self.direct = steps.direct_steps(self, MakemoreModule)  # its own hook, clipping, the direct step does itself
        # trainer.max_time between two SGD steps; under DDP at batch ends, where Lightning's Timer agrees across
        # processes (each checking its own clock could stop them at different steps: a hang in the next all-reduce)
        timers = [callback for callback in self.trainer.callbacks if isinstance(callback, Timer)]
        self.timer = timers[0] if timers and self.trainer.world_size == 1 else None
        self.averaging = tuple(callback for callback in self.trainer.callbacks if isinstance(callback, WeightAveraging))
        if self.global_step % self.trainer.log_every_n_steps == 0:  # a new window (a sweep's losses are not in it)
            self._train_losses = []
        self.hand_backward_active = False
        asked = self.hparams.hand_backward
        if asked or (asked is None and getattr(self.net, "hand_backward_is_faster", True)):
            accumulate = getattr(self.trainer.datamodule, "accumulate_grad_batches", 1)
            distilling = self.teacher_probabilities is not None
            clip = self.hparams.gradient_clip_val
            reason = steps.hand_backward_blocker(self, self.direct, distilling, accumulate, clip)
            if reason and asked:
                rank_zero_info(f"model.hand_backward is not used: {reason}. Training with autograd and the optimizer.")
            self.hand_backward_active = reason is None
        if self.hand_backward_active:
            # torch's schedules warn when they step before their optimizer ever did, and the hand-written step updates
            # the weights itself: the optimizer takes one step with no gradients first, which changes nothing.
            optimizer = self.optimizers().optimizer
            optimizer.zero_grad()
            optimizer.step()
        if (
            self.hparams.untrained_loss
            and self.global_step == 0
            and self.trainer.is_global_zero
            and isinstance(self.logger, TensorBoardLogger)
        ):
            self._log_untrained_loss()

    def _log_untrained_loss(self) -> None:
        """The untrained model's val loss at step 0, beside uniform guessing's ln(vocab_size) (lecture part 3).

        A well initialised model starts near uniform guessing; far above it, the first steps only undo an
        over-confident output layer (see MLP's init and out_scale). It costs one validation of the whole split, so
        a fit whose validation is limited (trainer.limit_val_batches) logs none.
        """
        whole_split = getattr(self.trainer.datamodule, "whole_split", None)
        if whole_split is None or self.trainer.limit_val_batches != 1.0:
            return
        untrained = batches_nll(self.net, whole_split("val"), self.hparams.block_size)
        uniform = math.log(len(self.vocabulary))
        self.logger.log_metrics({"untrained_val_loss": untrained, "uniform_loss": uniform}, step=0)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """SGD steps, one per row of the batch (makemore.steps.TrainBatches): X (steps, k, b, block_size),
        Y (steps, k, b) and the targets' positions (what distillation reads by); the mean of their losses."""
        X, Y, where = batch
        first, end = self.global_step, self.trainer.max_steps
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self.hparams.lr_scheduler_interval == "step" else None
        losses = []
        for step in range(len(Y) if end < 0 else min(len(Y), end - first)):
            if self.timer is not None and self.timer.time_remaining() <= 0:  # trainer.max_time: stop between steps
                self.trainer.should_stop = True
                break
            if self.trainer.received_sigterm:  # as Lightning would between batches: it stops after this one
                break
            losses.append(self.sgd_step(X[step], Y[step], where[step], optimizer, scheduler))
            for averaging in self.averaging:  # weight averaging: its batch-end hook updates the average, every step
                averaging.on_train_batch_end(self.trainer, self, losses[-1], batch, batch_idx)
        losses = torch.stack(losses) if losses else torch.zeros(0, device=Y.device)
        if not record_sweep_losses(self, losses):  # a sweep diverges on purpose at its end: the finder stops it
            # Under DDP every process decides on the losses of all: one stopping alone would leave the others waiting
            # in the next gradient all-reduce.
            gather = self.all_gather if self.trainer.world_size > 1 else None
            steps.check_divergence(losses, first, self.max_loss, gather=gather)
        self.log_train_loss(losses)
        # what checkpoint names read `step` from (a validation logs it too, for its logger's x-axis)
        self.log("step", float(self.global_step), logger=False)
        if 0 < end <= self.global_step:
            # Every fit ends with a validation, so that it has a val_loss and a best checkpoint, also when its last
            # epoch is cut short: asked to stop, Lightning validates once after this batch.
            self.trainer.should_stop = True
        return losses.mean()  # this batch's (Lightning's learning-rate finder records it)

    def sgd_step(
        self,
        X: torch.Tensor,
        Y: torch.Tensor,
        where: torch.Tensor,
        optimizer: LightningOptimizer,
        scheduler: Optional[LRScheduler] = None,
    ) -> torch.Tensor:
        """One SGD step on k mini-batches, X (k, b, block_size) and Y (k, b), and the targets' positions `where`:
        the gradient of their mean objective, clipped (model.gradient_clip_val), one step of the module's `optimizer`
        and of a `scheduler` stepped per SGD step; their mean cross-entropy with the targets."""
        if self.hand_backward_active:  # the network's hand-written forward and backward, and p -= lr * grad
            with torch.no_grad():
                loss, grads = self.net.loss_and_grads(X[0], Y[0])
                lr = optimizer.param_groups[0]["lr"]  # read at every step: schedules and the LR finder set it
                _compat.count_optimizer_step(optimizer, partial(steps.sgd_update, grads, lr))
        else:
            optimizer.optimizer.zero_grad()  # what LightningOptimizer.zero_grad forwards to
            backward = torch.Tensor.backward if self.direct else self.manual_backward
            k, losses = len(Y), []
            for i in range(k):  # gradient accumulation: one mini-batch's graph at a time
                logits, loss = self.net(X[i], Y[i])
                objective = loss
                if self.teacher_probabilities is not None:  # model.teacher: the distillation objective
                    soft, weight = self.teacher_probabilities, self.hparams.distill_weight
                    objective = distillation.objective(logits, loss, X[i], where[i], soft, weight)
                backward(objective if k == 1 else objective / k)
                losses.append(loss.detach())
            loss = losses[0] if k == 1 else torch.stack(losses).mean()
            if self.direct:  # the torch optimizer itself: no Lightning step, so no hook to clip in
                self.clip(optimizer.optimizer)
                _compat.count_optimizer_step(optimizer, optimizer.optimizer.step)
            else:  # Lightning's step: unscales (mixed precision), clips in on_before_optimizer_step, steps
                optimizer.step()
        if scheduler is not None:
            scheduler.step()
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls it inside optimizer.step(), once a mixed-precision plugin has unscaled the gradient
        # (clipped before it, the scaled gradient would be capped: 1/65,536 of the norm asked for under 16-mixed).
        self.clip(optimizer)

    def clip(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradient by model.gradient_clip_val and gradient_clip_algorithm (nothing when unset)."""
        if self.hparams.gradient_clip_val:
            self.clip_gradients(optimizer, self.hparams.gradient_clip_val, self.hparams.gradient_clip_algorithm)

    def log_train_loss(self, losses: torch.Tensor) -> None:
        """train_loss and lr every trainer.log_every_n_steps SGD steps (batches end there; makemore.steps) and at the
        fit's last step, to the loggers at that step: the mean loss of the steps since the last log. The steps of a
        window a checkpoint cut are kept in it."""
        interval, step = self.trainer.log_every_n_steps, self.global_step
        self._train_losses = [*(self._train_losses or []), losses]
        if not steps.logs_now(self.trainer):
            return
        train_loss, lr = torch.cat(self._train_losses).mean(), self.optimizers().param_groups[0]["lr"]
        if step % interval == 0:  # a window ends (at max_steps off the interval it goes on, should the run resume)
            self._train_losses = []
        self.log("train_loss", train_loss, prog_bar=True, logger=False)  # the progress bar's
        for logger in self.loggers:
            logger.log_metrics({"train_loss": train_loss.item(), "lr": lr}, step=step)

    def on_train_epoch_end(self) -> None:
        scheduler = self.lr_schedulers()
        if scheduler is not None and self.trainer.lr_scheduler_configs[0].interval == "epoch":
            scheduler.step()

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        # One metric for every network: the cross-entropy of each character (and word end) of the split, once,
        # whatever loss the network trains on. Example-weighted: exact whatever the batch sizes.
        logits, Y = self._scored(*batch)
        metric = self.split_losses[stage]
        if metric.device != logits.device:
            metric.to(logits.device)
        metric.update(F.cross_entropy(logits, Y), weight=len(Y))

    def _scored(self, X: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (n, vocab_size), targets (n,)) of an evaluation batch: a word list's examples, or a text's windows
        (makemore.formats.text.EvalWindows), where each character is predicted from those before it in its
        window."""
        if Y.dim() == 2 and self._sequence_model is None:
            self._sequence_model = is_sequence_model(self.net, self.hparams.block_size)
        return scored(self.net, X, Y, self.hparams.block_size, self._sequence_model)

    def _log_split(self, stage: str) -> None:
        metric = self.split_losses[stage]
        loss = metric.compute()  # reduced over processes
        metric.reset()
        if self.trainer.state.fn == "fit":  # x-axis: SGD steps (validate/test alone have no step count)
            if not self.trainer.sanity_checking:  # stop before a checkpoint records a non-finite val_loss
                steps.check_divergence(loss.view(1), self.global_step - 1, math.inf, "val_loss")
            self.log("step", float(self.global_step))
        elif self._checkpoint_step is not None:  # validate/test of a checkpoint: at the step it was trained to
            self.log("step", float(self._checkpoint_step))
        # A limit_val/test_batches that cuts the split short gives another quantity: it gets another name. So does a
        # split the checkpoint was not trained on (--allow_other_split): its scores stay out of the run's own series.
        done, total = self._evaluated_batches(stage)
        partial = ("_partial" if done < total else "") + ("_other_split" if self._other_split else "")
        if partial and not self.trainer.sanity_checking and self.trainer.is_global_zero and not self._said_partial:
            self._said_partial = True
            limit = "limit_test_batches" if stage == "test" else "limit_val_batches"
            rank_zero_info(
                f"makemore: {stage}_loss_partial scores {done} of the {total} batches of the {stage} split"
                f" (trainer.{limit}); {stage}_loss scores all of it"
            )
        self.log(f"{stage}_loss{partial}", loss, prog_bar=True)
        self.log(f"{stage}_bpc{partial}", loss / math.log(2))  # bits per character
        self.log(f"{stage}_perplexity{partial}", loss.exp())

    def _evaluated_batches(self, stage: str) -> tuple[int, int]:
        """(batches evaluated, batches of the whole split) in this evaluation, on this process."""
        trainer = self.trainer
        if stage == "test":
            done, loaders = trainer.num_test_batches, trainer.test_dataloaders
        else:
            done = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
            loaders = trainer.val_dataloaders
        total = len(loaders) if loaders is not None and hasattr(loaders, "__len__") else 0
        done = done[0] if isinstance(done, (list, tuple)) and done else done
        return (int(done), total) if isinstance(done, (int, float)) and total else (0, 0)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_split("val")
        if (
            not self.trainer.sanity_checking
            and isinstance(self.logger, TensorBoardLogger)
            and self.trainer.is_global_zero
        ):
            generator = torch.Generator(self.device).manual_seed(self.global_step)
            if self.samples_passage:  # a passage, its lines kept (Markdown: two spaces before a line break)
                passage = "".join(self.sample_text("", self.hparams.passage_length, generator))
                self.logger.experiment.add_text("samples", passage.replace("\n", "  \n"), self.global_step)
                return
            names = self.sample(self.hparams.num_samples, generator)
            self.logger.experiment.add_text("samples", "  \n".join(names), self.global_step)
            splits = getattr(self.trainer.datamodule, "splits", None)
            if splits:  # the share of sampled names in none of the data's words
                new = novelty(names, splits).count("new") / len(names)
                self.logger.experiment.add_scalar("samples_new", new, self.global_step)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_split("test")

    def sample(
        self,
        num_samples: int,
        generator: Optional[torch.Generator] = None,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        prefix: str = "",
        max_length: Optional[int] = None,
    ) -> list[str]:
        """Draw names from the model, each until it samples `.`, as `makemore sample` does.

        Args:
            num_samples: how many names.
            generator: the torch.Generator to draw with (on the model's device), for repeatable names.
            temperature: divides the logits: below 1 more likely names, above 1 more varied ones.
            top_k: draw each character from the k most likely only.
            prefix: every name starts with these characters (ValueError for one outside the vocabulary).
            max_length: the longest name drawn (default: model.max_sample_length).
        """
        hparams = self.hparams
        length = hparams.max_sample_length if max_length is None else max_length
        return sample_words(
            self.net, self.vocabulary, hparams.block_size, num_samples, length, generator, temperature, top_k, prefix
        )

    def sample_text(
        self,
        prompt: str,
        max_new_chars: int,
        generator: Optional[torch.Generator] = None,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        stream: bool = False,
    ) -> Iterator[str]:
        """Continue `prompt` with max_new_chars characters of a text, one at a time as drawn (a text's checkpoint);
        `stream`: from the whole text so far, not its last block_size characters (a network that reads any length).
        See makemore.sampling.generate_text."""
        if not self.samples_passage:
            raise ValueError("the model was trained on a word list: it samples names (sample), not a text")
        block_size = self.hparams.block_size
        return generate_text(
            self.net, self.vocabulary, block_size, prompt, max_new_chars, generator, temperature, top_k, stream=stream
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lightning does not keep the random state: a resumed run needs it for the same dropout masks. Every process
        # saves (only rank 0 writes the file): its states are gathered, one entry per rank.
        checkpoint["rng_states"] = random_states_of_every_process(self)
        if self._train_losses:
            checkpoint["train_losses"] = torch.cat(self._train_losses).cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trainer = attached_trainer(self)
        world_size = trainer.world_size if trainer is not None else 1
        missing = restore_random_states(checkpoint.get("rng_states") or [], self.global_rank, world_size, self.device)
        fitting = trainer is not None and trainer.state.fn == "fit"  # resuming, else evaluating the checkpoint
        if missing and fitting:  # only training draws random numbers
            rank_zero_info(
                f"makemore: the checkpoint holds no random state for {missing}: from here its dropout masks (if any)"
                " differ from those of an uninterrupted run"
            )
        data = trainer.datamodule if trainer is not None else None
        other_split = check_fits(
            checkpoint.get("hyper_parameters") or {},
            dict(self.hparams),
            "resume" if fitting else "evaluate",
            f"{trainer.ckpt_path}: " if trainer is not None and trainer.ckpt_path else "",
            checkpoint.get("datamodule_hyper_parameters"),
            dict(data.hparams) if data is not None else None,
            self.allow_other_split,
        )
        if other_split:  # evaluated all the same, its scores named apart
            self._other_split = True
            rank_zero_info(f"makemore: {other_split}")
        self._checkpoint_step = checkpoint.get("global_step")
        if "train_losses" in checkpoint:
            self._train_losses = [checkpoint["train_losses"].to(self.device)]


def load_checkpoint(path: str, map_location: str = "cpu", allow_class: Iterable[str] = ()) -> MakemoreModule:
    """Rebuild a trained module from a checkpoint alone, refusing anything but plain data (weights_only) and classes
    outside makemore and torch that are not in `allow_class` (see makemore.checkpoint.check_imports)."""
    checkpoint = read_checkpoint(path, map_location, allow_class)
    hparams = dict(checkpoint["hyper_parameters"])
    accepted = inspect.signature(MakemoreModule).parameters
    try:
        hparams["net"] = network_builder(network_class_config(hparams["net"]))
        for name in ("optimizer", "lr_scheduler"):  # plain data in the checkpoint: back to callables
            hparams[name] = bound_class(hparams[name]) if hparams.get(name) else None
        hparams["optimizer"] = hparams["optimizer"] or torch.optim.SGD
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
