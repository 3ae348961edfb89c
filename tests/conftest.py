"""Shared fixtures: a tiny word list, the lecture's names.txt, and a CLI runner that keeps runs small."""

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from makemore import cli
from makemore.formats import default_path

# sha256 of the lecture's names.txt (32,033 names; see makemore/assets/README.md)
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"


@pytest.fixture
def names_path() -> Path:
    """The names.txt shipped in the package, checked to be the lecture's file byte for byte."""
    path = default_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == NAMES_SHA256, f"{path} is not the lecture's names.txt"
    return path


def write_syllable_words(path: Path) -> Path:
    """200 made-up names of 1 to 3 syllables: structure to learn, three splits, fast to train on."""
    rng = random.Random(0)
    syllables = ["ma", "ri", "an", "el", "jo", "na", "lie", "so", "be", "th"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(200)]
    path.write_text("\n".join(words) + "\n")
    return path


@pytest.fixture
def words_path(tmp_path: Path) -> Path:
    return write_syllable_words(tmp_path / "words.txt")


def cli_error(args: list[str], pattern: str) -> str:
    """Run the CLI in-process, expect it to exit with `makemore: error: ` and a message matching `pattern`."""
    with pytest.raises(SystemExit, match="^makemore: error: " + pattern) as exit_info:
        cli.main(args)
    return str(exit_info.value)


def small_run_args(words: Path, root: Path, max_steps: int = 200, **overrides) -> list[str]:
    """CLI arguments for a short run on the CPU: batches of 10 SGD steps (train_loss logged every 10), an epoch of
    50, no progress bar."""
    options = {
        "data.path": str(words),
        "data.max_steps_per_batch": "10",
        "data.val_every_n_steps": "50",
        "trainer.log_every_n_steps": "10",
        "trainer.max_steps": str(max_steps),
        "trainer.accelerator": "cpu",
        "trainer.default_root_dir": str(root),
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "seed_everything": "0",
    }
    options.update({key.replace("__", "."): value for key, value in overrides.items()})
    return [arg for key, value in options.items() for arg in (f"--{key}", value)]


@pytest.fixture
def run_cli():
    """Run a subcommand through the real CLI, as `python -m makemore ...` would; returns the LightningCLI."""

    def run(subcommand: str, *args: str):
        return cli.run_cli([subcommand, *args])

    return run


@pytest.fixture
def small_disk(tmp_path):
    """Mount a small file system of one's own (tmpfs, as root); skip where mounting is not allowed."""

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk_{size}"
        folder.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {result.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    mounted: list[Path] = []
    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], check=False)
