"""Every private name of Lightning and torch that makemore relies on, each with why, in one place.

Each is read through a function here, never directly elsewhere (torch.nn.modules.batchnorm is read through its public classes). tests/test_compat.py exercises every one
on the installed versions and fails naming the symbol when an upgrade removes or renames it; the version
lower bounds in pyproject.toml are what CI runs, and the upper bounds only exclude the next major versions.
"""

from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.tuner import lr_finder as _lr_finder


def lr_finder_running(trainer: L.Trainer) -> bool:
    """Whether Lightning's learning-rate finder is sweeping.

    While it sweeps, Lightning swaps its private `_LRCallback` in as the trainer's callback list; that
    is the only sign of a sweep that the data's loader can see (it must then carry one SGD step per
    batch, because the finder records one loss and one rate per Lightning batch).
    """
    return any(isinstance(callback, _lr_finder._LRCallback) for callback in trainer.callbacks)


def every_n_train_steps(checkpoint: ModelCheckpoint) -> int:
    """A ModelCheckpoint's `every_n_train_steps` (0 when unset): the constructor argument has no public getter."""
    return checkpoint._every_n_train_steps or 0


def progress_bar_leave(bar: TQDMProgressBar) -> bool:
    """TQDMProgressBar's `leave` argument, to build makemore's step-counting bar with the user's settings."""
    return bar._leave


def learning_rates(monitor: LearningRateMonitor, trainer: L.Trainer, interval: str) -> dict[str, float]:
    """What a LearningRateMonitor logs at a batch start, under its names (LearningRateMonitor._extract_stats): the
    rates (and momenta, weight decays when asked) of the optimizers whose scheduler steps per `interval` ("step",
    "epoch" or "any") and of those without one. makemore logs them at SGD steps (makemore.steps.StepLearningRateMonitor);
    Lightning's naming of optimizers and parameter groups has no public function.
    """
    return monitor._extract_stats(trainer, interval)


def count_optimizer_step(optimizer: LightningOptimizer, step) -> None:
    """Run `step()` (the torch optimizer's step) and have Lightning count it in `global_step`.

    In manual optimisation, LightningOptimizer.step calls these two private hooks around the torch
    optimizer's step; the loop installs them to count the step. makemore calls the torch optimizer
    directly on one device in 32-bit precision (see makemore.steps) and must count the step the same way.
    """
    optimizer._on_before_step()
    step()
    optimizer._on_after_step()


def summary_file_writer(writer: Any) -> Any:
    """A torch SummaryWriter's FileWriter, reopened when the writer was closed (SummaryWriter._get_file_writer).

    Raw summaries (HParams) have no public method; Lightning's own TensorBoardLogger writes them the same way.
    The writer is closed at the end of each fit, and a `trainer.test()` after `trainer.fit()` on the same
    trainer (as in a notebook) logs its HParams again.
    """
    return writer._get_file_writer()


def torch_foreach_default(params: list[torch.Tensor], differentiable: bool) -> Optional[bool]:
    """torch.optim's own choice between its for-loop and foreach implementations for these parameters.

    Left unset, torch.optim re-makes this choice at every step, which costs several percent of a step on
    a small model; makemore asks once (torch.optim.optimizer._default_to_fused_or_foreach) and stores it.
    """
    from torch.optim.optimizer import _default_to_fused_or_foreach

    return _default_to_fused_or_foreach(params, differentiable)[1]


def mark_saved_after_the_batch_counted(checkpoint: dict) -> None:
    """Make a checkpoint written at an epoch's end resume its loggers' batch count where the run left it.

    Lightning expects checkpoints written during a batch or its validation, before the loop counts the batch for
    its loggers (`_batches_that_stepped`), and adds that one on restoring. At the epoch's end (makemore's
    last.ckpt) the batch is counted already: without taking it back, a resumed run would log one batch late.
    """
    state = checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]
    state["_batches_that_stepped"] -= 1


def restart_rate(bar: Any, n: int) -> None:
    """Make a tqdm bar count from `n`, its rate measured from there (tqdm keeps the last printed count, which its
    rate is computed from, in `last_print_n`, which has no setter)."""
    bar.n = bar.initial = bar.last_print_n = n


def help_sections(parser: Any) -> list:
    """The sections of an argparse (jsonargparse) parser's help in the order printed, a list makemore may reorder.

    argparse prints its argument groups in the order they were added (the private `_action_groups`), and Lightning's
    CLI adds the Trainer's before makemore's model and data; argparse has no public way to order them.
    """
    return parser._action_groups


def section_options(group: Any) -> list:
    """The options of one section (argument group) of an argparse help, in the private `_group_actions`, for a short
    --help that hides some (argparse.SUPPRESS on each option's public `help`)."""
    return group._group_actions
