"""Lecture part 3 as a tool: look inside a run. `Diagnostics` logs activation and gradient statistics.

Turn it on with one line, `--trainer.callbacks+=makemore.diagnostics.Diagnostics` (or in a config's
`trainer.callbacks`). Every `every_n_steps` SGD steps, at the start of a training batch, it takes that
batch's first mini-batch, the one the next SGD step trains on, and runs the network on it once more, with
autograd and in training mode as training does, without changing anything training sees: the parameters,
their `.grad`, BatchNorm's running statistics and the random number stream are as they were. From that pass
it logs to TensorBoard:

- for every tanh of the network, in the order the forward applies them (`tanh_0`, `tanh_1`, ...): the
  activations' mean and std, the share of saturated units (|t| > `saturation`, 0.97 in the lecture) and a
  histogram (tags `activations/...`);
- for every parameter: its gradient's mean and std and a histogram (`gradients/...`), and the
  update-to-data ratio log10(std(lr x grad) / std(param)) (`update_ratio/...`), with lr the parameter's
  learning rate for that step. For plain SGD lr x grad is the step's update; for Adam-like optimizers it is
  the lecture's measure, not the update;
- a figure like the lecture's, the ratio of each weight matrix against the step with the 1e-3 guide line
  (`plots/update_ratio`), drawn at the end of the fit (the `update_ratio/...` scalars show it live).

The tanh are found as torch.tanh calls during the pass (a TorchFunctionMode): networks need no hooks, and
training itself runs untouched. Measuring costs one forward and backward every `every_n_steps` steps plus
the TensorBoard writes (benchmarks/diagnostics_overhead.py measures it; docs/diagnostics.md has the numbers).
"""

import math
from collections import defaultdict
from typing import Any, Optional

import lightning as L
import torch
from matplotlib.figure import Figure
from torch.overrides import TorchFunctionMode

from makemore import _compat
from makemore.callbacks import tensorboard
from makemore.errors import ConfigError

TANH = {torch.tanh, torch.Tensor.tanh, torch.nn.functional.tanh}


class _RecordTanh(TorchFunctionMode):
    """Keeps the output of every tanh applied while it is active, in call order."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in TANH:
            self.outputs.append(out)
        return out


def tanh_outputs(net: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The network's loss on (idx, targets) and the outputs of every tanh its forward applied, in order."""
    with _RecordTanh() as record:
        _, loss = net(idx, targets)
    return loss, record.outputs


def update_ratio_figure(history: dict[str, list[tuple[int, float]]]) -> Figure:
    """log10 of the update-to-data ratio of each weight matrix against the step, with the 1e-3 guide line."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for name, points in history.items():
        steps, ratios = zip(*points)
        ax.plot(steps, ratios, label=name)
    ax.axhline(-3, color="black", linestyle="--", linewidth=1, label="1e-3")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("log10 std(lr x grad) / std(param)")
    ax.set_title("update-to-data ratio of the weights (lecture part 3)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    return fig


class Diagnostics(L.Callback):
    """Activation, gradient and update-to-data statistics in TensorBoard, every `every_n_steps` SGD steps.

    Args:
        every_n_steps: SGD steps between two measurements (the first is at step 0, before any training). Training
            batches are sized so that each measurement falls on a batch boundary; an interval that is not a
            multiple of the trainer's log_every_n_steps makes batches smaller (and training slower).
        activations: log the tanh activations; a network that applies no tanh is refused unless this is false.
        histograms: also log histograms (of activations and gradients); the scalars alone are cheaper.
        histogram_bins: bins of each histogram (TensorBoard's own default, about 1,500 edges, costs 4x the time).
        saturation: |tanh| above this counts as saturated (the lecture's 0.97).
    """

    def __init__(
        self,
        every_n_steps: int = 2000,
        activations: bool = True,
        histograms: bool = True,
        histogram_bins: int = 30,
        saturation: float = 0.97,
    ) -> None:
        if every_n_steps < 1:
            raise ConfigError(f"Diagnostics: every_n_steps must be at least 1, got {every_n_steps}")
        if histogram_bins < 1:
            raise ConfigError(f"Diagnostics: histogram_bins must be at least 1, got {histogram_bins}")
        if not 0 < saturation < 1:
            raise ConfigError(f"Diagnostics: saturation is a tanh value between 0 and 1, got {saturation}")
        self.every_n_steps = every_n_steps
        self.activations = activations
        self.histograms = histograms
        self.histogram_bins = histogram_bins
        self.saturation = saturation
        self.history: dict[str, list[tuple[int, float]]] = defaultdict(list)  # weight name -> (step, log10 ratio)

    @property
    def aligned_steps(self) -> int:
        """The SGD steps the step machinery puts on batch boundaries for this callback (see makemore.steps.aligned_lengths)."""
        return self.every_n_steps

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.activations:
            return
        net = pl_module.net
        # where the weights are now: at setup Lightning already reports the target device (a GPU) as
        # pl_module.device, while the weights are still on the CPU
        device = next(net.parameters()).device
        idx = torch.zeros(2, pl_module.hparams.block_size, dtype=torch.long, device=device)
        was_training = net.training
        net.eval()
        try:
            with torch.no_grad():
                _, outputs = tanh_outputs(net, idx, None)
        finally:
            net.train(was_training)
        if not outputs:
            raise ConfigError(
                f"Diagnostics: {type(net).__name__} applies no tanh, whose activations it reads (the MLP and WaveNet"
                " do); give it activations: false to log gradients and update-to-data ratios only"
            )

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or _compat.lr_finder_running(trainer):
            return
        # Every process measures (with sync_batchnorm the pass all-reduces, so all must take part); rank 0 writes.
        writer = tensorboard(trainer) if trainer.is_global_zero else None
        X, Y = batch[0], batch[1]  # (steps, k, b, ...): the first mini-batch of the batch's first step
        self.measure(writer, pl_module, X[0, 0], Y[0, 0], step, trainer.optimizers[0])

    def measure(
        self,
        writer: Optional[Any],
        pl_module: L.LightningModule,
        x: torch.Tensor,
        y: torch.Tensor,
        step: int,
        optimizer: Any,
    ) -> None:
        """Log the statistics of one forward and backward of the network on (x, y), leaving no trace in training.

        With `writer` None the pass runs and nothing is logged (a DDP process other than rank 0)."""
        net = pl_module.net
        named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
        parameters = dict(named)
        buffers = {name: b.clone() for name, b in net.named_buffers()}  # BatchNorm's running statistics
        device = x.device
        # the same dropout masks for training with or without this: the generator of the device it runs on forked
        forked = {"devices": [device], "device_type": device.type} if device.type != "cpu" else {"devices": []}
        with torch.random.fork_rng(**forked):
            with torch.enable_grad():
                loss, outputs = tanh_outputs(net, x, y)
                grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        with torch.no_grad():
            for name, b in net.named_buffers():
                b.copy_(buffers[name])
            stats: dict[str, torch.Tensor] = {}  # tag -> 0-d tensor, read back in one go
            histograms: dict[str, torch.Tensor] = {}
            if self.activations:
                for i, t in enumerate(outputs):
                    t = t.detach()
                    std, mean = torch.std_mean(t)
                    stats[f"activations/mean/tanh_{i}"], stats[f"activations/std/tanh_{i}"] = mean, std
                    stats[f"activations/saturated/tanh_{i}"] = (t.abs() > self.saturation).float().mean()
                    histograms[f"activations/tanh_{i}"] = t
            # a recipe's group (makemore.optimizers.ParameterGroups) trains at lr_scale x its "lr"
            lrs = {
                id(p): group["lr"] * group.get("lr_scale", 1.0)
                for group in optimizer.param_groups
                for p in group["params"]
            }
            for (name, p), grad in zip(named, grads):
                if grad is None:  # not used by this forward
                    continue
                std, mean = torch.std_mean(grad)
                stats[f"gradients/mean/{name}"], stats[f"gradients/std/{name}"] = mean, std
                stats[f"update_ratio/{name}"] = (lrs.get(id(p), 0.0) * std / p.std()).log10()
                histograms[f"gradients/{name}"] = grad
            values = torch.stack(list(stats.values())).tolist() if stats else []
        if writer is None:
            return
        for tag, value in zip(stats, values):
            if math.isfinite(value):  # a ratio of 0 (lr 0, or no gradient) has no logarithm
                writer.add_scalar(tag, value, step)
                name = tag.removeprefix("update_ratio/")
                if name != tag and parameters[name].ndim == 2 and "norm" not in name:
                    self.history[name].append((step, value))  # the weight matrices, as the lecture's figure shows
        if self.histograms:
            for tag, tensor in histograms.items():
                writer.add_histogram(tag, tensor, step, bins=self.histogram_bins)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = tensorboard(trainer)
        if writer is not None and trainer.is_global_zero and self.history:
            writer.add_figure("plots/update_ratio", update_ratio_figure(self.history), trainer.global_step)
            writer.flush()

    def state_dict(self) -> dict[str, Any]:
        return {"history": dict(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = defaultdict(list, {k: list(v) for k, v in state_dict.get("history", {}).items()})
