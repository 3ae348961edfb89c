"""Shared fixtures: a tiny word list, the lecture's names.txt, and a CLI runner that keeps runs small."""

import random
from pathlib import Path

import pytest

from makemore.cli import main

NAMES = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"


@pytest.fixture
def names_path() -> Path:
    if not NAMES.exists():
        pytest.skip(f"{NAMES} is not here")
    return NAMES


@pytest.fixture
def words_path(tmp_path: Path) -> Path:
    """200 made-up names of 1 to 3 syllables: structure to learn, three splits, fast to train on."""
    rng = random.Random(0)
    syllables = ["ma", "ri", "an", "el", "jo", "na", "lie", "so", "be", "th"]
    words = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(200)]
    path = tmp_path / "words.txt"
    path.write_text("\n".join(words) + "\n")
    return path


def small_run_args(words: Path, root: Path, max_steps: int = 200, **overrides) -> list[str]:
    """CLI arguments for a short run on the CPU: batches of 10 SGD steps (train_loss logged every 10), an epoch of
    50, no progress bar."""
    options = {
        "data.path": str(words),
        "data.steps_per_batch": "10",
        "data.steps_per_epoch": "50",
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
        return main([subcommand, *args])

    return run
