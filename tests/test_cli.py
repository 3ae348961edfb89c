"""The command line end to end: every config builds, fit -> test -> sample, help text, console script."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import small_run_args

from makemore.formats import default_path
from makemore.formats.text import read_text

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml")) + sorted((CONFIG_DIR / "speedrun").glob("names*.yaml"))
TEXT_CONFIGS = sorted((CONFIG_DIR / "shakespeare").glob("*.yaml")) + sorted(
    (CONFIG_DIR / "speedrun").glob("shakespeare*.yaml")
)


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(CONFIG_DIR).with_suffix("")) for c in CONFIGS])
def test_every_config_parses_and_builds(config, words_path, tmp_path, run_cli):
    # a distilled config's teacher was trained on names.txt, not on this word list: without it here (test_ladder
    # fits such a config with a teacher of its own)
    teacherless = ["--model.teacher", "null"] if "teacher" in yaml.safe_load(config.read_text())["model"] else []
    cli = run_cli(
        "fit",
        "--config",
        str(config),
        *small_run_args(words_path, tmp_path),
        "--trainer.fast_dev_run",
        "true",
        *teacherless,
    )
    assert cli.trainer.global_step == 1
    assert cli.model.hparams.block_size == cli.datamodule.hparams.block_size  # linked, not configured twice


@pytest.mark.parametrize(
    "config", TEXT_CONFIGS, ids=[str(c.relative_to(CONFIG_DIR).with_suffix("")) for c in TEXT_CONFIGS]
)
def test_every_text_config_parses_and_builds(config, tmp_path, run_cli):
    text = tmp_path / "plays.txt"
    text.write_text(read_text(default_path("text"))[:4000], encoding="utf-8")
    cli = run_cli("fit", "--config", str(config), *small_run_args(text, tmp_path), "--trainer.fast_dev_run", "true")
    assert cli.trainer.global_step == 1 and cli.datamodule.hparams.format == "text"
    assert cli.model.hparams.block_size == cli.datamodule.hparams.block_size


def test_fit_test_sample_round_trip(words_path, tmp_path, run_cli, capsys):
    fit = run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=200))
    best = fit.trainer.checkpoint_callback.best_model_path
    assert Path(best).exists() and "step=" in Path(best).name
    test = run_cli("test", *small_run_args(words_path, tmp_path), "--ckpt_path", best)
    assert 0 < test.trainer.callback_metrics["test_loss"] < 3
    validate = run_cli("validate", *small_run_args(words_path, tmp_path), "--ckpt_path", best)
    assert validate.trainer.callback_metrics["val_loss"] == pytest.approx(
        fit.trainer.checkpoint_callback.best_model_score.item()
    )
    capsys.readouterr()

    run_cli("sample", "--ckpt_path", best, "--num_samples", "8", "--seed", "1")
    names = capsys.readouterr().out.splitlines()
    assert len(names) == 8
    assert all(set(name) <= set(fit.datamodule.vocab[1:]) for name in names)
    run_cli("sample", "--ckpt_path", best, "--num_samples", "8", "--seed", "1")
    assert capsys.readouterr().out.splitlines() == names  # seeded
    run_cli("sample", "--ckpt_path", best, "--num_samples", "8", "--seed", "2")
    assert capsys.readouterr().out.splitlines() != names


def test_help_documents_every_option(run_cli, capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", "--help")
    text = capsys.readouterr().out
    for phrase in [
        "context length",
        "the network: an nn.Module class",
        "examples per SGD step",
        "the most SGD steps one Lightning batch carries",
    ]:
        assert phrase in " ".join(text.split())
    with pytest.raises(SystemExit):
        run_cli("fit", "--model.net.help", "makemore.models.MLP")  # the network's own options
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())  # jsonargparse prints a class's help on stderr
    assert "embedding dimensions per character" in text and "--model.net.n_hidden" in text
    with pytest.raises(SystemExit):
        run_cli("sample", "--help")
    assert "seed of the sampling generator" in " ".join(capsys.readouterr().out.split())


def test_console_script_and_module_entry_point(tmp_path):
    script = Path(sys.executable).with_name("makemore")
    for command in ([str(script)], [sys.executable, "-m", "makemore"]):
        result = subprocess.run([*command, "sample", "--help"], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0 and "--ckpt_path" in result.stdout
