"""Batches of SGD steps: one Lightning batch carries many SGD steps, and everything still counts SGD steps.

Why. The lecture's model has 12k parameters and trains on batches of 32: on a CPU a step is about
150 µs of arithmetic, less than what Lightning does around each batch (hooks, logging, progress bar,
checkpoint checks). So a training batch here is a stack of up to `data.max_steps_per_batch` mini-batches
(`TrainBatches`), and the LightningModule's `training_step` takes one SGD step on each (manual optimisation):
Lightning's per-batch work is paid once per few hundred steps.

The contract with Lightning, decided once per fit by the data's training loader (`steps_per_batch`), through public
API only: Lightning counts each SGD step as an optimizer step, so `global_step`, `trainer.max_steps`, checkpoint
names and a ModelCheckpoint's `every_n_train_steps` count SGD steps; validation runs at the end of makemore's epoch
(`data.val_every_n_steps` SGD steps); makemore logs `train_loss` every `trainer.log_every_n_steps` SGD steps itself,
stops at `max_time` and updates weight averaging between two SGD steps, and draws the progress bar in SGD steps
(`StepProgressBar`). Batches end on every length that must fall between them (`aligned_lengths`: max_steps,
log_every_n_steps, every_n_train_steps, a callback's `aligned_steps`). What
Lightning would count in batches instead (an integer `val_check_interval`, `limit_train_batches`) and what it
applies only in automatic optimisation (`gradient_clip_val`, `accumulate_grad_batches`: here
`model.gradient_clip_val` and `data.accumulate_grad_batches`) is refused in one line naming the replacement
(makemore.lightning_features). A callback that acts on every batch (ThroughputMonitor, one of one's own)
makes the fit take one SGD step per batch, so that it sees every step, and says so; Lightning's progress bar and
learning-rate monitor are replaced by ones that count SGD steps (`step_callbacks`).

What it costs a user. A length with few divisors (a prime number of steps, max_steps included) makes batches small
and training slower, and so does a callback that acts on every batch. A resumed run keeps the batch size it was
trained with (refused when that does not divide the new lengths). A batch holds
`max_steps_per_batch x accumulate_grad_batches x batch_size x (block_size + 1)` int64 token ids (about 1 MB
for the lecture's settings).
"""

import math
import sys
from contextlib import ExitStack
from typing import Any, Callable, Iterator, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, TQDMProgressBar
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden
from tqdm import tqdm

from makemore import _compat
from makemore.errors import ConfigError, DivergedError
from makemore.lightning_features import batch_readers, refuse_unsupported
from makemore.optimizers import ParameterGroups
from makemore.text import Examples

# splitmix64 (Steele, Lea and Flood 2014): a counter-based generator, so any draw can be computed alone.
_GOLDEN, _MIX1, _MIX2 = (c - (1 << 64) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB))
_RANKS = 1 << 20  # processes per seed in the stream key


def _mix(z: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (multiplication wraps; shifts made logical by masking)."""
    z = z ^ ((z >> 30) & ((1 << 34) - 1))
    z = z * _MIX1
    z = z ^ ((z >> 27) & ((1 << 37) - 1))
    z = z * _MIX2
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def uniform_indices(counter: torch.Tensor, key: int, n: int) -> torch.Tensor:
    """Uniform integers in [0, n), one per entry of the int64 `counter`, from the stream `key`."""
    return (_mix(counter * _GOLDEN + key) & ((1 << 63) - 1)) % n


class TrainBatches:
    """Training batches: each one stacks `steps` random mini-batches, one per SGD step, gathered from `examples`
    when the batch is taken.

    Mini-batches are drawn uniformly with replacement, as the lecture's `torch.randint` does. The
    mini-batch of each SGD step depends only on (seed, rank, step), not on how steps are grouped into
    batches: runs are reproducible, a resumed run continues with the same data (`state_dict`), and a
    run extended to more steps with other batch sizes trains on the same mini-batches. With gradient
    accumulation an SGD step takes `accumulate` mini-batches (mini-batch j of step s is the
    (s * accumulate + j)-th draw).
    """

    def __init__(
        self,
        examples: Examples,
        batch_size: int,
        steps: int,
        epoch_steps: int,
        seed: int,
        rank: int,
        accumulate: int = 1,
    ) -> None:
        self.examples = examples
        self.batch_size = batch_size
        self.steps = steps
        self.accumulate = accumulate
        self.epoch_steps = epoch_steps
        self.key = int(_mix(torch.tensor([seed * _RANKS + rank]))[0])  # the stream of this seed and process
        self.epoch = 0
        self.served = 0  # batches of `epoch` handed out so far

    def __len__(self) -> int:
        return math.ceil(self.epoch_steps / self.steps)

    def batch(self, i: int) -> tuple[torch.Tensor, ...]:
        """Batch i of the current epoch: X (steps, accumulate, batch_size, block_size), Y (steps, accumulate,
        batch_size) and, drawn from `Examples`, the positions of the targets in its ids (same shape as Y; what
        makemore.distillation reads its soft targets by)."""
        first = i * self.steps
        count = min(self.steps, self.epoch_steps - first) * self.accumulate  # mini-batches in this batch
        n = len(self.examples)
        if n <= self.batch_size:  # a pool no bigger than a batch (overfit_batches): the whole pool each step
            ix = torch.arange(n).expand(count, n)
        else:  # draw k of mini-batch m is a pure function of (seed, rank, m, k): the same whatever the batching
            start = (self.epoch * self.epoch_steps + first) * self.accumulate
            minibatch = start + torch.arange(count).unsqueeze(1)  # (count, 1)
            ix = uniform_indices(minibatch * self.batch_size + torch.arange(self.batch_size), self.key, n)
        ix = ix.reshape(-1, self.accumulate, ix.shape[-1])  # (steps, accumulate, batch_size)
        if isinstance(self.examples, Examples):
            return (*self.examples[ix], self.examples.positions(ix))
        return self.examples[ix]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.served >= len(self):  # the previous epoch was served in full
            self.epoch, self.served = self.epoch + 1, 0
        for i in range(self.served, len(self)):
            # Lightning takes batches one at a time from a loader with a length (no prefetch), so
            # `served` is also the number of batches trained on: what a checkpoint must remember.
            self.served = i + 1
            yield self.batch(i)

    def state_dict(self) -> dict:
        # where the loader is; its steps per batch and accumulation are the data module's (its state and settings,
        # which a resumed run is checked against before the loader is built)
        return {"epoch": self.epoch, "served": self.served}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.served = state["epoch"], state["served"]


def steps_per_batch_for(intervals: list[int], limit: int) -> int:
    """The most SGD steps, at most `limit`, that one batch can carry so every interval ends on a batch boundary.

    That is the largest divisor of the intervals' greatest common divisor not above `limit` (`limit` when
    there are no intervals).
    """
    common = math.gcd(*intervals) if intervals else 0
    if common == 0:
        return limit
    return max(d for d in range(1, min(limit, common) + 1) if common % d == 0)


def aligned_lengths(trainer: L.Trainer) -> dict[str, int]:
    """The lengths in SGD steps that must end between two batches, by name: trainer.max_steps (so that no batch is
    cut short and a longer run continues exactly), log_every_n_steps (train_loss is logged at batch ends, with the
    learning rate of that step), each ModelCheckpoint's every_n_train_steps (checked against
    global_step at batch ends) and a callback's `aligned_steps` (e.g. makemore.diagnostics.Diagnostics)."""
    lengths = {"trainer.max_steps": max(trainer.max_steps, 0), "trainer.log_every_n_steps": trainer.log_every_n_steps}
    lengths |= {
        f"every_n_train_steps of checkpoint callback {i}": _compat.every_n_train_steps(callback)
        for i, callback in enumerate(trainer.checkpoint_callbacks)
    }
    lengths |= {
        f"every_n_steps of {type(callback).__name__}": callback.aligned_steps
        for callback in trainer.callbacks
        if isinstance(getattr(callback, "aligned_steps", None), int)
    }
    return {name: n for name, n in lengths.items() if n > 0}


def steps_per_batch(trainer: L.Trainer, limit: int, trained_with: Optional[int] = None) -> int:
    """SGD steps per training batch in this fit: the most, up to `limit`, that end every `aligned_lengths` between
    two batches; one when something acts on every Lightning batch (said once) or Lightning's learning-rate finder
    sweeps (it records one point per batch). A resumed run keeps the `trained_with` of its checkpoint, whose batches
    Lightning's own loop counters count."""
    if _compat.lr_finder_running(trainer):
        return 1
    lengths = aligned_lengths(trainer)
    if trained_with is not None:
        misfits = [f"{name} ({n} steps)" for name, n in lengths.items() if n % trained_with]
        if misfits:
            raise ConfigError(
                f"the checkpoint was trained with {trained_with} SGD steps per batch, which does not divide this"
                f" run's {', '.join(misfits)}; resume with lengths that are multiples of {trained_with}"
            )
        return trained_with
    readers = batch_readers(trainer, trainer.lightning_module)
    if readers and limit > 1:
        rank_zero_info(
            f"makemore: {', '.join(readers)} act(s) on every Lightning batch: this fit takes one SGD step per batch"
            " (slower for small models; see docs/performance.md)"
        )
        return 1
    return steps_per_batch_for(list(lengths.values()), limit)


class StepProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar, counting SGD steps (global_step) rather than Lightning batches.

    A makemore batch carries many SGD steps, so the stock bar would read 30/3000 after 3,000 steps.
    """

    _new_fit = True

    def _total_steps(self, trainer: L.Trainer) -> Optional[int]:
        if trainer.max_steps > 0:
            return trainer.max_steps
        epoch_steps = getattr(trainer.train_dataloader, "epoch_steps", None)
        if epoch_steps is None or trainer.max_epochs is None or trainer.max_epochs < 0:
            return None  # tqdm's "unknown total"
        return epoch_steps * trainer.max_epochs

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._new_fit = True

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        # One count of the run's steps, reset once per fit (Lightning resets per epoch, which in a log file
        # prints a line of 0/<batches> and negative rates, and restarts the clock every epoch).
        if _compat.progress_bar_leave(self):
            self.train_progress_bar = self.init_train_tqdm()  # a bar per epoch, each counting from its start
            self._new_fit = True
        bar = self.train_progress_bar
        if self._new_fit:
            bar.reset(total=self._total_steps(trainer))
            _compat.restart_rate(bar, trainer.global_step)  # count, and measure the rate, from the steps done
            self._new_fit = False
        bar.set_description("SGD steps")

    def init_validation_tqdm(self) -> tqdm:
        # Under the training bar, Lightning's validation bar moves the cursor up a line: in a log file (no terminal)
        # that prints escape codes, so there it shows none (the scores reach the training bar's postfix).
        if self.trainer.state.fn != "validate" and not sys.stdout.isatty():
            return tqdm(disable=True)
        return super().init_validation_tqdm()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()


def logs_now(trainer: L.Trainer) -> bool:
    """Whether the train metrics (train_loss, the learning rates) are logged at the SGD step just taken: every
    trainer.log_every_n_steps steps (batches end there: `aligned_lengths`) and at the fit's last."""
    step = trainer.global_step
    return step % trainer.log_every_n_steps == 0 or step == trainer.max_steps


class StepLearningRateMonitor(LearningRateMonitor):
    """Lightning's LearningRateMonitor, reading the rates at SGD steps: the same values under the same names (and the
    momenta and weight decays when asked), every trainer.log_every_n_steps SGD steps and at the fit's last, beside
    train_loss (batches end there), and at each epoch's start (`data.val_every_n_steps` steps), each logged at that
    SGD step. The stock one reads them at every batch start, at Lightning's count of batches."""

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> None:
        pass  # read at batch ends instead, which fall on log_every_n_steps

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "epoch" and logs_now(trainer):
            self._log(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if self.logging_interval != "step":
            self._log(trainer, "epoch" if self.logging_interval is None else "any")

    def _log(self, trainer: L.Trainer, interval: str) -> None:
        with ExitStack() as each_groups_own:  # a recipe's groups at the rates they step at (lr_scale x the shared one)
            for optimizer in trainer.optimizers:
                if isinstance(optimizer, ParameterGroups):
                    each_groups_own.enter_context(optimizer.group_rates())
            rates = _compat.learning_rates(self, trainer, interval)
        if rates:
            for logger in trainer.loggers:
                logger.log_metrics(rates, step=trainer.global_step)


def step_callbacks(module: L.LightningModule) -> list[L.Callback]:
    """The callbacks a LightningModule that trains many SGD steps per batch adds in `configure_callbacks`, each in
    place of Lightning's stock one (Lightning replaces a trainer's callbacks of the class it subclasses): the progress
    bar in SGD steps and the learning-rate monitor reading at SGD steps, with the user's settings. A subclass of one's
    own is left alone (makemore.lightning_features: its hooks decide).

    Called before Lightning checks the trainer's configuration: a fit with a callback or option that cannot work
    per SGD step stops here, in one line.
    """
    trainer = module.trainer
    if trainer.state.fn == "fit":
        refuse_unsupported(trainer)
    bar = trainer.progress_bar_callback
    own = []
    if type(bar) is TQDMProgressBar:
        own.append(StepProgressBar(refresh_rate=bar.refresh_rate, leave=_compat.progress_bar_leave(bar)))
    own += [
        StepLearningRateMonitor(monitor.logging_interval, monitor.log_momentum, monitor.log_weight_decay)
        for monitor in trainer.callbacks
        if type(monitor) is LearningRateMonitor
    ]
    return own


def settle_implementation(optimizer: torch.optim.Optimizer) -> None:
    """Make torch.optim's for-loop/foreach choice once, in each parameter group that leaves it unset.

    Left unset, torch.optim re-makes it at every step: several percent of a step on a small model. A
    value set in the config is kept.
    """
    for group in optimizer.param_groups:
        if "foreach" in group and group["foreach"] is None and group.get("fused") is None:
            group["foreach"] = _compat.torch_foreach_default(group["params"], group.get("differentiable", False))


def direct_steps(module: L.LightningModule, base: type = L.LightningModule) -> bool:
    """Whether an SGD step may skip Lightning's per-step wrappers without changing what runs.

    `manual_backward` and `LightningOptimizer.step` exist for several processes (DDP's gradient sync),
    mixed precision (loss scaling) and the backward/optimizer hooks; on one device in 32-bit with none of
    those hooks overridden (beyond `base`'s, which the direct step does itself: makemore's clipping) they only add
    per-step overhead (about half a step at the lecture's size).
    """
    trainer = module.trainer
    if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
        return False
    hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
    return not any(
        is_overridden(hook, module, base) or any(is_overridden(hook, cb, L.Callback) for cb in trainer.callbacks)
        for hook in hooks
    )


def hand_backward_blocker(
    module: L.LightningModule, direct: bool, distilling: bool, accumulate: int, clip_val: Optional[float]
) -> Optional[str]:
    """Why the hand-written step cannot stand in for autograd + torch.optim in this fit; None when it can.

    The hand-written step is the network's hand-written forward and backward (`net.loss_and_grads`, no autograd
    graph) and the update `p -= lr * grad` of every parameter: exactly what torch.optim.SGD without momentum,
    weight decay, nesterov or maximize does, on one device in 32-bit (`direct`), with no hook that expects a
    backward, without distillation, gradient accumulation or clipping.
    """
    net = module.net
    if distilling:
        return "model.teacher's distillation objective is computed with autograd"
    if not callable(getattr(net, "loss_and_grads", None)):
        return f"{type(net).__name__} has no hand-written backward (a loss_and_grads method)"
    try:
        getattr(net, "check_hand_backward", lambda: None)()
    except ValueError as err:
        return str(err)
    if not direct:
        return (
            "it runs on one device in 32-bit precision only, with no on_before_backward, on_after_backward or"
            " on_before_optimizer_step hook"
        )
    if accumulate > 1 or clip_val:
        return "it is the plain update of one mini-batch's gradient, without accumulation or clipping"
    optimizer = module.optimizers().optimizer
    if type(optimizer) is not torch.optim.SGD:
        return f"it is torch.optim.SGD's update, and the optimizer is {type(optimizer).__name__}"
    parameters = list(net.parameters())
    groups = optimizer.param_groups
    if len(groups) != 1 or {id(p) for p in groups[0]["params"]} != {id(p) for p in parameters}:
        return "it updates every parameter of the network with one learning rate (one parameter group)"
    used = [name for name in ("momentum", "weight_decay", "nesterov", "maximize") if groups[0].get(name)]
    if used:
        return f"torch.optim.SGD with {', '.join(used)} is not the plain update p -= lr * grad"
    if any(p.dtype != torch.float32 or not p.requires_grad for p in parameters):
        return "it trains float32 parameters that all require gradients"
    return None


def sgd_update(grads: list[tuple[torch.Tensor, torch.Tensor]], lr: float) -> None:
    """torch.optim.SGD's update without momentum or weight decay (the notebook's p.data += -lr * p.grad)."""
    for parameter, grad in grads:
        parameter.add_(grad, alpha=-lr)


def check_divergence(
    losses: torch.Tensor,
    start: int,
    max_loss: float,
    name: str = "loss",
    gather: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> None:
    """Stop the run (DivergedError) at the first of these steps' losses that is not finite or above max_loss.

    Raised before any checkpoint of the diverged weights is written (one check per batch, one sync). `gather`:
    under DDP, the processes' all_gather: each process then finds the first bad step of all of them and every
    process stops, with the same message.
    """
    if len(losses) == 0:  # no step in this batch (max_time was up): the first bad step is 0 of 0, none
        at = torch.zeros(2, device=losses.device)
    else:
        bad = ~torch.isfinite(losses) | (losses > max_loss)
        first = torch.where(bad.any(), bad.int().argmax(), len(losses))  # len(losses): none
        at = torch.stack([first.float(), losses[first.clamp(max=len(losses) - 1)].float()])
    rows = (gather(at).reshape(-1, 2) if gather is not None else at.reshape(1, 2)).tolist()  # (process, (first, loss))
    index, value = min(rows, key=lambda row: row[0])  # the earliest bad step; of the lowest rank on a tie
    if index < len(losses):
        first = int(index)
        raise DivergedError(
            f"training diverged at SGD step {start + first + 1}: {name} {value:.4g}"
            + (
                ""
                if math.isinf(max_loss)
                else f" (the limit is {max_loss:.4g}, model.max_loss_factor x ln(vocab_size))"
            )
            + "; lower model.learning_rate. No checkpoint of the diverged weights was written"
        )
