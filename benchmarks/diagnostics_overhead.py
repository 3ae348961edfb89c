"""What the Diagnostics callback costs: a config's fit with and without it, per SGD step, in one process.

Both sides are `python -m makemore fit --config CONFIG` in-process as a user runs it (logger, progress bar
to a log file, validation and checkpoints at the config's interval), interleaved (A B A B ...), same
threads; µs/step of training from the StepTimer callback (first training batch to on_train_end). The watched
side adds `--trainer.callbacks+=makemore.diagnostics.Diagnostics` at its default interval (or --every).
On a shared machine the two sides' difference is noisy; the callback's own time (its measuring passes and
the figure at the end, timed inside the watched runs) is printed as a share of that run's training time too.

    nice python benchmarks/diagnostics_overhead.py                         # configs/mlp.yaml, 20,000 steps, 3 repeats
    python benchmarks/diagnostics_overhead.py --config configs/mlp_batchnorm.yaml --steps 5000 --repeats 1
"""

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # step_timer (the CLI imports it by class path) and train_speed

from step_timer import StepTimer  # noqa: E402
from train_speed import machine_facts, output_to  # noqa: E402

from makemore.cli import run_cli as makemore_main  # noqa: E402
from makemore.diagnostics import Diagnostics  # noqa: E402

SPENT = {"s": 0.0}  # seconds inside Diagnostics' own work in the current run


def timed(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            SPENT["s"] += time.perf_counter() - start

    return wrapper


Diagnostics.measure = timed(Diagnostics.measure)
Diagnostics.on_fit_end = timed(Diagnostics.on_fit_end)


def run(config: Path, steps: int, workdir: Path, extra: list[str]) -> tuple[float, float]:
    """µs per SGD step of one fit, and the share of its training time spent in Diagnostics."""
    root = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    args = ["fit", "--config", str(config), "--trainer.max_steps", str(steps), "--trainer.default_root_dir", str(root)]
    args += ["--trainer.accelerator", "cpu", "--trainer.callbacks+=step_timer.StepTimer", *extra]
    SPENT["s"] = 0.0
    with output_to(root / "output.log"):
        cli = makemore_main(args)
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, StepTimer))
    if timer.steps != steps:
        raise RuntimeError(f"the run took {timer.steps} steps, expected {steps}")
    return timer.us_per_step, SPENT["s"] / timer.train_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "mlp.yaml")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, default=None, help="Diagnostics' every_n_steps (default: its own)")
    args = parser.parse_args()
    every = args.every or Diagnostics().every_n_steps
    watched = ["--trainer.callbacks+=makemore.diagnostics.Diagnostics", "--trainer.callbacks.every_n_steps", str(every)]
    sides = {"without": [], "with Diagnostics": watched}
    times: dict[str, list[float]] = {side: [] for side in sides}
    shares: list[float] = []
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            for side, extra in sides.items():
                us, share = run(args.config, args.steps, Path(workdir), extra)
                times[side].append(us)
                if extra:
                    shares.append(share)
    print(f"{args.config.name}, {args.steps:,} steps, Diagnostics every {every:,} steps, {args.repeats} repeats")
    print(machine_facts(torch.get_num_threads()))
    print("\n| side | µs/step (median) | best |\n|---|---:|---:|")
    for side, values in times.items():
        print(f"| {side} | {statistics.median(values):.1f} | {min(values):.1f} |")
    ratio = statistics.median(times["with Diagnostics"]) / statistics.median(times["without"])
    best = min(times["with Diagnostics"]) / min(times["without"])
    print(f"\noverhead: {ratio:.3f}x (median), {best:.3f}x (best)")
    share = statistics.median(shares)
    print(f"time inside Diagnostics: {share:.1%} of the watched runs' training time (median; its figure included)")


if __name__ == "__main__":
    main()
