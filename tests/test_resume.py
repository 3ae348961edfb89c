"""Nothing lost: a hard-killed run resumes exactly, checkpoints are written atomically, DDP on two CPU processes."""

import io
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import small_run_args

from makemore.checkpoint import read_checkpoint
from makemore.module import MakemoreModule

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


def test_sigterm_stops_between_sgd_steps(words_path, tmp_path, run_cli, monkeypatch):
    """SIGTERM (a cluster's notice before it kills the job) stops a fit at the next SGD step, not at the end of its
    Lightning batch, which holds up to 1,000 of them: tens of seconds of a large network, past a grace period."""
    sgd_step, trained = MakemoreModule.sgd_step, []

    def step_then_signal(self, *args, **kwargs):
        loss = sgd_step(self, *args, **kwargs)
        trained.append(self.global_step)
        if len(trained) == 23:  # the third step of the third batch (of 10)
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(MakemoreModule, "sgd_step", step_then_signal)
    with pytest.raises(SystemExit, match="stopped by SIGTERM before the run finished"):
        run_cli("fit", *small_run_args(words_path, tmp_path, max_steps=1000))
    assert trained == list(range(1, 24))


def test_resume_last_without_a_checkpoint_is_a_clear_error(words_path, tmp_path, run_cli):
    with pytest.raises(SystemExit, match="lightning_logs: no run with a last.ckpt there"):
        run_cli("fit", *small_run_args(words_path, tmp_path), "--ckpt_path", "last")


class FillTheDisk(L.Callback):
    """At the validation of SGD step `at_step`, a file fills the run's disk but for `free` bytes (a tmpfs here)."""

    def __init__(self, at_step: int, free: int) -> None:
        self.at_step, self.free = at_step, free

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self.at_step:
            root = Path(trainer.default_root_dir)
            space = shutil.disk_usage(root).free - self.free
            with open(root / "filler", "wb") as file:
                file.write(bytes(space))


class LimitFileSize(L.Callback):
    """At the validation of SGD step `at_step`, this process may write files of `limit` bytes at most (RLIMIT_FSIZE):
    a longer write fails part-way, as on a disk that fills up, without mounting one."""

    def __init__(self, at_step: int, limit: int) -> None:
        self.at_step, self.limit = at_step, limit

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == self.at_step:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, resource.RLIM_INFINITY))


def checkpoints_after_a_failed_write(root: Path, failing: dict) -> tuple[str, dict[str, bytes]]:
    """Fit 150 steps whose checkpoint writes at step 100 fail (`failing`: FillTheDisk's or LimitFileSize's class_path
    and init_args), in a subprocess; (its stderr, the checkpoints folder's files and their bytes)."""
    args = small_run_args(root / "words.txt", root, max_steps=150)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    result = subprocess.run(
        [sys.executable, "-m", "makemore", "fit", *args, "--trainer.callbacks+", json.dumps(failing)],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    checkpoints = root / "lightning_logs" / "version_0" / "checkpoints"
    return result.stderr, {path.name: path.read_bytes() for path in sorted(checkpoints.iterdir())}


def check_nothing_lost(output: str, files: dict[str, bytes], root: Path, reason: str) -> None:
    """The failed write of step 100 said so in one line, and left step 50's last.ckpt and best as they were."""
    folder = root / "lightning_logs" / "version_0" / "checkpoints"
    errors = [line for line in output.splitlines() if "rror" in line]
    assert len(errors) == 1 and "Traceback" not in output, output[-3000:]
    assert re.fullmatch(
        f"makemore: error: {re.escape(str(folder))}: cannot write the checkpoint \\S+\\.ckpt there:"
        f" {reason}; the checkpoints already there are kept",
        errors[0],
    ), errors[0]
    assert len(files) == 2 and "last.ckpt" in files, sorted(files)  # no partial checkpoint, no temporary file
    best = next(name for name in files if name.startswith("step=50-"))
    for name in ("last.ckpt", best):
        assert torch.load(io.BytesIO(files[name]), weights_only=True)["global_step"] == 50


def test_a_disk_that_fills_up_during_a_write_keeps_the_previous_checkpoints(words_path, small_disk):
    disk = small_disk("1m")
    shutil.copy(words_path, disk / "words.txt")
    failing = {"class_path": "test_resume.FillTheDisk", "init_args": {"at_step": 100, "free": 16384}}
    output, files = checkpoints_after_a_failed_write(disk, failing)
    check_nothing_lost(output, files, disk, "no space left on its device")


def test_a_write_that_fails_part_way_keeps_the_previous_checkpoints(words_path, tmp_path):
    assert words_path == tmp_path / "words.txt"
    failing = {"class_path": "test_resume.LimitFileSize", "init_args": {"at_step": 100, "limit": 16384}}
    output, files = checkpoints_after_a_failed_write(tmp_path, failing)
    check_nothing_lost(output, files, tmp_path, "File too large")


def test_a_kill_at_any_moment_of_a_checkpoint_write_leaves_the_previous_one_readable(words_path, tmp_path, small_disk):
    """A fit's process, forked, writes last.ckpt again and again and is killed at a random moment, ten times; the
    temporary folder is on another file system than the run (a tmpfs of its own) where one can be mounted."""
    try:
        scratch = small_disk("256m")
    except pytest.skip.Exception:
        scratch = tmp_path / "scratch"
        scratch.mkdir()
    script = textwrap.dedent(
        f"""
        import os, random, signal, time
        from makemore.checkpoint import read_checkpoint
        from makemore.cli import run_cli
        from makemore.errors import CheckpointError
        cli = run_cli({["fit", *small_run_args(words_path, tmp_path, max_steps=20, model__net__n_hidden="20000")]!r})
        last = cli.trainer.checkpoint_callbacks[1].format_checkpoint_name({{}})
        size, rng = os.stat(last).st_size, random.Random(0)
        for _ in range(10):
            writer = os.fork()
            if writer == 0:  # last.ckpt again and again, the same bytes, until killed
                while True:
                    cli.trainer.save_checkpoint(last)
            # kill at a random moment, or as soon as last.ckpt is seen other than whole
            moment = time.monotonic() + rng.uniform(0, 0.1)
            while time.monotonic() < moment and os.stat(last).st_size == size:
                pass
            os.kill(writer, signal.SIGKILL)
            os.waitpid(writer, 0)
            try:
                print("STEP", read_checkpoint(last)["global_step"], flush=True)
            except CheckpointError as err:
                print("LOST", err, flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.findall(r"^(?:STEP|LOST).*", result.stdout, re.MULTILINE) == ["STEP 20"] * 10, result.stdout[-2000:]
    assert not list(scratch.iterdir())  # nothing left in the temporary folder
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    left = {path.name for path in checkpoints.iterdir() if not path.name.startswith("step=")}
    assert left <= {"last.ckpt", ".last.ckpt.tmp"}  # besides the checkpoints, at most the write that was killed


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
    best = next(runs[0].glob("checkpoints/step=*.ckpt"))
    assert read_checkpoint(str(best))["global_step"] == 100
    # val_loss was reduced over both processes' halves of the split: one process on the whole split agrees
    logged = float(re.search(r"val_loss=([0-9.]+?)\.ckpt", best.name).group(1))
    single = run_cli("validate", *small_run_args(words_path, tmp_path / "single"), "--ckpt_path", str(best))
    assert single.trainer.callback_metrics["val_loss"].item() == pytest.approx(logged, abs=1e-4)


def test_a_resumed_run_keeps_the_best_checkpoint_of_the_run_it_resumes(words_path, tmp_path, run_cli, capsys):
    # the learning rate jumps 15-fold after step 100: the validation after the resume is worse than the best before
    args = small_run_args(
        words_path, tmp_path, max_steps=100, model__lr_scheduler__milestones="[100]", model__lr_scheduler__gamma="15"
    )
    first = run_cli("fit", *args)
    best, score = first.trainer.checkpoint_callback.best_model_path, first.trainer.checkpoint_callback.best_model_score
    assert read_checkpoint(best)["global_step"] == 100
    resumed = run_cli("fit", *args, "--trainer.max_steps", "150", "--ckpt_path", "last")
    assert resumed.trainer.callback_metrics["val_loss"] > score  # step 150's val_loss, worse
    assert (
        resumed.trainer.checkpoint_callback.best_model_path,
        resumed.trainer.checkpoint_callback.best_model_score,
    ) == (
        best,
        score,
    )
    assert f"best checkpoint (val_loss {score:.4f}): {best}" in capsys.readouterr().out
    assert not list(Path(resumed.trainer.log_dir, "checkpoints").glob("step=*.ckpt"))  # no worse "best" written
    tested = run_cli("test", *args, "--ckpt_path", "best")
    assert tested.trainer.ckpt_path == best and Path(best).is_file()
