"""makemore.runs, what scripts/experiments.py and scripts/leaderboard.py share: a run folder read back gives the numbers
its fit logged, and a run that went wrong says what and where."""

import sys

import pytest
from conftest import small_run_args

from makemore.api import scalars
from makemore.checkpoint import named_checkpoint, read_checkpoint
from makemore.runs import RunError, Runner, config_path, datamodule_for, evaluate, new_version, versions


def test_a_run_folder_read_back_gives_the_numbers_its_fit_logged(words_path, tmp_path, run_cli, monkeypatch):
    """The checkpoint's own data options rebuild its split, a relative data.path read from where the run started; the
    best checkpoint's val loss recomputed equals the val_loss the fit logged at its step."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    fit = run_cli("fit", "--config", str(config_path("mlp")), *small_run_args(words_path.name, root, max_steps=100))
    best = named_checkpoint("best", root)
    monkeypatch.chdir(tmp_path.parent)  # a script reads the run from elsewhere

    checkpoint = read_checkpoint(str(best))
    assert checkpoint["datamodule_hyper_parameters"]["path"] == "words.txt"
    data = datamodule_for(checkpoint, cwd=tmp_path)
    assert data.split_fingerprint == fit.datamodule.split_fingerprint
    result = evaluate(best, cwd=tmp_path)
    logged = dict(scalars(fit.trainer.log_dir, "val_loss"))
    assert result["best_step"] in logged
    assert result["val_recomputed"] == pytest.approx(logged[result["best_step"]], rel=1e-4)
    assert result["train_examples"] == len(fit.datamodule.examples["train"])
    assert (result["n_embd"], result["n_hidden"]) == (10, 200)  # configs/mlp.yaml's


def test_a_run_that_went_wrong_says_what_and_where(tmp_path):
    with pytest.raises(RunError, match=r"no config 'mlp_typo' \(looked for .*mlp_typo.yaml\)"):
        config_path("mlp_typo")
    with pytest.raises(RunError, match="expected one new version folder under .*lightning_logs, found"):
        new_version(tmp_path, versions(tmp_path))
    runner = Runner(tmp_path)
    log = tmp_path / "fit.log"
    with pytest.raises(RunError, match=rf"the command failed \(exit [1-9]\d*\); the end of {log}:\n(.|\n)*max_stesp"):
        runner.makemore(["fit", "--trainer.max_stesp", "1"], log, "typo")
    assert runner.code_used["typo"]["makemore_sha256"]  # what code the command ran, recorded before it ran
    assert log.read_text().startswith(f"$ {sys.executable} -m makemore fit")
