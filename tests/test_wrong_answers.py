"""No silent wrong answers: every number makemore prints is the number the user asked for, or one clear error.

Each case runs through the CLI, as a user would; errors are `makemore: error: ...` and a non-zero exit.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_error, small_run_args, write_syllable_words

from makemore.api import scalars
from makemore.checkpoint import read_checkpoint
from makemore.cli import main, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """One 100-step fit on a tiny word list: its root, words and checkpoints."""
    root = tmp_path_factory.mktemp("run")
    words = write_syllable_words(root / "words.txt")
    cli = run_cli(["fit", *small_run_args(words, root, max_steps=100)])
    checkpoints = Path(cli.trainer.log_dir) / "checkpoints"
    return {"root": root, "words": words, "last": checkpoints / "last.ckpt", "cli": cli,
            "best": Path(cli.trainer.checkpoint_callback.best_model_path)}  # fmt: skip


# 1. evaluating needs a checkpoint


@pytest.mark.parametrize("subcommand", ["test", "validate"])
def test_evaluating_without_a_checkpoint_is_refused(trained, subcommand):
    cli_error(
        [subcommand, *small_run_args(trained["words"], trained["root"])], f"{subcommand} evaluates a trained model"
    )


def test_untrained_weights_are_evaluated_only_when_asked(trained, tmp_path):
    cli = run_cli(["test", *small_run_args(trained["words"], tmp_path), "--ckpt_path", "untrained"])
    assert cli.trainer.callback_metrics["test_loss"] > 2.5  # about ln(15) = 2.7: untrained


# 2. resuming continues the same run; fine-tuning is explicit


@pytest.mark.parametrize(
    "override, named",
    [
        (["--model.net.n_hidden", "300"], "model.net.init_args.n_hidden (checkpoint 200, now 300)"),
        (["--model.learning_rate", "0.01"], "model.learning_rate (checkpoint 0.1, now 0.01)"),
        (["--model.optimizer", "torch.optim.Adam"], "model.optimizer.class_path"),
        (["--data.batch_size", "16"], "data.batch_size (checkpoint 32, now 16)"),
    ],
)
def test_resuming_with_other_settings_is_refused_naming_them(trained, tmp_path, override, named):
    args = small_run_args(trained["words"], tmp_path, max_steps=200)
    message = cli_error(["fit", *args, "--ckpt_path", str(trained["last"]), *override], "")
    assert "resuming continues the same run" in message and named in message and "--weights_from" in message


def test_weights_from_starts_a_new_run_from_a_checkpoints_weights(trained, tmp_path):
    args = small_run_args(trained["words"], tmp_path, max_steps=50)
    cli = run_cli(["fit", *args, "--weights_from", str(trained["last"]), "--model.learning_rate", "0.01"])
    assert cli.trainer.global_step == 50  # a new run: its own step count and settings
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == 0.01
    start = cli.trainer.callback_metrics["val_loss"]
    fresh = run_cli(
        ["fit", *small_run_args(trained["words"], tmp_path / "fresh", max_steps=50), "--model.learning_rate", "0.01"]
    )
    assert start < fresh.trainer.callback_metrics["val_loss"]  # it began from the trained weights
    cli_error(["fit", *args, "--weights_from", str(trained["last"]), "--model.net.n_hidden", "30"], ".*do not fit")


@pytest.mark.parametrize("subcommand_args", [["--ckpt_path"], ["--weights_from"]])
def test_weights_of_another_block_size_are_refused_with_one_message(trained, tmp_path, subcommand_args):
    args = small_run_args(trained["words"], tmp_path, max_steps=200, data__block_size="4")
    cli_error(
        ["fit", *args, *subcommand_args, str(trained["last"])],
        re.escape(f"{trained['last']}: the checkpoint was trained with data.block_size 3, but this run has 4"),
    )


# 3. `last` and `best` look only in the root's own lightning_logs and say what they picked


def test_last_and_best_pick_the_newest_run_of_the_root(trained, tmp_path, capsys):
    root = tmp_path / "root"
    first = run_cli(["fit", *small_run_args(trained["words"], root, max_steps=50)])
    # an unrelated, more recent experiment in a folder below the root
    main(["fit", *small_run_args(trained["words"], root / "other_experiment", max_steps=50)])
    capsys.readouterr()
    cli = run_cli(["validate", *small_run_args(trained["words"], root), "--ckpt_path", "last"])
    expected = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert Path(cli.trainer.ckpt_path) == expected
    assert f"--ckpt_path last: {expected}" in capsys.readouterr().err
    best = run_cli(["test", *small_run_args(trained["words"], root), "--ckpt_path", "best"])
    assert Path(best.trainer.ckpt_path) == Path(first.trainer.checkpoint_callback.best_model_path)


# 4. divergence stops the run


@pytest.mark.parametrize("rate", [".nan", "1e9"])
def test_a_diverging_run_stops_with_an_error_and_keeps_no_checkpoint(trained, tmp_path, rate):
    args = small_run_args(trained["words"], tmp_path, max_steps=200, model__learning_rate=rate)
    cli_error(["fit", *args], r"training diverged at SGD step \d+: loss ")
    assert not list(tmp_path.rglob("*.ckpt"))


# 5. a checkpoint remembers its split


@pytest.mark.parametrize("other", [["--data.seed", "7"], ["--data.train_fraction", "0.7"]])
def test_evaluating_on_another_split_is_refused_unless_allowed(trained, tmp_path, other):
    args = ["test", *small_run_args(trained["words"], tmp_path), "--ckpt_path", str(trained["best"]), *other]
    cli_error(args, ".*trained on another split of the words")
    assert run_cli([*args, "--allow_other_split", "true"]).trainer.callback_metrics["test_loss_other_split"] > 0


def test_scores_on_another_split_are_logged_apart_from_the_runs_own(trained, tmp_path):
    run = Path(trained["best"]).parents[1]
    own = scalars(run, "val_loss")
    args = small_run_args(trained["words"], trained["root"], data__seed="7")
    cli = run_cli(["validate", *args, "--ckpt_path", str(trained["best"]), "--allow_other_split", "true"])
    assert "val_loss" not in cli.trainer.callback_metrics
    assert scalars(run, "val_loss") == own  # the run's own series is untouched
    [(step, value)] = scalars(run, "val_loss_other_split")
    assert step == own[-1][0] and value == pytest.approx(float(cli.trainer.callback_metrics["val_loss_other_split"]))


# 6. the final state of every fit is saved


def test_last_checkpoint_holds_the_final_step_whatever_the_intervals(trained, tmp_path):
    args = small_run_args(trained["words"], tmp_path, max_steps=100, data__val_every_n_steps="30")
    cli = run_cli(["fit", *args])
    last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert read_checkpoint(str(last))["global_step"] == 100


# 8. concurrent fits


def test_fits_started_together_get_their_own_run_folders(trained, tmp_path):
    args = small_run_args(trained["words"], tmp_path, max_steps=20)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    runs = [subprocess.Popen([sys.executable, "-m", "makemore", "fit", *args], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]  # fmt: skip
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    folders = sorted((tmp_path / "lightning_logs").iterdir())
    assert [f.name for f in folders] == ["version_0", "version_1", "version_2"]
    for folder in folders:
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1 and (folder / "config.yaml").is_file()


# 9 and 10. one-line errors


def test_a_root_that_cannot_hold_runs_is_a_clear_error(trained, tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    cli_error(
        ["fit", *small_run_args(trained["words"], not_a_folder)],
        re.escape(f"{not_a_folder}/lightning_logs: cannot create"),
    )


def test_sample_refuses_bad_counts_and_missing_devices(trained):
    cli_error(
        ["sample", "--ckpt_path", str(trained["last"]), "--num_samples", "-5"], "--num_samples must be at least 1"
    )
    if not torch.cuda.is_available():
        cli_error(
            ["sample", "--ckpt_path", str(trained["last"]), "--device", "cuda"], "--device cuda: torch sees no cuda"
        )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_pipe_or_device_as_the_word_list_is_refused(tmp_path):
    fifo = tmp_path / "words.fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        if path.exists():
            cli_error(["fit", *small_run_args(path, tmp_path)], re.escape(f"{path}: not a regular file"))
