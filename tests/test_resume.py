"""Nothing lost: a hard-killed run resumes exactly, checkpoints are written atomically, DDP on two CPU processes."""

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import small_run_args

from makemore.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def makemore(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "makemore", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Poll until the running `process` has written `path` (or ended, or the timeout passed)."""
    deadline = time.time() + timeout
    while not path.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)


def test_sigkill_then_resume_matches_an_uninterrupted_run(words_path, tmp_path, run_cli):
    # dropout draws random masks: the resumed run must also continue the random state
    args = small_run_args(
        words_path, tmp_path / "killed", max_steps=3000, model__net__dropout="0.2", model__net__n_layers="2"
    )
    process = makemore("fit", *args)
    last = tmp_path / "killed" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    wait_for(last, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = read_checkpoint(str(last))["global_step"]
    assert 0 < killed_at < 3000

    resumed = run_cli("fit", *args, "--ckpt_path", "last")
    assert resumed.trainer.global_step == 3000
    assert Path(resumed.trainer.log_dir).name == "version_1"  # a new run folder: the killed run's files stay
    assert last.exists()

    reference = run_cli(
        "fit",
        *small_run_args(
            words_path, tmp_path / "whole", max_steps=3000, model__net__dropout="0.2", model__net__n_layers="2"
        ),
    )
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert reference.trainer.callback_metrics["val_loss"] == resumed.trainer.callback_metrics["val_loss"]


def test_sigterm_is_not_reported_as_success(words_path, tmp_path):
    process = makemore("fit", *small_run_args(words_path, tmp_path, max_steps=100000))
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    wait_for(last, process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 1
    assert "makemore: error: stopped by SIGTERM before the run finished" in output and "--ckpt_path last" in output


def test_resume_last_without_a_checkpoint_is_a_clear_error(words_path, tmp_path, run_cli):
    with pytest.raises(SystemExit, match="lightning_logs: no run with a last.ckpt there"):
        run_cli("fit", *small_run_args(words_path, tmp_path), "--ckpt_path", "last")


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one_readable(words_path, tmp_path):
    script = textwrap.dedent(
        f"""
        import os, shutil, signal
        from makemore.cli import run_cli
        cli = run_cli({["fit", *small_run_args(words_path, tmp_path, max_steps=100)]!r})
        last = cli.trainer.checkpoint_callbacks[1].last_model_path or cli.trainer.checkpoint_callbacks[1].best_model_path
        print("LAST", last, flush=True)
        # die in the middle of the next save: after the bytes are written, before the file is in place
        shutil.move = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        cli.trainer.save_checkpoint(last)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    last = re.search(r"LAST (.+)", result.stdout).group(1)
    assert read_checkpoint(last)["global_step"] == 100


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed support")
def test_ddp_on_two_cpu_processes(words_path, tmp_path, run_cli):
    args = small_run_args(words_path, tmp_path, max_steps=100)
    process = makemore(
        "fit", *args, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"
    )
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    runs = list((tmp_path / "lightning_logs").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # one run folder, checkpoints written once
    checkpoints = sorted(p.name for p in (runs[0] / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints
    best = next(runs[0].glob("checkpoints/epoch=*.ckpt"))
    assert read_checkpoint(str(best))["global_step"] == 100
    # val_loss was reduced over both processes' halves of the split: one process on the whole split agrees
    logged = float(re.search(r"val_loss=([0-9.]+?)\.ckpt", best.name).group(1))
    single = run_cli("validate", *small_run_args(words_path, tmp_path / "single"), "--ckpt_path", str(best))
    assert single.trainer.callback_metrics["val_loss"].item() == pytest.approx(logged, abs=1e-4)
