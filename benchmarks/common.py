"""What the benchmarks share: the StepTimer callback, an in-process `makemore fit` timed by it, its output sent to a
file, and the line that says which machine and versions a table was measured on."""

import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import torch

from makemore.cli import run_cli

ROOT = Path(__file__).resolve().parent.parent  # the checkout: the benchmarks run from here (python -m benchmarks.x)
CONFIGS = ROOT / "configs"


class StepTimer(L.Callback):
    """Wall (and CPU) time from the first training batch to on_train_end, and the wall time spent in validation.

    The clock starts at the first batch, not at on_train_start: what runs once before it (the untrained
    model's val loss that makemore logs at step 0, a whole pass over val) is not a cost per step;
    `start_s` holds it apart. The CLI adds it by class path (`--trainer.callbacks+=benchmarks.common.StepTimer`)
    and `timed_fit` finds the very same instance in `cli.trainer.callbacks` afterwards.
    """

    aligned_steps = 0  # it counts SGD steps itself (global_step): batches may carry many (makemore.lightning_features)

    def __init__(self) -> None:
        self.train_s = float("nan")
        self.train_cpu_s = float("nan")  # process CPU time, all threads (tensorboard's writer thread too)
        self.val_s = 0.0
        self.validations = 0
        self.start_s = float("nan")  # on_train_start to the first batch
        self.steps = 0
        self.threads = 0
        self._start = self._cpu_start = self._val_start = self._train_start = 0.0
        self._started = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.threads = torch.get_num_threads()
        self._train_start = time.perf_counter()

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._started:
            self._started = True
            self._cpu_start = time.process_time()
            self._start = time.perf_counter()
            self.start_s = self._start - self._train_start

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:  # the sanity check runs before on_train_start
            self.val_s += time.perf_counter() - self._val_start
            self.validations += 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.train_s = time.perf_counter() - self._start
        self.train_cpu_s = time.process_time() - self._cpu_start
        self.steps = trainer.global_step

    @property
    def us_per_step(self) -> float:
        return self.train_s / max(self.steps, 1) * 1e6

    @property
    def cpu_us_per_step(self) -> float:
        return self.train_cpu_s / max(self.steps, 1) * 1e6


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 (tqdm writes to stdout, Lightning's logging to stderr) to `path`."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def timed_fit(config: Path, steps: int, workdir: Path, *options: str) -> tuple[Any, StepTimer]:
    """`python -m makemore fit --config CONFIG` as a user runs it, in this process, on the CPU with this process's torch
    threads, for `steps` SGD steps into a new folder under `workdir`, its output to that folder's output.log; the
    LightningCLI and its StepTimer. RuntimeError where the fit took another number of steps.

    Args:
        config: the config file.
        steps: trainer.max_steps.
        workdir: where the run's folder is made.
        options: more CLI options, after these (a later option wins).
    """
    root = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    args = ["fit", "--config", str(config), "--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(root)]
    args += ["--trainer.accelerator", "cpu", "--num_threads", str(torch.get_num_threads())]
    args += ["--trainer.callbacks+=benchmarks.common.StepTimer", *options]
    with output_to(root / "output.log"):
        cli = run_cli(args)
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, StepTimer))
    if timer.steps != steps:
        raise RuntimeError(f"{config.name}: the makemore run took {timer.steps} steps, expected {steps}")
    return cli, timer


def load_average() -> str:
    try:
        return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def machine_facts(threads: int) -> str:
    """One line: the machine, Python, torch and Lightning, the torch threads and the load now."""
    return (
        f"machine: {platform.machine()}, os.cpu_count()={os.cpu_count()}, python {platform.python_version()}, "
        f"torch {torch.__version__}, lightning {L.__version__}, torch threads {threads}; {load_average()}"
    )
