"""Where does makemore's time per SGD step go? Variants of one training run, timed side by side.

Every makemore variant runs through makemore.cli.main exactly as benchmarks/train_speed.py does (logger,
progress bar, checkpointing, validation on); one thing is changed per variant. The variants do the same
arithmetic from the same seed, so the makemore rows must end at the same loss; the script checks that.

  plain+optim            the lecture loop with torch.optim.SGD + MultiStepLR (no nn.Module, no Lightning)
  module+optim           the same with the package's nn.Module MLP, makemore's pre-drawn mini-batches and
                         SGD's for-loop chosen once, as makemore does (no Lightning)
  makemore               the package as is
  makemore, Lightning's wrappers
                         self.manual_backward + LightningOptimizer.step for every SGD step, as the package
                         does when a hook, several processes or mixed precision need them
  makemore, no validation
                         trainer.limit_val_batches=0: what periodic validation and its checkpoints cost

    nice python -m benchmarks.step_breakdown --steps 10000 --repeats 3
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from benchmarks import plain_loop, train_speed
from benchmarks.common import machine_facts
from makemore import steps as makemore_steps
from makemore.models import MLP
from makemore.steps import TrainBatches

STEPS_PER_BATCH = 1000  # configs/mlp.yaml's batches (log_every_n_steps 1000, data.max_steps_per_batch 1000)


def run_module_optim(data, vocab_size: int, steps: int) -> dict:
    """The plain+optim loop with the package's nn.Module and makemore's mini-batches, without Lightning."""
    torch.manual_seed(42)
    net = MLP(vocab_size, plain_loop.BLOCK_SIZE, plain_loop.N_EMBD, plain_loop.N_HIDDEN)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, foreach=False)  # what torch picks on a CPU
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[steps // 2], gamma=0.1)
    batches = TrainBatches(
        TensorDataset(*data["train"]), plain_loop.BATCH_SIZE, STEPS_PER_BATCH, steps, seed=42, rank=0
    )
    start, cpu = time.perf_counter(), time.process_time()
    for X, Y in batches:
        for x, y in zip(X[:, 0], Y[:, 0]):  # (steps, 1 mini-batch per step, batch_size, ...)
            _, loss = net(x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "us_per_step": seconds / steps * 1e6,
        "cpu_us_per_step": cpu / steps * 1e6,
        "losses": train_speed.split_losses(lambda X: net(X)[0], data),
    }


def wrapped_steps(module, base=None) -> bool:
    return False  # makemore.steps.direct_steps answering no: every step goes through Lightning's wrappers


VARIANTS = ["plain+optim", "module+optim", "makemore", "makemore, Lightning's wrappers", "makemore, no validation"]


def run_variant(name: str, data, vocab_size: int, steps: int, tmp: Path) -> dict:
    if name == "plain+optim":
        return train_speed.run_plain(data, vocab_size, steps, optim=True, init="package")
    if name == "module+optim":
        return run_module_optim(data, vocab_size, steps)
    if name == "makemore, no validation":
        return train_speed.run_makemore(data, steps, None, tmp, extra=["--trainer.limit_val_batches", "0"])
    if name == "makemore, Lightning's wrappers":
        direct = makemore_steps.direct_steps
        makemore_steps.direct_steps = wrapped_steps
        try:
            return train_speed.run_makemore(data, steps, None, tmp)
        finally:
            makemore_steps.direct_steps = direct
    return train_speed.run_makemore(data, steps, None, tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_facts(torch.get_num_threads()))
    data, vocabulary = plain_loop.build_data()
    results = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="makemore-breakdown-") as tmp:
        for r in range(args.repeats):
            for name in VARIANTS:
                res = run_variant(name, data, len(vocabulary), args.steps, Path(tmp))
                results[name].append(res)
                print(
                    f"  repeat {r + 1}/{args.repeats} {name:32s} {res['us_per_step']:8.1f} µs/step "
                    f"({res['cpu_us_per_step']:.1f} CPU)  train loss {res['losses']['train']:.6f}",
                    flush=True,
                )
    reference = results["makemore"][-1]["losses"]["train"]
    for name in ("makemore, Lightning's wrappers", "makemore, no validation"):
        if abs(results[name][-1]["losses"]["train"] - reference) > 1e-4:
            print(
                f"WARNING: {name} ends at train loss {results[name][-1]['losses']['train']:.6f}, "
                f"makemore at {reference:.6f}"
            )
    print(f"\n{args.steps} steps, {torch.get_num_threads()} thread(s), median of {args.repeats}\n")
    print("| variant | µs/step | × plain+optim | CPU µs/step | train loss |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(r["us_per_step"] for r in results["plain+optim"])
    for name in VARIANTS:
        us = statistics.median(r["us_per_step"] for r in results[name])
        cpu = statistics.median(r["cpu_us_per_step"] for r in results[name])
        print(f"| {name} | {us:.1f} | {us / base:.2f} | {cpu:.1f} | {results[name][-1]['losses']['train']:.4f} |")


if __name__ == "__main__":
    main()
