"""Where does makemore's extra time per SGD step go? Variants of the training step, timed side by side.

Every makemore variant runs through makemore.cli.main exactly as benchmarks/train_speed.py does (logger,
progress bar, checkpointing on); only `MakemoreModule.training_step` is swapped in-process
(monkeypatched here, the package is not edited). The variants do the same arithmetic in the same
order from the same seed, so their final losses must agree; the script checks that.

  plain+optim            the lecture loop with torch.optim.SGD + MultiStepLR (no nn.Module, no Lightning)
  module+optim           the same, but the forward is the package's nn.Module MLP (no Lightning)
  makemore               the package as is
  makemore loss.backward()    loss.backward() instead of self.manual_backward(loss)
  makemore raw optimizer      the torch optimizer's own step() instead of Lightning's wrapper, and
                              the step counter advanced by hand
  makemore both               both changes

    nice python benchmarks/step_breakdown.py --steps 5000 --repeats 3 --threads 1
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plain_loop  # noqa: E402
import train_speed  # noqa: E402

from makemore.model import MLP  # noqa: E402
from makemore.module import MakemoreModule  # noqa: E402

ORIGINAL_STEP = MakemoreModule.training_step


def make_training_step(plain_backward: bool, raw_optimizer: bool):
    """MakemoreModule.training_step with the backward and/or the optimizer step done without Lightning."""

    def training_step(self, batch, batch_idx):
        X, Y = batch
        lightning_optimizer = self.optimizers()
        optimizer = lightning_optimizer.optimizer if raw_optimizer else lightning_optimizer
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        scheduler = self.lr_schedulers()
        step_scheduler = scheduler is not None and self._scheduler_interval() == "step"
        max_steps = self.trainer.max_steps
        steps = len(Y) if max_steps < 0 else min(len(Y), max_steps - self.global_step)
        total = torch.zeros((), device=Y.device)
        for k in range(steps):
            _, loss = self.net(X[k], Y[k])
            optimizer.zero_grad()
            if plain_backward:
                loss.backward()
            else:
                self.manual_backward(loss)
            optimizer.step()
            if raw_optimizer:  # what LightningOptimizer.step's hooks do for global_step
                progress.increment_ready()
                progress.increment_completed()
            if step_scheduler:
                scheduler.step()
            total += loss.detach()
        mean = total / max(steps, 1)
        self.log("step", float(self.global_step), on_step=True, on_epoch=False, logger=True)
        self.log("train_loss", mean, on_step=True, on_epoch=False, prog_bar=True)
        self.log("lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)
        return mean

    return training_step


def run_module_optim(data, vocab_size: int, steps: int) -> dict:
    """The plain+optim loop with the package's nn.Module forward (makemore's init)."""
    torch.manual_seed(42)
    net = MLP(vocab_size, plain_loop.BLOCK_SIZE, plain_loop.N_EMBD, plain_loop.N_HIDDEN)
    Xtr, Ytr = data["train"]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[steps // 2], gamma=0.1)
    torch.manual_seed(42)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        ix = torch.randint(0, Xtr.shape[0], (plain_loop.BATCH_SIZE,))
        _, loss = net(Xtr[ix], Ytr[ix])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"us_per_step": seconds / steps * 1e6, "cpu_us_per_step": cpu / steps * 1e6,
            "losses": train_speed.split_losses(lambda X: net(X)[0], data)}


VARIANTS = {
    "plain+optim": None,
    "module+optim": None,
    "makemore": ORIGINAL_STEP,
    "makemore loss.backward()": make_training_step(plain_backward=True, raw_optimizer=False),
    "makemore raw optimizer": make_training_step(plain_backward=False, raw_optimizer=True),
    "makemore both": make_training_step(plain_backward=True, raw_optimizer=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(train_speed.machine_facts(torch.get_num_threads()))
    data, vocabulary = plain_loop.build_data()
    steps_per_epoch = -(-len(data["train"][1]) // plain_loop.BATCH_SIZE)
    results = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="makemore-breakdown-") as tmp:
        for r in range(args.repeats):
            for name, step in VARIANTS.items():
                if name == "plain+optim":
                    res = train_speed.run_plain(data, len(vocabulary), args.steps, optim=True, init="package")
                elif name == "module+optim":
                    res = run_module_optim(data, len(vocabulary), args.steps)
                else:
                    MakemoreModule.training_step = step
                    try:
                        res = train_speed.run_makemore(data, args.steps, steps_per_epoch, Path(tmp))
                    finally:
                        MakemoreModule.training_step = ORIGINAL_STEP
                results[name].append(res)
                print(f"  repeat {r + 1}/{args.repeats} {name:26s} {res['us_per_step']:8.1f} µs/step "
                      f"({res['cpu_us_per_step']:.1f} CPU)  train loss {res['losses']['train']:.6f}", flush=True)
    reference = results["makemore"][-1]["losses"]["train"]
    for name in VARIANTS:
        if name.startswith("makemore") and abs(results[name][-1]["losses"]["train"] - reference) > 1e-4:
            print(f"WARNING: {name} ends at train loss {results[name][-1]['losses']['train']:.6f}, "
                  f"makemore at {reference:.6f}")
    print(f"\n{args.steps} steps, {torch.get_num_threads()} thread(s), median of {args.repeats}\n")
    print("| variant | µs/step | CPU µs/step | CPU µs/step saved vs makemore | train loss |")
    print("|---|---:|---:|---:|---:|")
    base_cpu = statistics.median(r["cpu_us_per_step"] for r in results["makemore"])
    for name in VARIANTS:
        us = statistics.median(r["us_per_step"] for r in results[name])
        cpu = statistics.median(r["cpu_us_per_step"] for r in results[name])
        print(f"| {name} | {us:.1f} | {cpu:.1f} | {base_cpu - cpu:+.1f} | {results[name][-1]['losses']['train']:.4f} |")


if __name__ == "__main__":
    main()
