"""Bad values are one line naming the option, partial evaluations say so, checkpoints choose no imports."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli_error, small_run_args

from makemore.api import scalars
from makemore.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model.net.n_hidden", "0"], r"model.net.n_hidden: not of type PositiveInt: 0 does not conform"),
        (["--model.net.dropout", "1"], r"model.net.dropout: not of type DropoutRate: 1 does not conform"),
        (
            ["--model.net", "makemore.models.Transformer", "--model.net.n_layer", "0"],
            "model.net.n_layer: not of type PositiveInt",
        ),
        (["--model.learning_rate", "-1"], r"model.learning_rate=-1.0: Invalid learning rate: -1.0"),
        (["--model.optimizer.momentum", "-1"], r"model.optimizer.init_args.momentum=-1.0: Invalid momentum value"),
        (
            ["--model.net", "makemore.models.Transformer", "--model.net.n_head", "3"],
            r"model.net.init_args.n_head=3: Transformer: n_embd \(64\) must be a multiple of n_head \(3\)",
        ),
        (
            ["--model.net.n_hidden", "1000000000"],
            r"model.net \(makemore.models.mlp.MLP\): not enough memory to build it \([\d,.]+ GiB asked for\)",
        ),
        (
            [
                "--model.optimizer",
                "torch.optim.AdamW",
                "--model.optimizer.betas",
                "[0.9, 1.5]",
            ],
            r"model.optimizer.init_args.betas=\(0.9, 1.5\): Invalid beta parameter at index 1: 1.5",
        ),
    ],
)
def test_a_value_the_network_or_optimizer_cannot_take_is_one_line_and_leaves_no_run_folder(
    args, message, words_path, tmp_path
):
    cli_error(["fit", *small_run_args(words_path, tmp_path), *args], message)
    assert not list(tmp_path.glob("lightning_logs/version_*")), "a failed start leaves no run folder"


def test_a_schedule_beyond_max_steps_is_said_once(words_path, tmp_path, caplog, run_cli):
    args = small_run_args(words_path, tmp_path, max_steps=50)
    schedule = ["--model.lr_scheduler", "torch.optim.lr_scheduler.MultiStepLR"]
    run_cli("fit", *args, *schedule, "--model.lr_scheduler.milestones", "[20, 500]")
    said = [r.getMessage() for r in caplog.records if "beyond trainer.max_steps" in r.getMessage()]
    assert said == [
        "makemore: model.lr_scheduler (MultiStepLR): milestones [500] beyond trainer.max_steps (50): the fit ends"
        " before the schedule does"
    ]


@pytest.fixture
def trained(words_path, tmp_path, run_cli):
    cli = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=50))
    return Path(cli.trainer.log_dir, "checkpoints", "last.ckpt")


def test_a_partial_test_is_named_partial_in_its_output_and_in_tensorboard(trained, words_path, tmp_path, run_cli):
    args = [*small_run_args(words_path, tmp_path), "--ckpt_path", str(trained), "--data.eval_batch_size", "20"]
    whole = run_cli("test", *args)
    assert "test_loss" in whole.trainer.callback_metrics
    partial = run_cli("test", *args, "--trainer.limit_test_batches", "0.5")
    metrics = partial.trainer.callback_metrics
    assert "test_loss" not in metrics and "test_loss_partial" in metrics
    assert metrics["test_loss_partial"] != whole.trainer.callback_metrics["test_loss"]
    run = trained.parent.parent
    assert [step for step, _ in scalars(run, "test_loss_partial")] == [50]
    assert len(scalars(run, "test_loss")) == 1  # the whole split's, once


@pytest.mark.parametrize("subcommand, limit", [("test", "limit_test_batches"), ("validate", "limit_val_batches")])
def test_evaluating_nothing_is_refused(subcommand, limit, trained, words_path, tmp_path):
    args = [subcommand, *small_run_args(words_path, tmp_path), "--ckpt_path", str(trained), f"--trainer.{limit}", "0"]
    cli_error(args, f"{subcommand} would evaluate nothing: trainer.{limit} is 0")


def forged(trained: Path, tmp_path: Path, where: str = "net") -> tuple[Path, Path]:
    """A checkpoint that names something of a module that leaves a marker file when it is imported: its network's
    class (`where` "net"), or a callable among its schedule's arguments ("lr_lambda": LambdaLR's, which jsonargparse
    imports by name when Lightning parses a resumed checkpoint's hyperparameters)."""
    module = tmp_path / "forged_net.py"
    marker = tmp_path / "imported"
    module.write_text(
        f"open({str(marker)!r}, 'w').close()\nimport torch\nclass Net(torch.nn.Module):\n    pass\n"
        "def lr_lambda(step):\n    return 1.0\n"
    )
    checkpoint = torch.load(trained, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    if where == "net":
        hparams["net"]["class_path"] = "forged_net.Net"
    else:
        hparams["lr_scheduler"] = {
            "class_path": "torch.optim.lr_scheduler.LambdaLR",
            "init_args": {"lr_lambda": "forged_net.lr_lambda", "last_epoch": -1},
        }
    path = tmp_path / "forged.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def makemore_process(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`python -m makemore ARGS` in the checkout, with tmp_path (the forged module's folder) on Python's path."""
    env = {**_env(), "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "makemore", *args], cwd=ROOT, capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "command, name",
    [
        (["test", "--ckpt_path", "{ckpt}"], "forged_net.Net"),
        (["fit", "--ckpt_path", "{ckpt}"], "forged_net.Net"),
        (["fit", "--weights_from", "{ckpt}"], "forged_net.Net"),
        (["sample", "--ckpt_path", "{ckpt}"], "forged_net.Net"),
        (["fit", "--ckpt_path", "{lambda_ckpt}"], "forged_net.lr_lambda"),
        (["validate", "--ckpt_path", "{lambda_ckpt}"], "forged_net.lr_lambda"),
    ],
)
def test_a_checkpoint_cannot_make_makemore_import_a_module(command, name, trained, words_path, tmp_path):
    path, marker = forged(trained, tmp_path, "net" if name.endswith("Net") else "lr_lambda")
    args = [part.format(ckpt=path, lambda_ckpt=path) for part in command]
    if args[0] != "sample":
        args += small_run_args(words_path, tmp_path / "runs")
    done = makemore_process(args, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"makemore: error: {path}: it names {name} to import, and importing it would run its module's code;"
        " makemore imports only its own and torch's names from a checkpoint: if you trust it, name it with"
        f" --allow_class {name} (or --model.net)"
    )
    assert not marker.exists(), "the forged module was imported"
    if name.endswith("Net"):  # named by the user, it is imported (and then found not to be a makemore network)
        makemore_process([*args, "--allow_class", name], tmp_path)
        assert marker.exists()


def test_a_teacher_checkpoint_passes_the_same_guard(trained, words_path, tmp_path):
    path, marker = forged(trained, tmp_path)
    args = ["fit", *small_run_args(words_path, tmp_path / "runs", max_steps=20), "--model.teacher", f"[{path}]"]
    done = makemore_process([*args, "--allow_class", "forged_net.Net"], tmp_path)  # --allow_class is for --ckpt_path
    assert done.returncode == 1 and not marker.exists(), done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"makemore: error: model.teacher: {path}: it names forged_net.Net to import, and importing it would run its"
        " module's code; makemore imports only its own and torch's names from a checkpoint: if you trust it, name its"
        " network in this fit's model.net"
    )


@pytest.mark.parametrize("name", ["hpc", "registry", "registry:makemore/mlp", "REGISTRY:x:v1", "s3://bucket/x.ckpt"])
def test_names_lightning_reads_its_own_way_are_refused(name, words_path, tmp_path):
    for subcommand in ("fit", "test"):
        message = cli_error(
            [subcommand, *small_run_args(words_path, tmp_path), "--ckpt_path", name],
            f"--ckpt_path {name}: makemore reads checkpoint files only",
        )
        assert "./NAME" in message
    assert not list(tmp_path.glob("lightning_logs/version_*"))


def _env() -> dict:
    import os

    return dict(os.environ)


def test_an_unwritable_run_folder_still_evaluates_and_says_it_logs_nothing(
    trained, words_path, tmp_path, run_cli, monkeypatch, capsys
):
    import makemore.lightning_cli

    run = trained.parent.parent
    before = sorted(p.name for p in run.iterdir())
    access = makemore.lightning_cli.os.access  # as a user without write permission there (the tests run as root)
    monkeypatch.setattr(
        makemore.lightning_cli.os, "access", lambda path, mode, **kw: Path(path) != run and access(path, mode, **kw)
    )
    cli = run_cli("test", *small_run_args(words_path, tmp_path), "--ckpt_path", str(trained))
    assert "test_loss" in cli.trainer.callback_metrics
    err = capsys.readouterr().err
    assert f"makemore: {run} is read-only: the scores are printed, not logged" in err
    assert sorted(p.name for p in run.iterdir()) == before
    assert read_checkpoint(str(trained))["global_step"] == 50


def test_a_full_disk_is_one_line_for_fit_and_test_prints_the_scores(words_path, small_disk, run_cli, capsys):
    disk = small_disk("1m")
    args = small_run_args(words_path, disk, max_steps=50)
    run_cli("fit", *args)
    run = disk / "lightning_logs" / "version_0"
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    with open(disk / "filler", "wb") as filler:  # the disk is full
        filler.write(bytes(shutil.disk_usage(disk).free))
    assert shutil.disk_usage(disk).free == 0
    cli_error(["fit", *args], re.escape(f"{disk / 'lightning_logs'}: cannot write a run there: no space left"))
    capsys.readouterr()
    cli = run_cli("test", *args, "--ckpt_path", "last")
    assert "test_loss" in cli.trainer.callback_metrics
    assert (
        f"makemore: {run} has no space left on its device: the scores are printed, not logged"
        in capsys.readouterr().err
    )
    assert sorted((disk / "lightning_logs").iterdir()) == [run]  # no run folder left by the refused fit
    assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_the_tensorboard_command_is_quoted(words_path, tmp_path, run_cli, capsys):
    root = tmp_path / "my runs"
    run_cli("fit", *small_run_args(words_path, root, max_steps=20))
    out = capsys.readouterr().out
    assert f"watch it: tensorboard --logdir {shlex.quote(str(root / 'lightning_logs'))}" in out


@pytest.mark.parametrize("option", ["--optimizer", "--lr_scheduler"])
def test_lightnings_own_optimizer_options_are_not_offered(option, words_path, tmp_path):
    """They would train with another optimizer than the one hparams.yaml and TensorBoard record: model.optimizer and
    model.lr_scheduler are the one way to set them."""
    cli_error(
        ["fit", *small_run_args(words_path, tmp_path), option, "torch.optim.Adam"],
        f"unrecognized arguments: {option} torch.optim.Adam \\(did you mean --model.{option[2:]}\\?\\)",
    )
    assert not list(tmp_path.glob("lightning_logs/version_*"))


def test_the_summary_offers_tensorboard_only_where_it_has_something_to_show(words_path, tmp_path, run_cli, capsys):
    args = ["--trainer.logger", "CSVLogger", "--trainer.logger.save_dir", str(tmp_path)]
    run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=20), *args)
    out = capsys.readouterr().out
    assert "makemore: run folder " in out and "tensorboard" not in out


def test_a_vocabulary_mismatch_names_the_file_the_checkpoint_was_trained_on(trained, words_path, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("xyz\nzyx\nqqq\n" * 20)
    cli_error(
        ["test", *small_run_args(other, tmp_path / "runs"), "--ckpt_path", str(trained)],
        f".*trained on the vocabulary .*; use the data file it was trained on \\({words_path}\\)$",
    )


def test_best_and_last_are_said_alike_by_every_subcommand(trained, words_path, tmp_path, run_cli, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sample looks in ./lightning_logs
    run_cli("sample", "--ckpt_path", "last", "--num_samples", "2")
    run_cli("test", *small_run_args(words_path, tmp_path), "--ckpt_path", "last")
    said = [line.rsplit(" ", 1) for line in capsys.readouterr().err.splitlines() if "--ckpt_path" in line]
    assert [(words, Path(path).resolve()) for words, path in said] == [("makemore: --ckpt_path last:", trained)] * 2


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--trainer.precision", "16-mixed", "--trainer.accelerator", "cpu"],
            "trainer.precision 16-mixed: float16 needs a GPU, and this fit runs on the CPU; use bf16-mixed",
        ),
        (
            ["--trainer.sync_batchnorm", "true", "--model.net.batch_norm", "true"],
            "trainer.sync_batchnorm true: this fit runs in one process, with nothing to synchronise",
        ),
    ],
)
def test_a_setting_the_device_cannot_honour_is_one_line_before_any_work(args, message, words_path, tmp_path):
    """Lightning would train 16-mixed on a CPU in bfloat16 (the run recording 16-mixed), and sync nothing."""
    cli_error(["fit", *small_run_args(words_path, tmp_path), *args], re.escape(message))
    assert not list(tmp_path.glob("lightning_logs/version_*"))


def test_which_device_and_how_many_processes_a_fit_would_use():
    from makemore.lightning_features import process_count, target_device

    assert target_device("cpu") == "cpu" and target_device("gpu") == "cuda" and target_device("mps") == "mps"
    assert (
        process_count(1, 1, "cuda") == 1 and process_count([0, 1], 2, "cuda") == 4 and process_count("2", 1, "cpu") == 2
    )
    assert process_count("auto", 1, "cpu") == 1 and process_count("auto", 3, "mps") == 3
