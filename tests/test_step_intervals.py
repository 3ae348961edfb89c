"""Everything counts SGD steps, although one Lightning batch carries many of them."""

import re
import warnings
from pathlib import Path

import pytest
import torch
from conftest import small_run_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import TensorDataset

from makemore.checkpoint import read_checkpoint
from makemore.cli import main
from makemore.steps import TrainBatches, steps_per_batch_for


def scalar_steps(cli, tag: str) -> list[int]:
    events = EventAccumulator(cli.trainer.log_dir, size_guidance={"scalars": 0})
    events.Reload()
    return [event.step for event in events.Scalars(tag)]


def test_max_steps_per_batch_divides_every_interval():
    assert steps_per_batch_for([], 1000) == 1000
    assert steps_per_batch_for([1000], 1000) == 1000
    assert steps_per_batch_for([2500], 1000) == 625
    assert steps_per_batch_for([5000, 30], 1000) == 10
    assert steps_per_batch_for([20], 1000) == 20
    assert steps_per_batch_for([1009], 1000) == 1  # a prime above the limit: one step per batch


def test_log_every_n_steps_and_validation_count_sgd_steps(words_path, tmp_path, run_cli):
    # batches may carry up to 100 steps; train_loss every 10 steps, validation at the end of each 70-step epoch
    cli = run_cli(
        "fit",
        *small_run_args(
            words_path,
            tmp_path,
            max_steps=150,
            data__max_steps_per_batch="100",
            data__val_every_n_steps="70",
            trainer__log_every_n_steps="10",
        ),
    )
    assert cli.trainer.global_step == 150
    assert cli.trainer.train_dataloader.steps == 10  # the largest size that ends on every interval
    assert scalar_steps(cli, "train_loss") == scalar_steps(cli, "lr") == list(range(10, 151, 10))
    # at each epoch end, and at the last step, which ends every fit with a validation
    assert scalar_steps(cli, "val_loss") == [70, 140, 150]
    assert cli.trainer.log_every_n_steps == 10  # the trainer's settings are the user's, untouched


@pytest.mark.parametrize(
    "option, value, instead",
    [
        ("val_check_interval", "20", "set data.val_every_n_steps"),
        ("val_check_interval", "0.25", "set data.val_every_n_steps"),
        ("limit_train_batches", "45", "set trainer.max_steps or data.val_every_n_steps"),
        ("gradient_clip_val", "1.0", "set model.gradient_clip_val"),
        ("accumulate_grad_batches", "2", "set data.accumulate_grad_batches"),
    ],
)
def test_trainer_options_that_count_batches_or_need_automatic_optimisation_are_refused(
    option, value, instead, words_path, tmp_path
):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *small_run_args(words_path, tmp_path, **{f"trainer__{option}": value})])
    assert f"trainer.{option} {value}" in str(exit_info.value) and instead in str(exit_info.value)
    assert not (tmp_path / "lightning_logs").exists()  # refused before the run folder


def test_checkpoint_every_n_train_steps_counts_sgd_steps(words_path, tmp_path, run_cli):
    cli = run_cli(
        "fit",
        *small_run_args(
            words_path,
            tmp_path,
            max_steps=90,
            data__max_steps_per_batch="100",
            data__val_every_n_steps="45",
            trainer__log_every_n_steps="45",
        ),
        "--trainer.callbacks+=ModelCheckpoint",
        "--trainer.callbacks.every_n_train_steps=15",
        "--trainer.callbacks.save_top_k=-1",
        "--trainer.callbacks.filename={step}",
    )
    assert cli.trainer.current_epoch == 2  # two epochs of 45 steps
    assert cli.trainer.train_dataloader.steps == 15
    names = {path.name for path in Path(cli.trainer.log_dir, "checkpoints").glob("step=*.ckpt")}
    names = {name for name in names if "val_loss" not in name}  # the best checkpoint's is step=S-val_loss=L.ckpt
    assert names == {f"step={n}.ckpt" for n in (15, 30, 45, 60, 75, 90)}
    assert scalar_steps(cli, "val_loss") == [45, 90]


def test_resuming_with_another_batch_size_is_refused(words_path, tmp_path, run_cli):
    cli = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=30))
    last = Path(cli.trainer.log_dir, "checkpoints", "last.ckpt")
    args = small_run_args(words_path, tmp_path, max_steps=60, trainer__log_every_n_steps="15")  # 15-step batches
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--ckpt_path", str(last)])
    assert re.search(
        r"trained with 10 SGD steps per batch, which does not divide this run's trainer.log_every_n_steps \(15 steps\)",
        str(exit_info.value),
    )


def test_resuming_with_another_gradient_accumulation_is_refused(words_path, tmp_path, run_cli):
    cli = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=30))
    last = Path(cli.trainer.log_dir, "checkpoints", "last.ckpt")
    args = small_run_args(words_path, tmp_path, max_steps=60, data__accumulate_grad_batches="2")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--ckpt_path", str(last)])
    assert "data.accumulate_grad_batches" in str(exit_info.value) and "1" in str(exit_info.value)


def test_extending_a_finished_run_continues_exactly_as_an_uninterrupted_one(words_path, tmp_path, run_cli):
    # 25 steps end inside an epoch, on 5-step batches; the 120-step runs would use 10-step batches
    options = {"model__net__dropout": "0.2", "model__net__n_layers": "2"}
    whole = run_cli("fit", *small_run_args(words_path, tmp_path / "whole", max_steps=120, **options))
    short = run_cli("fit", *small_run_args(words_path, tmp_path / "parts", max_steps=25, **options))
    last = Path(short.trainer.log_dir, "checkpoints", "last.ckpt")
    assert read_checkpoint(str(last))["global_step"] == 25  # the final state is saved, whatever the intervals
    longer = run_cli(
        "fit", *small_run_args(words_path, tmp_path / "parts", max_steps=120, **options), "--ckpt_path", str(last)
    )
    assert longer.trainer.global_step == 120
    for a, b in zip(whole.model.parameters(), longer.model.parameters()):
        assert torch.equal(a, b)
    # validated where the uninterrupted run was, and at the last step, as every fit
    assert scalar_steps(longer, "val_loss") == scalar_steps(whole, "val_loss") == [50, 100, 120]
    assert longer.trainer.callback_metrics["val_loss"] == whole.trainer.callback_metrics["val_loss"]


def test_mini_batches_do_not_depend_on_how_steps_are_grouped():
    X, Y = torch.arange(1000).view(-1, 1), torch.arange(1000)
    by_ten = torch.cat(
        [y for _, y in TrainBatches(TensorDataset(X, Y), batch_size=8, steps=10, epoch_steps=60, seed=3, rank=0)]
    )
    by_four = torch.cat(
        [y for _, y in TrainBatches(TensorDataset(X, Y), batch_size=8, steps=4, epoch_steps=60, seed=3, rank=0)]
    )
    assert by_ten.shape == (60, 1, 8) and torch.equal(by_ten, by_four)  # (steps, mini-batches per step, batch_size)


def test_every_fit_ends_with_a_validation_once_and_resumes_without_warnings(words_path, tmp_path, run_cli):
    # a fit shorter than its validation interval (configs/mlp.yaml's 10,000 steps on a run of 5,000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        short = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=30))
        assert scalar_steps(short, "val_loss") == [30]
        best = Path(short.trainer.checkpoint_callback.best_model_path)
        assert read_checkpoint(str(best))["global_step"] == 30
        tested = run_cli("test", *small_run_args(words_path, tmp_path), "--ckpt_path", "best")
        assert Path(tested.trainer.ckpt_path) == best
        # resumed, it validates where the interval says and at its last step, once (100 is both)
        resumed = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=100), "--ckpt_path", "last")
        assert scalar_steps(resumed, "val_loss") == [50, 100]
        # resumed from the end of an epoch (which Lightning restarts), as every finished run ends
        extended = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=150), "--ckpt_path", "last")
        assert scalar_steps(extended, "val_loss") == [150]
    assert not [str(w.message) for w in caught if "could not find the monitored key" in str(w.message)]
