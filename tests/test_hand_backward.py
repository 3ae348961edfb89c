"""Lecture part 4: the MLP's hand-written backward equals autograd, and the hand-written step trains as autograd does."""

import logging
import math
import warnings

import pytest
import torch
from conftest import small_run_args

from makemore.models import MLP


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "batchnorm"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["f32", "f64"])
def test_hand_backward_equals_autograd(batch_norm, dtype, tolerance):
    torch.manual_seed(0)
    by_autograd = MLP(27, 3, n_embd=10, n_hidden=64, n_layers=2, batch_norm=batch_norm).to(dtype)
    by_hand = MLP(27, 3, n_embd=10, n_hidden=64, n_layers=2, batch_norm=batch_norm).to(dtype)
    by_hand.load_state_dict(by_autograd.state_dict())
    idx, targets = torch.randint(0, 27, (32, 3)), torch.randint(0, 27, (32,))

    _, loss = by_autograd(idx, targets)
    loss.backward()
    hand_loss, grads = by_hand.loss_and_grads(idx, targets)

    names = {id(p): name for name, p in by_hand.named_parameters()}
    assert sorted(names[id(p)] for p, _ in grads) == sorted(names.values())  # every parameter, once
    autograd = dict(by_autograd.named_parameters())
    for parameter, grad in grads:
        name = names[id(parameter)]
        difference = (grad - autograd[name].grad).abs().max().item()
        assert difference <= tolerance, f"{name}: max |hand - autograd| = {difference:.3g}"
    assert hand_loss.item() == pytest.approx(loss.item(), abs=tolerance)
    # BatchNorm's running statistics move as nn.BatchNorm1d moves them
    for (name, ours), theirs in zip(by_hand.named_buffers(), by_autograd.buffers()):
        assert torch.allclose(ours.double(), theirs.double(), atol=tolerance), name


def test_hand_backward_refuses_dropout():
    with pytest.raises(ValueError, match="dropout"):
        MLP(27, 3, dropout=0.2).loss_and_grads(torch.zeros(4, 3, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_hand_written_step_trains_as_autograd_and_sgd_do(words_path, tmp_path, run_cli):
    # a schedule that changes the rate mid-run: the hand-written step reads the optimizer's lr at every step
    schedule = ["--model.lr_scheduler", "torch.optim.lr_scheduler.MultiStepLR"]
    schedule += ["--model.lr_scheduler.init_args.milestones", "[100]"]
    runs = {}
    for fused in ("true", "false"):
        root = tmp_path / fused
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs[fused] = run_cli("fit", *small_run_args(words_path, root), *schedule, "--model.hand_backward", fused)
        assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]  # the schedule steps after it
    assert runs["true"].model.hand_backward_active and not runs["false"].model.hand_backward_active
    assert runs["true"].trainer.global_step == runs["false"].trainer.global_step == 200
    fused, autograd = runs["true"].model.state_dict(), runs["false"].model.state_dict()
    for name in autograd:
        assert torch.allclose(fused[name], autograd[name], atol=1e-5), name
    assert runs["true"].trainer.callback_metrics["val_loss"].item() == pytest.approx(
        runs["false"].trainer.callback_metrics["val_loss"].item(), abs=1e-5
    )


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--model.optimizer", "torch.optim.AdamW"], "the optimizer is AdamW"),
        (["--model.optimizer.init_args.momentum", "0.9"], "momentum"),
        (["--model.net.init_args.dropout", "0.1"], "does not cover dropout"),
    ],
    ids=["adamw", "momentum", "dropout"],
)
def test_hand_written_step_falls_back_saying_why_once(words_path, tmp_path, run_cli, args, reason):
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    lightning_log = logging.getLogger("lightning.pytorch")  # where Lightning's info lines go (not propagated)
    lightning_log.addHandler(handler)
    try:
        cli = run_cli(
            "fit", *small_run_args(words_path, tmp_path, max_steps=20), "--model.hand_backward", "true", *args
        )
    finally:
        lightning_log.removeHandler(handler)
    assert not cli.model.hand_backward_active
    assert cli.trainer.global_step == 20
    said = [message for message in messages if "model.hand_backward is not used" in message]
    assert len(said) == 1 and reason in said[0], said


def test_hand_written_step_is_used_quietly_where_it_applies_by_default(words_path, tmp_path, run_cli):
    plain = run_cli("fit", *small_run_args(words_path, tmp_path / "plain", max_steps=20))
    adamw = run_cli(
        "fit", *small_run_args(words_path, tmp_path / "adamw", max_steps=20), "--model.optimizer", "torch.optim.AdamW"
    )
    batch_norm = run_cli(
        "fit", *small_run_args(words_path, tmp_path / "bn", max_steps=20), "--model.net.init_args.batch_norm", "true"
    )
    assert plain.model.hparams.hand_backward is None
    assert plain.model.hand_backward_active and not adamw.model.hand_backward_active
    assert not batch_norm.model.hand_backward_active  # autograd's fused BatchNorm kernels are faster here


def test_a_kaiming_model_with_a_small_output_layer_starts_at_uniform_guessing(words_path, tmp_path, run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    init = ["--model.net.init", "kaiming", "--model.net.out_scale", "0.01", "--model.net.n_hidden", "100"]
    fits = {
        "kaiming": run_cli("fit", *small_run_args(words_path, tmp_path / "k", max_steps=10), *init),
        "randn": run_cli(  # part 3's first, "bad" start: every weight and bias standard normal
            "fit", *small_run_args(words_path, tmp_path / "b", max_steps=10), "--model.net.init", "randn"
        ),
    }
    start = {}
    for name, cli in fits.items():
        events = EventAccumulator(cli.trainer.log_dir)
        events.Reload()
        (untrained,) = events.Scalars("untrained_val_loss")
        (uniform,) = events.Scalars("uniform_loss")
        assert untrained.step == uniform.step == 0
        assert uniform.value == pytest.approx(math.log(len(cli.datamodule.vocabulary)))
        start[name] = untrained.value - uniform.value
    assert abs(start["kaiming"]) < 0.1
    assert start["randn"] > 5.0  # confidently wrong (about 16 above uniform on names.txt, docs/diagnostics.md)


def test_a_fit_told_not_to_skips_the_untrained_validation(words_path, tmp_path, run_cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cli = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=10), "--model.untrained_loss", "false")
    events = EventAccumulator(cli.trainer.log_dir)
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "val_loss" in scalars  # the fit validated and logged as usual
    assert "untrained_val_loss" not in scalars and "uniform_loss" not in scalars
