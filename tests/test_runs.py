"""makemore.runs, what scripts/experiments.py and scripts/leaderboard.py share: a run folder read back gives the numbers
its fit logged, and a run that went wrong says what and where."""

import sys
import time

import pytest
from conftest import small_run_args

from makemore.api import scalars
from makemore.checkpoint import named_checkpoint, read_checkpoint
from makemore.runs import (
    RunError,
    Runner,
    config_path,
    datamodule_for,
    evaluate,
    new_version,
    time_to_target,
    versions,
)


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


def early_stop_args(target: float) -> list[str]:
    """Lightning's EarlyStopping as a user adds it: stop once val_loss is at or below `target`, never for patience."""
    return [
        "--trainer.callbacks+=EarlyStopping",
        "--trainer.callbacks.monitor=val_loss",
        f"--trainer.callbacks.stopping_threshold={target}",
        "--trainer.callbacks.patience=1000000",
    ]


def test_a_fit_stopped_at_a_target_stops_at_the_validation_that_reached_it(words_path, tmp_path, run_cli):
    """The speedrun's stop (scripts/speedrun.py): EarlyStopping's stopping_threshold, with many SGD steps per
    Lightning batch, ends the fit at the first validation at or below the target, with the same curve up to there;
    time_to_target reads that validation and its wall time back, and a target never reached is said so with the
    best val."""
    start = time.time()
    full = run_cli("fit", "--config", str(config_path("mlp")), *small_run_args(words_path, tmp_path / "full"))
    curve = scalars(full.trainer.log_dir, "val_loss")
    assert len(curve) == 4  # 200 steps, validation every 50
    # Just above the second validation's val_loss (EarlyStopping stops strictly below its threshold): reached there
    # or at the first.
    target = curve[1][1] + 1e-4
    reached_at = next(step for step, value in curve if value <= target)

    stopped = run_cli(
        "fit",
        "--config",
        str(config_path("mlp")),
        *small_run_args(words_path, tmp_path / "stop"),
        *early_stop_args(target),
    )
    assert scalars(stopped.trainer.log_dir, "val_loss") == [point for point in curve if point[0] <= reached_at]
    assert scalars(stopped.trainer.log_dir, "train_loss")[-1][0] == reached_at  # no SGD step after that validation

    timed = time_to_target(stopped.trainer.log_dir, target, start)
    assert (timed.reached, timed.step, timed.loss) == (True, reached_at, dict(curve)[reached_at])
    assert 0 < timed.seconds == timed.last_seconds < time.time() - start
    assert [point[:2] for point in timed.curve] == [point for point in curve if point[0] <= reached_at]

    below = min(value for _, value in curve) - 0.01
    missed = time_to_target(full.trainer.log_dir, below, start)
    assert (missed.reached, missed.step, missed.loss, missed.seconds) == (False, None, None, None)
    assert missed.best == pytest.approx(min(value for _, value in curve))
    assert 0 < missed.curve[0][2] < missed.last_seconds


def test_time_to_target_of_a_folder_without_val_loss_says_so(tmp_path):
    with pytest.raises(RunError, match=rf"{tmp_path} has no scalar 'val_loss'; it has none"):
        time_to_target(tmp_path, 2.0, time.time())
