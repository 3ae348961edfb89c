"""BatchNorm done right: calibration at the end of fit, and statistics synchronised across CPU processes."""

import os
import re

import pytest
import torch
import torch.multiprocessing as mp
from conftest import cli_error, small_run_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from makemore.batchnorm import SyncBatchNorm, calibrate
from makemore.checkpoint import read_checkpoint
from makemore.models import MLP, WaveNet

CALIBRATE = ["--trainer.callbacks+=makemore.batchnorm.CalibrateBatchNorm"]


@pytest.mark.parametrize("batch_size", [100_000, 37], ids=["one batch", "in batches"])
def test_calibration_is_the_whole_splits_statistics(batch_size):
    torch.manual_seed(0)
    net = MLP(27, 3, n_embd=4, n_hidden=16, n_layers=2, batch_norm=True, dropout=0.3)
    X = torch.randint(0, 27, (1000, 3))
    net.train()
    assert calibrate(net, X, batch_size) == 2
    assert net.training  # the mode it was in
    # the lecture's way: one forward over the whole split, each layer normalised by the split's statistics
    x = net.embedding.weight[X].flatten(1).double()
    for layer, norm in zip(net.hidden, net.norms):
        h = x @ layer.weight.double()
        torch.testing.assert_close(norm.running_mean.double(), h.mean(0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(norm.running_var.double(), h.var(0), rtol=1e-4, atol=1e-6)
        x = torch.tanh((h - norm.running_mean.double()) / (norm.running_var.double() + norm.eps).sqrt())
        x = x * norm.weight.double() + norm.bias.double()


def test_wavenet_calibrates_over_positions():
    torch.manual_seed(0)
    net = WaveNet(27, 8, n_embd=4, n_hidden=8)
    X = torch.randint(0, 27, (300, 8))
    assert calibrate(net, X, 64) == len([m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)])
    first = net.norms[0]
    captured = []
    hook = first.register_forward_pre_hook(lambda m, args: captured.append(args[0]))
    net.eval()
    net(X)
    hook.remove()
    x = captured[0].transpose(0, 1).flatten(1)  # channels x (examples and positions)
    torch.testing.assert_close(first.running_mean, x.mean(1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(first.running_var, x.var(1), rtol=1e-4, atol=1e-5)


def test_a_fit_ends_calibrated_and_validated(words_path, tmp_path, run_cli):
    args = small_run_args(words_path, tmp_path, max_steps=100)  # validation at 50 and 100
    cli = run_cli("fit", *args, "--model.net.batch_norm", "true", *CALIBRATE)
    net = cli.model.net
    X, _ = cli.datamodule.train_pool().tensors()
    expected = MLP(len(cli.datamodule.vocabulary), 3, n_embd=10, n_hidden=200, batch_norm=True)
    expected.load_state_dict(net.state_dict())
    calibrate(expected, X)  # the same weights calibrated again: nothing changes
    torch.testing.assert_close(net.norms[0].running_mean, expected.norms[0].running_mean)
    last = read_checkpoint(str(next(tmp_path.rglob("last.ckpt"))))  # the calibrated statistics
    torch.testing.assert_close(last["state_dict"]["net.norms.0.running_var"], net.norms[0].running_var)
    # the last val_loss is the calibrated network's: validate last.ckpt and compare
    logged = float(cli.trainer.callback_metrics["val_loss"])
    last_path = str(next(tmp_path.rglob("last.ckpt")))
    again = run_cli("validate", *small_run_args(words_path, tmp_path / "v"), "--ckpt_path", last_path)
    assert float(again.trainer.callback_metrics["val_loss"]) == pytest.approx(logged, abs=1e-5)


def test_calibration_without_batch_norm_is_one_line(words_path, tmp_path):
    cli_error(
        ["fit", *small_run_args(words_path, tmp_path, max_steps=20), *CALIBRATE],
        ".*CalibrateBatchNorm: MLP has no BatchNorm layer",
    )
    assert not list(tmp_path.rglob("*.ckpt"))


def _sync_worker(rank: int, world: int, port: int, x: torch.Tensor, state: dict, results: dict) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        norm = SyncBatchNorm(x.shape[1])
        norm.load_state_dict(state)
        part = x.chunk(world)[rank].clone().requires_grad_(True)
        out = norm(part)
        (out * torch.arange(out.numel()).view_as(out).float().sin()).sum().backward()
        results[rank] = (out.detach(), part.grad, norm.running_mean.clone(), norm.running_var.clone())
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed support")
@pytest.mark.parametrize("shape", [(16, 5), (8, 5, 4)], ids=["(batch, channels)", "(batch, channels, positions)"])
def test_sync_batch_norm_on_two_cpu_processes_is_one_batch_norm(shape):
    """Two processes, half a mini-batch each: the outputs, input gradients and running statistics of one
    BatchNorm over the whole mini-batch."""
    torch.manual_seed(0)
    x = torch.randn(*shape) * 3 + 1
    reference = torch.nn.BatchNorm1d(shape[1])
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-1, 1)
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    whole = x.clone().requires_grad_(True)
    out = reference(whole)
    # the loss of both processes summed is the loss of the whole batch
    weights = torch.cat([torch.arange(p.numel()).view_as(p).float().sin() for p in out.detach().chunk(2)])
    (out * weights).sum().backward()
    with mp.Manager() as manager:
        results = manager.dict()
        port = 29400 + os.getpid() % 500
        mp.spawn(_sync_worker, args=(2, port, x, state, results), nprocs=2)
        results = dict(results)
    outputs, grads = torch.cat([results[r][0] for r in (0, 1)]), torch.cat([results[r][1] for r in (0, 1)])
    torch.testing.assert_close(outputs, out.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads, whole.grad, rtol=1e-4, atol=1e-5)
    for rank in (0, 1):
        torch.testing.assert_close(results[rank][2], reference.running_mean)
        torch.testing.assert_close(results[rank][3], reference.running_var)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed support")
def test_sync_batchnorm_fits_on_two_cpu_processes(words_path, tmp_path):
    from test_resume import makemore

    args = small_run_args(words_path, tmp_path, max_steps=100)
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    diagnostics = ["--trainer.callbacks+=makemore.diagnostics.Diagnostics", "--trainer.callbacks.every_n_steps", "50"]
    options = ["--model.net.batch_norm", "true", "--trainer.sync_batchnorm", "true", *diagnostics]
    process = makemore("fit", *args, *ddp, *options)  # Diagnostics' pass all-reduces too: every process takes part
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    best = next(tmp_path.rglob("step=*.ckpt"))
    state = read_checkpoint(str(best))["state_dict"]
    assert "net.norms.0.running_mean" in state  # the plain BatchNorm's names: the checkpoint loads anywhere
    assert re.search(r"val_loss=\d", best.name)
    events = EventAccumulator(str(best.parent.parent), size_guidance={"scalars": 0})
    events.Reload()
    assert [p.step for p in events.Scalars("activations/saturated/tanh_0")] == [0, 50]  # rank 0 wrote them, once
