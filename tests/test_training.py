"""Training behaves as configured: losses fall, SGD steps and the schedule are counted right, runs resume."""

import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import small_run_args
from lightning.pytorch.tuner import Tuner

from makemore.data import CharDataModule
from makemore.module import MakemoreModule


def test_initial_loss_is_near_uniform(words_path):
    torch.manual_seed(0)
    data = CharDataModule(str(words_path))
    data.setup("fit")
    module = MakemoreModule(data.vocab)
    _, loss = module(*data.examples["val"].tensors())
    assert abs(loss.item() - math.log(len(data.vocab))) < 0.3


def test_short_fit_lowers_the_loss(words_path, tmp_path, run_cli):
    cli = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=300))
    uniform = math.log(len(cli.datamodule.vocab))
    metrics = cli.trainer.callback_metrics
    assert metrics["val_loss"] < uniform - 0.4
    assert metrics["train_loss"] < uniform - 0.4
    assert torch.isclose(metrics["val_perplexity"], metrics["val_loss"].exp())


def memorisation_floor(X: torch.Tensor, Y: torch.Tensor) -> float:
    """The lowest mean cross-entropy any model can reach on (X, Y): contexts seen with several next characters."""
    counts = Counter(zip(map(tuple, X.tolist()), Y.tolist()))
    per_context = Counter(map(tuple, X.tolist()))
    return -sum(n * math.log(n / per_context[context]) for (context, _), n in counts.items()) / len(Y)


def test_overfit_one_batch(words_path, tmp_path, run_cli):
    cli = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=2000, trainer__overfit_batches="1"))
    X, Y = cli.datamodule.examples["train"].tensors()
    floor = memorisation_floor(X[:32], Y[:32])  # overfit_batches=1: the first batch of 32 examples
    loss = cli.trainer.callback_metrics["train_loss"].item()
    assert loss < floor + 0.05  # from about ln(vocab_size) = 2.6 down to what memorising the batch allows
    assert cli.trainer.callback_metrics["val_loss"] > loss + 1  # and it does not generalise


def test_steps_and_schedule_follow_the_config(words_path, tmp_path, run_cli):
    # 235 SGD steps: not a multiple of the 10 steps a batch carries, nor of the 50-step epoch
    cli = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path, max_steps=235, trainer__enable_progress_bar="true"),
        "--model.lr_scheduler",
        "torch.optim.lr_scheduler.MultiStepLR",
        "--model.lr_scheduler.milestones",
        "[120]",
        "--model.lr_scheduler.gamma",
        "0.1",
    )
    trainer = cli.trainer
    assert trainer.global_step == 235
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 235  # stepped once per SGD step
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.01)
    bar = trainer.progress_bar_callback.train_progress_bar
    assert (bar.n, bar.total) == (235, 235)  # the bar counts SGD steps, not Lightning batches
    names = sorted(p.name for p in Path(trainer.checkpoint_callback.dirpath).glob("*.ckpt"))
    assert "last.ckpt" in names and any("step=200" in n for n in names)  # last validation at step 200


def test_optimizer_keeps_torchs_implementation_choice(words_path):
    vocab = CharDataModule(str(words_path)).vocab
    # left unset, torch.optim picks its for-loop code for CPU tensors: made once, in the parameter group
    chosen = MakemoreModule(vocab).configure_optimizers()
    assert chosen.param_groups[0]["foreach"] is False
    # what the YAML sets is kept
    explicit = MakemoreModule(vocab, optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, foreach=True))
    assert explicit.configure_optimizers().param_groups[0]["foreach"] is True


def test_epoch_scheduler_val_every_n_steps(words_path, tmp_path, run_cli):
    cli = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path, max_steps=150),
        "--model.lr_scheduler",
        "torch.optim.lr_scheduler.StepLR",
        "--model.lr_scheduler.step_size",
        "1",
        "--model.lr_scheduler.gamma",
        "0.5",
        "--model.lr_scheduler_interval",
        "epoch",
    )
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)  # three 50-step epochs


def test_lr_finder_sweeps_one_sgd_step_per_point(words_path, tmp_path):
    import lightning as L

    data = CharDataModule(str(words_path), max_steps_per_batch=10)
    module = MakemoreModule(data.vocab)
    trainer = L.Trainer(
        default_root_dir=tmp_path, accelerator="cpu", max_steps=100, logger=False, enable_progress_bar=False
    )
    finder = Tuner(trainer).lr_find(
        module, datamodule=data, min_lr=1e-3, max_lr=1.0, num_training=60, update_attr=False
    )
    lrs = finder.results["lr"]
    assert len(lrs) == 60
    # Lightning's exponential sweep after k scheduler steps (k > 0): min_lr * (max_lr / min_lr) ** ((k + 1) / 60).
    # One point and one scheduler step per SGD step, although a batch normally carries 10 steps:
    assert lrs == pytest.approx([1e-3] + [1e-3 * 1e3 ** ((k + 1) / 60) for k in range(1, 60)])
    assert trainer.global_step == 0  # the sweep is undone


def test_lr_find_subcommand_saves_the_plot(words_path, tmp_path, run_cli, capsys):
    cli = run_cli("lr_find", *small_run_args(words_path, tmp_path), "--num_training", "80")
    assert "suggested learning rate" in capsys.readouterr().out
    assert (Path(cli.trainer.log_dir) / "lr_find.png").stat().st_size > 0


def test_fit_can_run_the_lr_finder_first(words_path, tmp_path, run_cli):
    cli = run_cli(
        "fit",
        *small_run_args(words_path, tmp_path, max_steps=100),
        "--trainer.callbacks+=makemore.lr_finder.FindLearningRate",
        "--trainer.callbacks.num_training_steps",
        "60",
    )
    assert cli.model.learning_rate != 0.1  # the suggestion replaced the configured rate
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == cli.model.learning_rate
    assert cli.trainer.global_step == 100
    assert (Path(cli.trainer.log_dir) / "lr_find.png").exists()


def test_resume_from_last_checkpoint_matches_an_uninterrupted_run(words_path, tmp_path, run_cli):
    full = run_cli("fit", *small_run_args(words_path, tmp_path / "full", max_steps=170))
    first = run_cli("fit", *small_run_args(words_path, tmp_path / "parts", max_steps=80))
    last = Path(first.trainer.checkpoint_callback.dirpath) / "last.ckpt"
    resumed = run_cli("fit", *small_run_args(words_path, tmp_path / "parts", max_steps=170), "--ckpt_path", str(last))
    assert resumed.trainer.global_step == 170
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b)


def test_same_seed_same_run(words_path, tmp_path, run_cli):
    one = run_cli("fit", *small_run_args(words_path, tmp_path / "one", max_steps=120))
    two = run_cli("fit", *small_run_args(words_path, tmp_path / "two", max_steps=120))
    assert one.trainer.callback_metrics["val_loss"] == two.trainer.callback_metrics["val_loss"]
    for a, b in zip(one.model.parameters(), two.model.parameters()):
        assert torch.equal(a, b)


def test_lr_suggestion_is_the_steepest_fall_against_log_rate():
    from makemore.lr_finder import suggest_learning_rate

    lrs = torch.logspace(-3, 0, 100, dtype=torch.float64)
    # a loss that falls fastest (in log rate) at 0.05 and blows up past 0.5
    losses = 3 - torch.sigmoid(3 * (lrs.log() - math.log(0.05))) + 10 * (lrs > 0.5)
    assert suggest_learning_rate(lrs.tolist(), losses.tolist()) == pytest.approx(0.05, rel=0.1)


def test_lr_suggestion_ignores_wiggles_after_the_fall():
    from makemore.lr_finder import suggest_learning_rate

    lrs = torch.logspace(-3, 0, 200, dtype=torch.float64)
    # the loss falls around 0.02, flattens, and the plateau has a sharp wiggle near 0.3 (noise in a real sweep)
    losses = (
        3.3 - 0.7 * torch.sigmoid(4 * (lrs.log() - math.log(0.02))) + 0.05 * torch.sin(lrs.log() * 40) * (lrs > 0.1)
    )
    assert suggest_learning_rate(lrs.tolist(), losses.tolist()) == pytest.approx(0.02, rel=0.35)
