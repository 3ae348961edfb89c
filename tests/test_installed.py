"""What a user runs after installing: the `makemore` console script's exit status, and a wheel installed into a fresh
virtual environment, run from any folder (the checkout included)."""

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import small_run_args

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sysconfig.get_path("scripts")) / "makemore"
# What a copy of the checkout to build a wheel from leaves out: history, runs, and builds and caches of its own.
COPIED_NOT = (".git", "lightning_logs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache")


def run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not SCRIPT.is_file(), reason=f"the makemore console script is not installed at {SCRIPT}")
def test_the_console_script_exits_0_after_every_subcommand_that_succeeds(words_path, tmp_path):
    args = small_run_args(words_path, tmp_path, max_steps=50)
    # as a shell runs `makemore fit && makemore test`: each step only after the previous one exited 0
    for subcommand, extra in [
        ("fit", []),
        ("validate", ["--ckpt_path", "last"]),
        ("test", ["--ckpt_path", "best"]),
        ("lr_find", ["--num_training", "40"]),
    ]:
        done = run([SCRIPT, subcommand, *args, *extra], tmp_path)
        assert done.returncode == 0, f"makemore {subcommand} exited {done.returncode}: {done.stderr[-2000:]}"
        assert "object at 0x" not in done.stdout + done.stderr  # nothing but the run's own output
    last = next(tmp_path.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    done = run([SCRIPT, "sample", "--ckpt_path", last, "--num_samples", "3"], tmp_path)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 3, done.stderr[-2000:]
    done = run([SCRIPT, "test", *args, "--ckpt_path", tmp_path / "missing.ckpt"], tmp_path)
    assert done.returncode == 1 and done.stderr.startswith("makemore: error: ") and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_wheel_in_a_fresh_environment_runs_from_any_folder_the_checkout_included(words_path, tmp_path):
    """`pip install .` builds such a wheel: its package must be whole, and so must the checkout's makemore/, which
    `python -m makemore` imports when run in the checkout."""
    # built from a copy: pip builds in the source folder, and the checkout keeps no build/ of it
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*COPIED_NOT))
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path / "dist", source], tmp_path
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("makemore-*.whl"))
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", venv], tmp_path).returncode == 0
    python, script = venv / "bin" / "python", venv / "bin" / "makemore"
    # the dependencies (torch, Lightning, ...) from this environment's folders, listed in a .pth file (the .pth files
    # there, this checkout's editable install among them, are not read from a folder a .pth file adds); makemore
    # itself only from the wheel
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "dependencies.pth").write_text("".join(f"{folder}\n" for folder in ours))
    installed = run([python, "-m", "pip", "install", "--quiet", "--no-deps", wheel], tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    where = run([python, "-c", "import makemore.configs as c; print(c.__file__)"], tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    # `fit` with no --config reads the lecture's config from the package; in the checkout, from the checkout's
    args = ["fit", *small_run_args(words_path, tmp_path / "runs", max_steps=20)]
    for command, cwd in [([script, *args], tmp_path), ([python, "-m", "makemore", *args], ROOT)]:
        done = run(command, cwd)
        assert done.returncode == 0, f"{command[0]} in {cwd}: {done.stderr[-2000:]}"
        assert "run folder" in done.stdout
