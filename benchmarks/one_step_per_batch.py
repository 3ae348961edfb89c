"""What one SGD step per Lightning batch costs, per ladder config: the price of a callback that acts on every batch.

A fit with weight averaging, a learning-rate monitor, a profiler or any callback of one's own that overrides
on_train_batch_start/end takes one SGD step per batch (makemore/lightning_features.py), so that it sees every
step. For each config, in one process, the sides interleaved, same threads: `python -m makemore fit --config
configs/MODEL.yaml` as a user runs it, with the config's batches (up to data.max_steps_per_batch steps each) and
with `--data.max_steps_per_batch 1`; µs per SGD step of training from the StepTimer callback (validation excluded).
`--against max_time` or `ema` compares the fit with `--trainer.max_time` or EMAWeightAveraging instead, which keep
the large batches (makemore checks the clock and updates the average between SGD steps).

    nice python benchmarks/one_step_per_batch.py --models mlp transformer --steps 2000 --repeats 3
    nice python benchmarks/one_step_per_batch.py --models mlp --steps 30000 --against max_time
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ladder_speed import ROOT, run_makemore  # noqa: E402
from train_speed import machine_facts  # noqa: E402

from makemore.runs import LADDER  # noqa: E402

# The other side of the comparison: the options added to the config's fit.
AGAINST = {
    "one": ("--data.max_steps_per_batch", "1"),
    "max_time": ("--trainer.max_time", "00:01:00:00"),  # an hour: it never stops these fits
    "ema": ("--trainer.callbacks+=EMAWeightAveraging",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "transformer"], choices=list(LADDER))
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--against", choices=list(AGAINST), default="one", help="the other side (default one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_facts(args.threads))
    print(f"{args.steps} SGD steps per run, {args.repeats} repeat(s) interleaved, CPU\n")
    sides = {"many": (), args.against: AGAINST[args.against]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="makemore-one-step-") as tmp:
        for model in args.models:
            path = ROOT / "configs" / f"{model}.yaml"
            times = {side: [] for side in sides}
            for repeat in range(args.repeats):
                for side, options in sides.items():
                    times[side].append(run_makemore(path, args.steps, Path(tmp), *options)[0])
                print(
                    f"  {model} repeat {repeat + 1}: " + ", ".join(f"{s} {t[-1]:.0f} µs/step" for s, t in times.items())
                )
            rows.append((model, *(statistics.median(times[side]) for side in sides)))
    other = {"one": "one step a batch", "max_time": "with max_time", "ema": "with EMA"}[args.against]
    print(f"\n| model | µs/step, many steps a batch (median of {args.repeats}) | {other} | × |")
    print("|---|---:|---:|---:|")
    for model, many, one in rows:
        print(f"| {model} | {many:.0f} | {one:.0f} | {one / many:.2f} |")


if __name__ == "__main__":
    main()
