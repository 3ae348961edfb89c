"""BatchNorm done right (lecture part 3): calibration at the end of fit, and synchronised statistics under DDP.

`CalibrateBatchNorm` (a callback, `--trainer.callbacks+=makemore.batchnorm.CalibrateBatchNorm`) replaces
the running statistics, an exponential average over the last mini-batches of training, by the statistics
of the whole train split under the final weights: the lecture's "calibrate the batch norm at the end of
training". It runs after the last SGD step, before the fit's last validation, so that validation, the
checkpoints written after it and everything sampled or tested from them use the calibrated statistics.

`sync_batchnorm`: with DDP each process normalises by the statistics of its own share of the mini-batch
unless `trainer.sync_batchnorm` is true; then every process uses the statistics of the whole mini-batch,
as one process would. Lightning does that with torch's SyncBatchNorm, which runs on GPUs only; makemore's
CLI hands Lightning `SyncBatchNormPlugin` instead, whose layers also synchronise CPU processes (gloo).
"""

from typing import Any, Optional, Union

import lightning as L
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm

from makemore import _compat
from makemore.errors import ConfigError
from makemore.text import Contexts

# torch's BatchNorm layers (the lazy ones are subclasses of these).
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batch_norms(net: nn.Module) -> list[nn.Module]:
    """The network's BatchNorm layers that keep running statistics."""
    return [m for m in net.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]


@torch.no_grad()
def calibrate(net: nn.Module, X: Union[torch.Tensor, Contexts], batch_size: int = 4096) -> int:
    """Set every BatchNorm's running mean and variance to those of its inputs over all of X, exactly.

    The network runs in eval mode (no dropout), one BatchNorm at a time in forward order: the inputs of each
    are computed with the earlier ones already calibrated, as one forward in training mode over the whole of
    X would normalise them (up to the variance's factor n / (n - 1), n the examples), but in batches of
    `batch_size` examples. The variance kept is unbiased, as BatchNorm keeps it; sums are in float64.
    Returns how many layers were calibrated; ValueError if the network has none.
    """
    norms = batch_norms(net)
    device = next(net.parameters()).device
    if not norms:
        raise ValueError(f"{type(net).__name__} has no BatchNorm layer with running statistics to calibrate")
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: None if m in order else order.append(m)) for m in norms]
    was_training = net.training
    net.eval()
    try:
        net(X[:2].to(device))  # the order the forward applies them in
        for hook in hooks:
            hook.remove()
        for norm in order:
            mean, var = input_moments(net, norm, X, batch_size)
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    return len(order)


def input_moments(
    net: nn.Module, layer: nn.Module, X: Union[torch.Tensor, Contexts], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and unbiased variance per channel of `layer`'s input over a forward of all of X (float64 sums; on
    Apple's GPU, which has no float64, each batch's float32 sums are added up in float64 on the CPU)."""
    sums: list[torch.Tensor] = []

    def accumulate(module: nn.Module, args: tuple) -> None:
        has_float64 = args[0].device.type != "mps"
        x = args[0].to(torch.float64 if has_float64 else torch.float32)
        dims = [0, *range(2, x.dim())]
        moments = torch.stack([torch.full_like(x.sum(dims), x.numel() / x.shape[1]), x.sum(dims), (x * x).sum(dims)])
        sums.append(moments if has_float64 else moments.to("cpu", torch.float64))

    hook = layer.register_forward_pre_hook(accumulate)
    try:
        device = next(net.parameters()).device
        for start in range(0, len(X), batch_size):
            net(X[start : start + batch_size].to(device))
    finally:
        hook.remove()
    n, total, squares = torch.stack(sums).sum(0)
    mean = total / n
    return mean, ((squares - n * mean * mean) / (n - 1)).clamp_min(0)


class CalibrateBatchNorm(L.Callback):
    """After the last SGD step of fit, BatchNorm's running statistics from the whole train split (`calibrate`).

    It acts when the fit reaches trainer.max_steps, before that step's validation: that validation and the
    checkpoints after it see the calibrated network. When that step is not validated (validation turned off), the
    calibrated statistics are in last.ckpt (the fit says so; `makemore validate --ckpt_path last` scores it).

    Args:
        batch_size: examples per forward while calibrating (memory, not the result).
    """

    def __init__(self, batch_size: int = 4096) -> None:
        if batch_size < 1:
            raise ConfigError(f"CalibrateBatchNorm: batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.calibrated_at: Optional[int] = None
        self.validated = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not batch_norms(pl_module.net):
            raise ConfigError(
                f"CalibrateBatchNorm: {type(pl_module.net).__name__} has no BatchNorm layer to calibrate (an MLP"
                " needs model.net.batch_norm true)"
            )
        if trainer.max_steps < 0:
            raise ConfigError("CalibrateBatchNorm calibrates at trainer.max_steps: set it")
        averaging = [type(c).__name__ for c in trainer.callbacks if isinstance(c, WeightAveraging)]
        if averaging:
            raise ConfigError(
                f"CalibrateBatchNorm calibrates the trained weights, which {averaging[0]} then replaces by their"
                " average: use one of the two (weight averaging averages the running statistics too)"
            )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step < trainer.max_steps or _compat.lr_finder_running(trainer):
            return
        X = trainer.datamodule.train_pool().contexts  # gathered batch by batch
        layers = calibrate(pl_module.net, X, self.batch_size)
        self.calibrated_at, self.validated = trainer.global_step, False
        if trainer.is_global_zero:
            print(
                f"calibrated the running statistics of {layers} BatchNorm layer(s) on the {len(X):,} training examples"
                f" at step {trainer.global_step:,}"
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.calibrated_at is not None and not trainer.sanity_checking:
            self.validated = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.calibrated_at is not None and not self.validated and trainer.is_global_zero:
            print(
                f"no validation followed the calibration at step {self.calibrated_at:,}: the val_loss logged is the"
                " uncalibrated network's; `makemore validate --ckpt_path last` scores the calibrated one"
            )


class SyncBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d whose statistics in training are those of the whole mini-batch of all DDP processes.

    torch's nn.SyncBatchNorm does this on GPUs only (DDP refuses it in CPU processes). Here each process
    all-reduces the sums and sums of squares of its inputs (torch.distributed.nn.functional.all_reduce, so
    gradients flow through the shared statistics as in torch's kernel, on any backend), normalises by the
    whole mini-batch's mean and biased variance, and updates the running statistics with the unbiased
    variance, as BatchNorm does. Outside training or in one process it is BatchNorm1d. Same state as
    BatchNorm1d: checkpoints load into the plain layer.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = self.process_group if hasattr(self, "process_group") else None
        if group is None and dist.is_available() and dist.is_initialized():
            group = dist.group.WORLD
        if not self.training or not self.track_running_stats or group is None or dist.get_world_size(group) == 1:
            return super().forward(input)
        if input.dim() not in (2, 3):  # BatchNorm1d's own check
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")
        channels = input.shape[1]
        dims = [0, *range(2, input.dim())]
        count = input.new_tensor([input.numel() / channels])
        stats = dist_fn.all_reduce(torch.cat([input.sum(dims), (input * input).sum(dims), count]), group=group)
        total, squares, n = stats[:channels], stats[channels : 2 * channels], stats[-1]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0)  # biased, as BatchNorm normalises
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach(), factor)
            self.running_var.lerp_(var.detach() * n / (n - 1), factor)
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


class SyncBatchNormPlugin(TorchSyncBatchNorm):
    """Lightning's `sync_batchnorm` with makemore's SyncBatchNorm layers, which also run in CPU processes.

    makemore's CLI uses it when trainer.sync_batchnorm is true and training runs on CPUs (on GPUs Lightning's
    own, torch's nn.SyncBatchNorm). From Python: `L.Trainer(sync_batchnorm=True, plugins=[SyncBatchNormPlugin()])`.
    Every nn.BatchNorm1d of the model becomes a SyncBatchNorm, keeping its state.
    """

    def apply(self, model: nn.Module) -> nn.Module:
        return _replace_layers(model, nn.BatchNorm1d, SyncBatchNorm)

    def revert(self, model: nn.Module) -> nn.Module:
        return _replace_layers(model, SyncBatchNorm, nn.BatchNorm1d)


def _replace_layers(model: nn.Module, old: type, new: type) -> nn.Module:
    """Every layer of exactly type `old` in `model` replaced by a `new` holding the same parameters and buffers (the
    very tensors, so an optimizer already holding them keeps working), as torch's convert_sync_batchnorm does."""
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) is old:
                layer = new(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
                for key, value in [*child.named_parameters(recurse=False), *child.named_buffers(recurse=False)]:
                    setattr(layer, key, value)
                layer.train(child.training)
                setattr(parent, name, layer)
    return model


def cpu_sync_plugins(plugins: Any, accelerator: Any) -> list:
    """Trainer plugins for sync_batchnorm: `plugins` plus SyncBatchNormPlugin when training runs on CPUs and no
    layer sync is given (on GPUs Lightning's own, torch's nn.SyncBatchNorm, stays)."""
    from lightning.pytorch.accelerators import CPUAccelerator
    from lightning.pytorch.plugins.layer_sync import LayerSync

    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins] if plugins is not None else []
    if accelerator in (None, "auto"):
        on_cpu = not torch.cuda.is_available()
    else:
        on_cpu = accelerator == "cpu" or isinstance(accelerator, CPUAccelerator)
    if on_cpu and not any(isinstance(plugin, LayerSync) for plugin in plugins):
        plugins.append(SyncBatchNormPlugin())
    return plugins
