"""What the Diagnostics callback costs: a config's fit with and without it, per SGD step, in one process.

Both sides are `python -m makemore fit --config CONFIG` in-process as a user runs it (logger, progress bar
to a log file, validation and checkpoints at the config's interval), interleaved (A B A B ...), same
threads; µs/step of training from the StepTimer callback (first training batch to on_train_end). The watched
side adds `--trainer.callbacks+=makemore.diagnostics.Diagnostics` at its default interval (or --every).
On a shared machine the two sides' difference is noisy; the callback's own time (its measuring passes and
the figure at the end, timed inside the watched runs) is printed as a share of that run's training time too.

    nice python -m benchmarks.diagnostics_overhead                         # configs/mlp.yaml, 20,000 steps, 3 repeats
    python -m benchmarks.diagnostics_overhead --config configs/mlp_batchnorm.yaml --steps 5000 --repeats 1
"""

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import CONFIGS, machine_facts, timed_fit
from makemore.diagnostics import Diagnostics

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
    SPENT["s"] = 0.0
    _, timer = timed_fit(config, steps, workdir, *extra)
    return timer.us_per_step, SPENT["s"] / timer.train_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIGS / "mlp.yaml")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every", type=int, default=None, help="Diagnostics' every_n_steps (default: its own)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
