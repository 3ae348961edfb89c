"""Whole processes as a user runs them: start-up of `makemore --help` and `sample`, and a fit against the plain loop.

Each command runs as its own process, the sides interleaved (A B C A B C ...), and the table gives the
median wall time of the repeats and its ratio to the baseline in the same run:

  import torch         python -c "import torch": the floor for anything that uses torch
  makemore --help      python -m makemore --help
  makemore sample      python -m makemore sample --ckpt_path <a checkpoint> (20 names)
  plain loop, N steps  python -m benchmarks.plain_loop --steps N (the notebook's loop as a script)
  makemore fit, N      python -m makemore fit --config configs/mlp.yaml --trainer.max_steps N

    nice python -m benchmarks.startup                          # 5 repeats, fits of 50,000 steps
    python -m benchmarks.startup --repeats 1 --fit-steps 200     # a smoke run
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from makemore.checkpoint import named_checkpoint

ROOT = Path(__file__).resolve().parent.parent  # the checkout (not benchmarks.common's: that imports Lightning)


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command, interleaved (default 5)")
    parser.add_argument("--fit-steps", type=int, default=50_000, help="SGD steps of the two fits (default 50000)")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="makemore-startup-") as tmp:
        fit = [python, "-m", "makemore", "fit", "--config", str(ROOT / "configs" / "mlp.yaml")]
        fit += [
            "--trainer.default_root_dir",
            tmp,
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_progress_bar",
            "false",
        ]
        subprocess.run([*fit, "--trainer.max_steps", "100"], cwd=ROOT, capture_output=True, check=True)
        ckpt = named_checkpoint("last", tmp)
        startup = {
            "import torch": [python, "-c", "import torch"],
            "makemore --help": [python, "-m", "makemore", "--help"],
            "makemore sample (20 names)": [python, "-m", "makemore", "sample", "--ckpt_path", str(ckpt)],
        }
        steps = f"{args.fit_steps:,} steps"
        fits = {
            f"plain loop, {steps}": [
                python,
                "-m",
                "benchmarks.plain_loop",
                "--steps",
                str(args.fit_steps),
                "--threads",
                "1",
            ],
            f"makemore fit, {steps}": [*fit, "--trainer.max_steps", str(args.fit_steps)],
        }
        times: dict[str, list[float]] = {name: [] for name in [*startup, *fits]}
        for repeat in range(args.repeats):
            for name, command in [*startup.items(), *fits.items()]:
                times[name].append(timed(command))
                print(f"  repeat {repeat + 1}/{args.repeats} {name}: {times[name][-1]:.2f} s", flush=True)
    print(f"\n| command | median wall s ({args.repeats} runs) | × baseline | baseline |")
    print("|---|---:|---:|---|")
    for group, baseline in ((startup, "import torch"), (fits, f"plain loop, {steps}")):
        base = statistics.median(times[baseline])
        for name in group:
            median = statistics.median(times[name])
            print(f"| {name} | {median:.2f} | {median / base:.2f} | {baseline} |")


if __name__ == "__main__":
    main()
