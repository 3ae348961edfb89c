"""What a new user types, sees and waits for: help, typos, defaults, the end of a fit, output, TensorBoard."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import small_run_args
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from makemore.cli import SUBCOMMANDS, main, run_cli
from makemore.lr_finder import smooth

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def makemore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "makemore", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_help_lists_every_subcommand_and_each_works(capsys):
    main(["--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: makemore {fit,validate,test,lr_find,sample,search}") and "predict" not in text
    for name in ["fit", "validate", "test", "lr_find", "sample", "search"]:
        assert f"  {name} " in text
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
    assert set(SUBCOMMANDS) == {"fit", "validate", "test", "lr_find", "sample", "search"}


def test_help_and_sample_do_not_import_lightning(tmp_path, words_path):
    cli = run_cli(["fit", *small_run_args(words_path, tmp_path, max_steps=20)])
    last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    check = "import sys; print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'torch'}))"
    out = python(f"from makemore.cli import main; main(['--help']); {check}", tmp_path)
    assert out.splitlines()[-1] == "[]"  # --help answers at once: neither Lightning nor torch
    check = check.replace("'torch'", "'pytorch_lightning'")
    out = python(f"from makemore.cli import main; main(['sample', '--ckpt_path', {str(last)!r}]); {check}", tmp_path)
    assert out.splitlines()[-1] == "[]" and len(out.splitlines()) == 21  # 20 names


@pytest.mark.parametrize(
    "args, expected",
    [
        (["fti"], "makemore: error: unknown subcommand 'fti' (did you mean fit?); choose from fit, validate, test"),
        (["fit", "--model.n_hiden", "300"], "(did you mean --model.net.n_hidden?)"),
        (["sample", "--num_sample", "3"], "makemore: error: sample: "),
    ],
)
def test_mistakes_are_one_line_with_a_suggestion(tmp_path, args, expected):
    done = makemore(*args, cwd=tmp_path)
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr
    assert done.stderr.startswith("makemore: error: ")


def test_fit_without_a_config_is_the_lecture(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    lecture = yaml.safe_load((ROOT / "configs" / "mlp.yaml").read_text())

    def same(expected: dict, actual: dict, where: str = "") -> None:
        for key, value in expected.items():
            if isinstance(value, dict):
                same(value, actual[key], f"{where}{key}.")
            elif key != "class_path":  # jsonargparse prints a class's shortest import path
                assert actual[key] == value, f"{where}{key}"

    same(lecture, printed)


def test_the_classes_defaults_are_the_lectures_model_and_data():
    """From Python (makemore.api) the classes' defaults are configs/mlp.yaml's model, optimizer and data."""
    import inspect

    import torch

    from makemore import CharDataModule, MakemoreModule
    from makemore.models import MLP

    lecture = yaml.safe_load((ROOT / "configs" / "mlp.yaml").read_text())
    data = CharDataModule()
    for key, value in lecture["data"].items():
        if key != "val_every_n_steps":  # the lecture validates every 10,000 steps; a class default is one pass
            assert data.hparams[key] == value, key
    module = inspect.signature(MakemoreModule).parameters
    assert module["net"].default is MLP and module["optimizer"].default is torch.optim.SGD
    assert module["learning_rate"].default == lecture["model"]["learning_rate"]
    net = inspect.signature(MLP).parameters
    assert {key: net[key].default for key in lecture["model"]["net"]["init_args"]} == lecture["model"]["net"][
        "init_args"
    ]


def test_a_fit_says_where_its_run_is_and_prints_no_noise(tmp_path, words_path):
    args = small_run_args(words_path, tmp_path, max_steps=60, trainer__enable_progress_bar="true")
    done = makemore("fit", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    for noise in ["Tip:", "LeafSpec", "weights_only", "will override existing callbacks", "dirpath has changed"]:
        assert noise not in output, noise
    summary = done.stdout[done.stdout.index("makemore: run folder") :].splitlines()
    assert summary[0] == "makemore: run folder lightning_logs/version_0"
    assert summary[1].startswith("  best checkpoint (val_loss ") and "checkpoints/step=" in summary[1]
    assert summary[2] == "  last checkpoint (step 60): lightning_logs/version_0/checkpoints/last.ckpt"
    assert summary[3] == "  watch it: tensorboard --logdir lightning_logs"
    # the bar in a log file: SGD steps of the whole run, a clock that runs on, no negative rates
    lines = output.replace("\r", "\n").splitlines()
    bars = [line for line in lines if line.startswith("SGD steps")]
    assert bars and all("/60 [" in line for line in bars), bars
    assert not any("-" in line.split("[")[1].split("]")[0].split(",")[1] for line in bars if "it/s" in line)


def test_tensorboard_opens_on_the_curves_and_compares_runs_by_their_losses(tmp_path, words_path, run_cli):
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=100))
    best = fit.trainer.checkpoint_callback.best_model_path
    test = run_cli("test", *small_run_args(words_path, tmp_path), "--ckpt_path", best)
    assert test.trainer.log_dir == fit.trainer.log_dir  # the test's scores go to the run it evaluates
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    events = EventAccumulator(fit.trainer.log_dir, size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "epoch" not in tags and "hp_metric" not in tags
    assert {"train_loss", "val_loss", "lr", "test_loss"} <= set(tags)
    # at the step the checkpoint was trained to, on the same chart as the run's curves
    assert [e.step for e in events.Scalars("test_loss")] == [int(Path(best).name.split("step=")[1].split("-")[0])]
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["val_loss", "test_loss"]
    names = {h.name for h in experiment.hparam_infos}
    assert {"learning_rate", "net.n_hidden", "block_size", "batch_size"} <= names
    assert not names & {"_instantiator", "vocab", "path"}
    # train and val loss on one chart, in the Custom Scalars tab
    from tensorboard.plugins.custom_scalar import layout_pb2

    config = events.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0]
    layout = layout_pb2.Layout.FromString(config)
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts["loss: train and val (nats per character)"] == ["train_loss", "val_loss"], charts
    # and in the default view: one tag `loss` in a sub-run per split, so one chart draws them all
    for split in ("train", "val", "test"):
        sub = EventAccumulator(str(Path(fit.trainer.log_dir) / split), size_guidance={"scalars": 0})
        sub.Reload()
        assert [e.value for e in sub.Scalars("loss")] == pytest.approx(
            [e.value for e in events.Scalars(f"{split}_loss")]
        )


def test_the_lr_curve_starts_where_the_loss_starts():
    raw = [3.3, 3.2, 3.0, 2.5, 2.4]
    smoothed = smooth(raw)
    assert smoothed[0] == pytest.approx(3.3)  # bias corrected: no drop to half the first loss
    assert smooth([2.0] * 50) == pytest.approx([2.0] * 50)
    assert smoothed == sorted(smoothed, reverse=True)


def help_sections(text: str) -> list[str]:
    """The section headings of an argparse help text: its lines that start a section (no indent, ending in `:`)."""
    return [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]


def test_fit_help_shows_makemores_options_first_and_lightnings_trainer_in_short(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    short = capsys.readouterr().out
    assert short.splitlines()[0] == "usage: makemore fit [-h [full]] [-c CONFIG] [--OPTION VALUE ...]"
    headings = help_sections(short)
    assert headings[:2] == ["options:", "Resuming a run:"]
    trainer = next(i for i, heading in enumerate(headings) if heading.startswith("Lightning's Trainer"))
    model = next(i for i, heading in enumerate(headings) if heading.startswith("The model: "))
    assert model < trainer and short.index("--data.path ") < short.index("--trainer.max_steps")
    assert "--trainer.gradient_clip_algorithm" not in short and "--help full" in short
    # makemore's checkpoint names, not Lightning's (hpc, its model registry); evaluation's options only on validate/test
    ckpt_path = " ".join(short[short.index("--ckpt_path CKPT_PATH") :].split())
    assert "last or best" in ckpt_path and "hpc" not in short and "registry" not in short
    assert "--allow_other_split" not in short and "--weights_only" not in short
    assert "{LRScheduler,ReduceLROnPlateau}" not in short and "subclass of LRScheduler" in " ".join(short.split())
    with pytest.raises(SystemExit):
        main(["fit", "--help", "full"])
    full = capsys.readouterr().out
    assert "--trainer.gradient_clip_algorithm" in full and help_sections(full)[:2] == headings[:2]
    assert full.index("--data.path ") < full.index("--trainer.accelerator ") and len(full) > len(short)
    with pytest.raises(SystemExit):
        main(["test", "--help"])
    test = " ".join(capsys.readouterr().out.split())
    assert "--allow_other_split" in test and "or untrained (freshly initialised weights)" in test


def test_lr_find_says_its_suggestion_without_lightnings_checkpoint_talk(tmp_path, words_path):
    done = makemore(
        "lr_find", *small_run_args(words_path, tmp_path), "--num_training", "30", "--trainer.enable_progress_bar", "false",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    for noise in ["weights_only", "Restoring states", "Restored all states", ".lr_find", "beyond", "stopped"]:
        assert noise not in output, noise
    assert "suggested learning rate: " in done.stdout
    hparams = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text())
    assert hparams["learning_rate"] == 0.1 and hparams["block_size"] == 3  # the run's settings, model's and data's


def test_test_prints_its_scores_under_the_checkpoint_and_the_summary_lists_the_network(
    tmp_path, words_path, run_cli, capsys, caplog
):
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=50, trainer__enable_model_summary="true"))
    summary = caplog.text  # Lightning logs it
    assert "| net " in summary and "MeanMetric" not in summary
    flops = next(line for line in summary.splitlines() if line.endswith("Total Flops"))
    assert flops.split()[0] != "0"  # one forward pass of one context
    last = Path(fit.trainer.log_dir) / "checkpoints" / "last.ckpt"
    run_cli("test", *small_run_args(words_path, tmp_path), "--ckpt_path", str(last))
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(f"makemore: test of {last} (step 50)")
    assert [line.split()[0] for line in lines[start + 1 :]] == ["test_loss", "test_bpc", "test_perplexity"]
