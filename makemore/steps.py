"""The step machinery: one Lightning batch carries many SGD steps, and everything still counts SGD steps.

Why. The lecture's model has 12k parameters and trains on batches of 32: on a CPU a step is about
150 µs of arithmetic, less than what Lightning does around each batch (hooks, logging, progress bar,
checkpoint checks). So a training batch here is a stack of up to `data.max_steps_per_batch` mini-batches
(`TrainBatches`), and `train_steps` takes one real torch.optim step on each (manual optimisation):
Lightning's per-batch work is paid once per few hundred steps.

What it keeps. Everything a user sets or sees counts SGD steps, as the lecture's loop does:
`trainer.max_steps` and `global_step` (each step is counted as Lightning counts an optimizer step),
the learning-rate schedule (stepped after every SGD step), checkpoint names, the TensorBoard x-axis,
the progress bar (`StepProgressBar`), and the trainer's intervals that Lightning counts in batches:
`log_every_n_steps`, an integer `val_check_interval` (a float is a share of the epoch's steps),
`limit_train_batches`, a ModelCheckpoint's `every_n_train_steps` and a callback's `aligned_steps` (e.g.
`makemore.diagnostics.Diagnostics`). For each fit `StepIntervals`
makes the batches as large as `max_steps_per_batch` allows while each of those intervals, and max_steps,
ends on a batch boundary, and hands Lightning the intervals in batches (the trainer's own values are put back
afterwards). The trainer's gradient clipping and accumulation (`StepOptions`) are applied at every SGD step.
A fit with something that acts on every batch (weight averaging, a learning-rate monitor, a callback of
one's own; see makemore.lightning_features) takes one SGD step per batch, so that it sees every step, and
Lightning's learning-rate finder gets one step per batch too.

What it costs a user. An interval with few divisors (a prime number of steps, max_steps included) makes
batches small and training slower, and so does a callback that acts on every batch. A resumed run keeps
the batch size it was trained with (refused when that does not divide the new intervals). A batch holds
`max_steps_per_batch x accumulate_grad_batches x batch_size x (block_size + 1)` int64 token ids (about 1 MB
for the lecture's settings).

The surface the rest of the package uses: `TrainBatches`, `batch_steps` and `step_options` (the data module's
training loader), `step_callbacks` (the LightningModule's configure_callbacks), `train_steps` and
`log_interval` (its training_step) and `settle_implementation` (its configure_optimizers).
"""

import math
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator, Optional, Protocol, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import SingleDeviceStrategy
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.model_helpers import is_overridden

from makemore import _compat, distillation
from makemore.checkpoint import check_fits
from makemore.errors import ConfigError, DivergedError
from makemore.lightning_features import batch_readers, refuse_unsupported
from makemore.lr_finder import record_sweep_losses
from makemore.text import Examples


@runtime_checkable
class StepData(Protocol):
    """What the step machinery needs of a DataModule (makemore.data.CharDataModule has it)."""

    max_steps_per_batch: int  # the most SGD steps one training batch may carry

    def epoch_steps(self) -> int:
        """SGD steps per epoch."""


@dataclass(frozen=True)
class StepOptions:
    """The trainer's options that act inside an SGD step, which makemore applies itself (manual optimisation).

    Lightning applies them only in automatic optimisation and refuses them otherwise; `StepIntervals` takes them
    from the trainer for the length of a fit (and puts them back), and `train_steps` applies them at every step.
    """

    accumulate: int = 1  # trainer.accumulate_grad_batches: mini-batches per SGD step
    clip_val: Optional[float] = None  # trainer.gradient_clip_val: None or 0 clips nothing
    clip_algorithm: Optional[str] = None  # trainer.gradient_clip_algorithm: "norm" (None) or "value"

    @classmethod
    def of(cls, trainer: L.Trainer) -> "StepOptions":
        accumulate, clip_val = trainer.accumulate_grad_batches, trainer.gradient_clip_val
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ConfigError(f"trainer.accumulate_grad_batches must be an integer of at least 1, got {accumulate}")
        if clip_val is not None and clip_val < 0:
            raise ConfigError(f"trainer.gradient_clip_val must be 0 or more (0 or null: no clipping), got {clip_val}")
        return cls(accumulate, clip_val or None, trainer.gradient_clip_algorithm)


# What Lightning's trainer holds while makemore applies these itself (what it would refuse in manual optimisation).
_NEUTRAL_OPTIONS = {"accumulate_grad_batches": 1, "gradient_clip_val": None, "gradient_clip_algorithm": None}


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
    (s * accumulate + j)-th draw), stacked one after another in the batch.
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
        """Batch i of the current epoch: X (steps * accumulate, batch_size, block_size), Y (steps * accumulate,
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
        return {"epoch": self.epoch, "served": self.served, "steps": self.steps, "accumulate": self.accumulate}

    def load_state_dict(self, state: dict) -> None:
        saved = {
            "accumulate_grad_batches": state.get("accumulate", 1),
            "steps_per_batch": state.get("steps", self.steps),
        }
        check_fits(saved, {"accumulate_grad_batches": self.accumulate, "steps_per_batch": self.steps}, "resume")
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


def batch_steps(trainer: Optional[L.Trainer], limit: int) -> int:
    """SGD steps per training batch for the trainer's current fit: what StepIntervals chose, at most `limit`.

    One while Lightning's learning-rate finder sweeps (it records one point per batch).
    """
    if trainer is None:
        return limit
    if _compat.lr_finder_running(trainer):
        return 1
    planned = [
        callback.steps for callback in trainer.callbacks if isinstance(callback, StepIntervals) and callback.steps
    ]
    return planned[0] if planned else limit


def log_interval(trainer: L.Trainer) -> int:
    """trainer.log_every_n_steps in SGD steps, for the current fit (Lightning holds it in batches meanwhile)."""
    for callback in trainer.callbacks:
        if isinstance(callback, StepIntervals) and callback.steps:
            return callback.counted_steps.get("log_every_n_steps", trainer.log_every_n_steps * callback.steps)
    return trainer.log_every_n_steps


def step_options(trainer: Optional[L.Trainer]) -> StepOptions:
    """The step options of the trainer's current fit (see StepOptions)."""
    module = trainer.lightning_module if trainer is not None else None
    return getattr(module, "step_options", None) or StepOptions()


class StepIntervals(L.Callback):
    """Makes the trainer's batch-counted intervals count SGD steps, as they do in the lecture's loop.

    For the length of a fit on a `StepData` DataModule it reads `log_every_n_steps`, an integer
    `val_check_interval`, `limit_train_batches` and each ModelCheckpoint's `every_n_train_steps` as SGD
    steps, sizes the batches so that each ends on a batch boundary, and hands Lightning the same
    intervals in batches. The trainer's own values are put back when the fit ends. Validation that
    counts across epochs (`check_val_every_n_epoch: null`) also needs the epoch to be whole batches.
    When a callback or setting acts on every Lightning batch (`makemore.lightning_features.batch_readers`:
    weight averaging, a learning-rate monitor, a profiler, ...), each batch carries one SGD step, so that it
    sees every step.
    """

    def __init__(self) -> None:
        self.steps: Optional[int] = None  # SGD steps per batch in the current fit
        self._counted: dict[str, int] = {}  # the trainer's batch-counted intervals, in SGD steps
        self._aligned: dict[str, int] = {}  # other lengths in steps that must end on a batch boundary
        self._saved: Optional[dict[str, Any]] = None
        self._taken: Optional[dict[str, Any]] = None  # the trainer's step options, while makemore applies them
        self._trainer: Optional[L.Trainer] = None

    @property
    def counted_steps(self) -> dict[str, int]:
        """The trainer's batch-counted intervals of the current fit, in SGD steps (log_every_n_steps, ...)."""
        return dict(self._counted)

    def take_step_options(self, trainer: L.Trainer) -> StepOptions:
        """The trainer's StepOptions; the trainer holds neutral values until the fit ends (Lightning refuses them
        in manual optimisation, and they would otherwise act once per batch)."""
        options = StepOptions.of(trainer)
        self._taken = {name: getattr(trainer, name) for name in _NEUTRAL_OPTIONS}
        for name, value in _NEUTRAL_OPTIONS.items():
            setattr(trainer, name, value)
        return options

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if stage != "fit" or not isinstance(data, StepData) or _compat.lr_finder_running(trainer):
            return
        epoch = data.epoch_steps()
        limit = trainer.limit_train_batches  # an int counts steps; a float is a share of the epoch
        if not isinstance(limit, int) or limit <= 0 or trainer.overfit_batches:  # overfit_batches sets it itself
            limit = None
        else:
            epoch = min(epoch, limit)
        # The trainer's intervals, read as SGD steps; Lightning gets them in batches.
        counted = {"log_every_n_steps": trainer.log_every_n_steps}
        val = None if _compat.val_check_is_timed(trainer) else trainer.val_check_interval  # wall clock: untouched
        if isinstance(val, float) and val < 1.0:
            val = max(1, int(epoch * val))  # Lightning's rule for a share of the epoch, in steps
        if isinstance(val, int):
            if trainer.check_val_every_n_epoch is not None and val > epoch and trainer.limit_val_batches > 0:
                raise ConfigError(
                    f"trainer.val_check_interval ({val} SGD steps) is longer than an epoch ({epoch} steps, see"
                    " data.val_every_n_steps); shorten it, or set trainer.check_val_every_n_epoch to null to count"
                    " it across epochs"
                )
            counted["val_check_interval"] = val
        if limit is not None:
            counted["limit_train_batches"] = limit
        # Also on batch boundaries: checkpoints every n steps (checked against global_step), the end of the
        # run (so no batch is cut short and a longer run continues exactly) and, when validation counts
        # batches across epochs, the epoch ends.
        aligned = {
            f"every_n_train_steps of checkpoint callback {i}": _compat.every_n_train_steps(callback)
            for i, callback in enumerate(trainer.checkpoint_callbacks)
        }
        aligned |= {  # a callback that acts every n SGD steps at batch boundaries says so (e.g. Diagnostics)
            f"every_n_steps of {type(callback).__name__}": callback.aligned_steps
            for callback in trainer.callbacks
            if isinstance(getattr(callback, "aligned_steps", None), int)
        }
        aligned["trainer.max_steps"] = max(trainer.max_steps, 0)
        if "val_check_interval" in counted and trainer.check_val_every_n_epoch is None:
            aligned["the epoch (data.val_every_n_steps)"] = epoch
        self._counted = counted
        self._aligned = {name: n for name, n in aligned.items() if n > 0}
        lengths = [n for n in [*counted.values(), *self._aligned.values()] if n > 0]
        readers = batch_readers(trainer, pl_module)
        if readers and data.max_steps_per_batch > 1:
            rank_zero_info(
                f"makemore: {', '.join(readers)} act(s) on every Lightning batch: this fit takes one SGD step per"
                " batch (slower for small models; see docs/performance.md)"
            )
        self._apply(trainer, steps_per_batch_for(lengths, 1 if readers else data.max_steps_per_batch))

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Clip each SGD step's gradient where Lightning's automatic optimisation clips it: inside
        `optimizer.step()`, after a mixed-precision plugin has unscaled it (before the step, the clip would cap the
        scaled gradient: 1/65,536 of the norm asked for under 16-mixed). `train_steps` clips the direct path itself."""
        options = step_options(trainer)
        if options.clip_val:
            pl_module.configure_gradient_clipping(optimizer, options.clip_val, options.clip_algorithm)

    def _apply(self, trainer: L.Trainer, steps: int) -> None:
        self._trainer = trainer
        if self._saved is None:
            self._saved = {name: getattr(trainer, name) for name in self._counted}
        self.steps = steps
        for name, value in self._counted.items():
            setattr(trainer, name, value // steps)

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """On resume (after setup, before the loader is built): keep the batches the run was trained with."""
        steps, trainer = state_dict.get("steps"), self._trainer
        if not steps or self.steps is None or steps == self.steps or trainer is None:
            return
        lengths = {f"trainer.{name}": n for name, n in self._counted.items()} | self._aligned
        misfits = [f"{name} ({n} steps)" for name, n in lengths.items() if n % steps]
        if misfits:
            raise ConfigError(
                f"the checkpoint was trained with {steps} SGD steps per batch, which does not divide this run's "
                + ", ".join(misfits)
                + f"; resume with lengths that are multiples of {steps}"
            )
        self._apply(trainer, steps)

    def _restore(self, trainer: L.Trainer) -> None:
        for saved in (self._saved, self._taken):
            for name, value in (saved or {}).items():
                setattr(trainer, name, value)
        self._saved = self._taken = None
        self.steps, self._trainer = None, None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Every fit ends with a validation, so that it has a val_loss and a best checkpoint, also when its
        # validation interval does not end on max_steps (5,000 steps validated every 10,000): asked to stop,
        # Lightning validates the batch before it stops, once (a batch validated anyway is not validated twice).
        if self.steps and 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore(trainer)


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
        bar.set_description(f"Epoch {trainer.current_epoch}")

    def init_validation_tqdm(self) -> Tqdm:
        # Under the training bar, Lightning's validation bar moves the cursor up a line: in a log file (no terminal)
        # that prints escape codes, so there it shows none (the scores reach the training bar's postfix).
        if self.trainer.state.fn != "validate" and not sys.stdout.isatty():
            return Tqdm(disable=True)
        return super().init_validation_tqdm()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()


def step_callbacks(module: L.LightningModule) -> list[L.Callback]:
    """The callbacks a LightningModule that trains with `train_steps` adds in `configure_callbacks`.

    Called before Lightning checks the trainer's configuration: a fit with a callback or option that cannot work
    per SGD step stops here, and the trainer's step options move to `module.step_options` for the fit.
    """
    trainer = module.trainer
    if trainer.state.fn == "fit":
        refuse_unsupported(trainer)
    intervals = StepIntervals()
    module.step_options = intervals.take_step_options(trainer)
    callbacks: list[L.Callback] = [intervals]
    bar = trainer.progress_bar_callback
    if type(bar) is TQDMProgressBar:  # the stock bar (a user's own bar is left alone)
        callbacks.append(StepProgressBar(refresh_rate=bar.refresh_rate, leave=_compat.progress_bar_leave(bar)))
    return callbacks


def settle_implementation(optimizer: torch.optim.Optimizer) -> None:
    """Make torch.optim's for-loop/foreach choice once, in each parameter group that leaves it unset.

    Left unset, torch.optim re-makes it at every step: several percent of a step on a small model. A
    value set in the config is kept.
    """
    for group in optimizer.param_groups:
        if "foreach" in group and group["foreach"] is None and group.get("fused") is None:
            group["foreach"] = _compat.torch_foreach_default(group["params"], group.get("differentiable", False))


def direct_steps(module: L.LightningModule) -> bool:
    """Whether an SGD step may skip Lightning's per-step wrappers without changing what runs.

    `manual_backward` and `LightningOptimizer.step` exist for several processes (DDP's gradient sync),
    mixed precision (loss scaling) and the backward/optimizer hooks; on one device in 32-bit with none of
    those hooks overridden they only add per-step overhead (about half a step at the lecture's size).
    """
    trainer = module.trainer
    if type(trainer.strategy) is not SingleDeviceStrategy or type(trainer.precision_plugin) is not Precision:
        return False
    hooks = ("on_before_backward", "on_after_backward", "on_before_optimizer_step")
    callbacks = [cb for cb in trainer.callbacks if not isinstance(cb, StepIntervals)]  # its clipping: done directly
    return not any(
        is_overridden(hook, module, L.LightningModule) or any(is_overridden(hook, cb, L.Callback) for cb in callbacks)
        for hook in hooks
    )


def hand_backward_blocker(module: L.LightningModule) -> Optional[str]:
    """Why the hand-written step cannot stand in for autograd + torch.optim in this fit; None when it can.

    The hand-written step is the network's hand-written forward and backward (`net.loss_and_grads`, no autograd
    graph) and the update `p -= lr * grad` of every parameter: exactly what torch.optim.SGD without momentum,
    weight decay, nesterov or maximize does, on one device in 32-bit, with no hook that expects a backward.
    """
    net = module.net
    if getattr(module, "teacher_probabilities", None) is not None:
        return "model.teacher's distillation objective is computed with autograd"
    if not callable(getattr(net, "loss_and_grads", None)):
        return f"{type(net).__name__} has no hand-written backward (a loss_and_grads method)"
    try:
        getattr(net, "check_hand_backward", lambda: None)()
    except ValueError as err:
        return str(err)
    if not direct_steps(module):
        return (
            "it runs on one device in 32-bit precision only, with no on_before_backward, on_after_backward or"
            " on_before_optimizer_step hook"
        )
    options = step_options(module.trainer)
    if options.accumulate > 1 or options.clip_val:
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


def train_steps(module: L.LightningModule, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """One SGD step of `module.net` per mini-batch of `batch` (X (steps, b, ...), Y (steps, b), and the targets'
    positions where TrainBatches gives them); each step's loss.

    Uses the module's one optimizer and schedule (a schedule with interval "step" is stepped after every
    SGD step); stops at the trainer's max_steps. The module must use manual optimisation. With the trainer's
    accumulate_grad_batches k (`module.step_options`), each SGD step takes k consecutive mini-batches of the
    batch and the gradient of their mean loss; with gradient_clip_val, the gradient is clipped before each step
    (`configure_gradient_clipping`, as Lightning does: through Lightning's optimizer step, in its
    on_before_optimizer_step, after a mixed-precision plugin has unscaled it; see StepIntervals). With
    `module.hand_backward_active` (see `hand_backward_blocker`) each step is the network's hand-written backward and the SGD update, with no
    autograd graph and no call into torch.optim. With `module.teacher_probabilities` (model.teacher) each step
    minimises makemore.distillation's objective, and the loss returned is still the cross-entropy with the targets.
    """
    X, Y, *where = batch
    soft = getattr(module, "teacher_probabilities", None)
    weight = module.hparams.distill_weight if soft is not None else 0.0
    optimizer = module.optimizers()
    scheduler = module.lr_schedulers()
    configs = module.trainer.lr_scheduler_configs
    step_scheduler = scheduler is not None and configs[0].interval == "step"
    options = step_options(module.trainer)
    k = options.accumulate
    max_steps = module.trainer.max_steps
    steps = len(Y) // k if max_steps < 0 else min(len(Y) // k, max_steps - module.global_step)
    direct = direct_steps(module)
    net, torch_optimizer = module.net, optimizer.optimizer
    losses = []
    if getattr(module, "hand_backward_active", False):
        group = torch_optimizer.param_groups[0]  # its lr is read at every step: schedules and the LR finder set it
        # torch's schedules warn when they step before the optimizer ever did: step it once with no gradients,
        # which changes nothing (the hand-written step sets no .grad).
        torch_optimizer.zero_grad()
        torch_optimizer.step()
        with torch.no_grad():
            for x, y in zip(X[:steps].unbind(), Y[:steps].unbind()):
                loss, grads = net.loss_and_grads(x, y)
                _compat.count_optimizer_step(optimizer, partial(_sgd_update, grads, group["lr"]))
                if step_scheduler:
                    scheduler.step()
                losses.append(loss)
    else:
        backward = torch.Tensor.backward if direct else module.manual_backward
        for step in range(steps):
            torch_optimizer.zero_grad()  # what LightningOptimizer.zero_grad forwards to
            if k == 1 and soft is None:
                _, loss = net(X[step], Y[step])
                backward(loss)
                loss = loss.detach()
            else:  # the gradient of the mean of k mini-batches' objectives, one mini-batch in memory at a time
                loss = 0.0
                for i in range(step * k, step * k + k):
                    logits, part = net(X[i], Y[i])
                    minimised = part
                    if soft is not None:  # model.teacher: the distillation objective
                        minimised = distillation.objective(logits, part, X[i], where[0][i], soft, weight)
                    backward(minimised / k)
                    loss = loss + part.detach() / k
            if direct:  # no Lightning optimizer step, so no hook to clip in: clipped here (32-bit, nothing to unscale)
                if options.clip_val:
                    module.configure_gradient_clipping(torch_optimizer, options.clip_val, options.clip_algorithm)
                _compat.count_optimizer_step(optimizer, torch_optimizer.step)
            else:  # StepIntervals clips inside it, once a mixed-precision plugin has unscaled the gradient
                optimizer.step()
            if step_scheduler:
                scheduler.step()
            losses.append(loss)
    if not losses:
        return torch.zeros(0, device=Y.device)
    losses = torch.stack(losses)
    if not record_sweep_losses(module, losses):  # a sweep diverges on purpose at its end: the finder stops it
        # Under DDP every process decides on the losses of all: one stopping alone would leave the others waiting
        # in the next gradient all-reduce.
        gather = module.all_gather if module.trainer.world_size > 1 else None
        check_divergence(losses, module.global_step - steps, getattr(module, "max_loss", math.inf), gather=gather)
    return losses


def _sgd_update(grads: list[tuple[torch.Tensor, torch.Tensor]], lr: float) -> None:
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
