"""How much does the Lightning package cost per SGD step, against the lecture's plain loop?

One invocation, same data (names.txt, seed-42 split, block size 3), same thread count, same number
of steps, batch 32, three sides run interleaved (A B C A B C ...):

  plain        the notebook loop: randint batch, C[X].view, tanh, cross_entropy, p.grad = None,
               backward, p.data += -lr * p.grad; lr 0.1, then 0.01 from step steps // 2
  plain+optim  the same loop with torch.optim.SGD (zero_grad/step) and MultiStepLR([steps // 2])
  makemore     makemore.cli.run_cli(["fit", "--config", "configs/mlp.yaml", ...]) as a user runs it:
               TensorBoard logger, progress bar (sent to a log file), checkpointing and validation
               at every epoch end (the config's data.val_every_n_steps, 10,000) all on.
               µs/step = (on_train_end - on_train_start) / global_step.
               It trains on the CPU like the plain loops (--accelerator; the config says auto).
               The config's hand-written step: the hand-written backward and the SGD update, no autograd.
  makemore autograd  the same with --model.hand_backward false: autograd and torch.optim.SGD.

Per side the table gives the median of the repeats, the fastest repeat ("best": other processes on
a shared machine only ever slow a run down) and process CPU time (all threads). The StepTimer
callback (benchmarks/common.py) is a callback like any other, called once per Lightning batch.
benchmarks/step_breakdown.py splits makemore's time per step into its parts.

It also times building the examples (names.txt and 1,000,000 generated name-like words) and prints
Markdown tables. `--full` instead runs the lecture's 200,000 steps as two whole processes,
`python -m makemore fit --config configs/mlp.yaml` and `python -m benchmarks.plain_loop`.

    nice python -m benchmarks.train_speed                 # 10,000 steps, 3 repeats
    nice python -m benchmarks.train_speed --steps 2000 --repeats 1
    nice python -m benchmarks.train_speed --full
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from benchmarks import plain_loop
from benchmarks.common import CONFIGS, ROOT, load_average, machine_facts, timed_fit
from makemore.api import scalars
from makemore.formats import default_path
from makemore.formats.words import build_examples, read_words, split_words, vocabulary_of_words
from makemore.models import MLP

CONFIG = CONFIGS / "mlp.yaml"

SIDES = ("plain", "plain+optim", "makemore", "makemore autograd")
# The loops draw different random mini-batches (randint per step vs makemore's seeded draws), so from the same
# weights they end at the same loss only within noise: about 0.001 apart after 10,000 steps here.
LOSS_TOLERANCE = 0.02


@torch.no_grad()
def split_losses(logits_fn, data) -> dict[str, float]:
    """Mean cross-entropy over the whole train and val splits, the same evaluation for every side."""
    return {split: F.cross_entropy(logits_fn(data[split][0]), data[split][1]).item() for split in ("train", "val")}


def package_init(vocab_size: int) -> list[torch.Tensor]:
    """The package's initial weights (nn.Embedding/nn.Linear init after seed_everything(42)) as C, W1, b1, W2, b2."""
    torch.manual_seed(42)
    net = MLP(vocab_size, plain_loop.BLOCK_SIZE, plain_loop.N_EMBD, plain_loop.N_HIDDEN)
    first, last = net.hidden[0], net.out  # weights stored (fan_in, fan_out), as the lecture's W1 and W2
    parameters = [net.embedding.weight, first.weight, first.bias, last.weight, last.bias]
    parameters = [p.detach().contiguous().clone() for p in parameters]
    for p in parameters:
        p.requires_grad = True
    return parameters


def run_plain(data, vocab_size: int, steps: int, optim: bool, init: str) -> dict:
    parameters = plain_loop.init_params(vocab_size) if init == "lecture" else package_init(vocab_size)
    start, cpu = time.perf_counter(), time.process_time()
    plain_loop.train(parameters, *data["train"], steps, optim=optim)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "us_per_step": seconds / steps * 1e6,
        "cpu_us_per_step": cpu / steps * 1e6,
        "call_s": seconds,
        "losses": split_losses(lambda X: plain_loop.logits_of(parameters, X), data),
    }


def run_makemore(
    data,
    steps: int,
    val_every_n_steps: Optional[int],
    workdir: Path,
    accelerator: str = "cpu",
    extra: Sequence[str] = (),
) -> dict:
    """makemore's fit through the CLI with configs/mlp.yaml; `extra` arguments come last."""
    start = time.perf_counter()
    cli, timer = timed_fit(
        CONFIG,
        steps,
        workdir,
        "--model.lr_scheduler.init_args.milestones",
        f"[{steps // 2}]",
        *(["--data.val_every_n_steps", str(val_every_n_steps)] if val_every_n_steps else []),
        "--trainer.accelerator",
        accelerator,
        *extra,
    )
    call_s = time.perf_counter() - start
    if not cli.trainer.progress_bar_callback or not cli.trainer.checkpoint_callback or not cli.trainer.logger:
        raise RuntimeError("the makemore run lacks its progress bar, checkpointing or logger")
    dm_train = cli.datamodule.examples["train"].tensors()
    if not (torch.equal(dm_train[0], data["train"][0]) and torch.equal(dm_train[1], data["train"][1])):
        raise RuntimeError("the makemore run trained on different examples than the plain loop")
    net = cli.model.net.eval()
    checkpoints = len(list(Path(cli.trainer.default_root_dir).rglob("*.ckpt")))
    return {
        "us_per_step": timer.us_per_step,
        "cpu_us_per_step": timer.cpu_us_per_step,
        "call_s": call_s,
        "losses": split_losses(lambda X: net(X)[0], data),
        "val_s": timer.val_s,
        "validations": timer.validations,
        "train_s": timer.train_s,
        "threads": timer.threads,
        "checkpoints": checkpoints,
    }


def generated_words(names: list[str], count: int, seed: int = 0) -> list[str]:
    """`count` words whose lengths and letters are drawn from the empirical distributions of `names`."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.bincount(torch.tensor([len(w) for w in names])).double()
    letters = vocabulary_of_words(names).itos[1:]
    counts = torch.zeros(len(letters), dtype=torch.double)
    for i, ch in enumerate(letters):
        counts[i] = sum(w.count(ch) for w in names)
    drawn = torch.multinomial(lengths, count, replacement=True, generator=g)
    chars = torch.multinomial(counts, int(drawn.sum()), replacement=True, generator=g)
    text = "".join(letters[i] for i in chars.tolist())
    ends = torch.cumsum(drawn, 0).tolist()
    return [text[e - n : e] for e, n in zip(ends, drawn.tolist())]


def time_build(path: Path) -> dict:
    """read_words, then build_examples of the seed-42 train/val/test split, as CharDataModule does."""
    t0 = time.perf_counter()
    words = read_words(path)
    t1 = time.perf_counter()
    vocabulary = vocabulary_of_words(words)
    splits = split_words(words, 0.8, 0.1, 42)
    t2 = time.perf_counter()
    examples = [build_examples(ws, vocabulary, 3) for ws in splits]
    t3 = time.perf_counter()
    return {
        "words": len(words),
        "examples": sum(len(Y) for _, Y in examples),
        "read_s": t1 - t0,
        "split_s": t2 - t1,
        "build_s": t3 - t2,
    }


def fmt_losses(losses: dict) -> tuple[str, str]:
    return f"{losses['train']:.4f}", f"{losses['val']:.4f}"


def benchmark(args) -> None:
    threads = torch.get_num_threads()
    print(machine_facts(threads))
    data, vocabulary = plain_loop.build_data()
    steps = args.steps
    val_every_n_steps = args.val_every_n_steps
    print(
        f"{steps} SGD steps of batch {plain_loop.BATCH_SIZE}, lr 0.1 -> 0.01 at step {steps // 2}; makemore: "
        f"data.val_every_n_steps={val_every_n_steps or 'as configs/mlp.yaml'} (validation + checkpoint each epoch end), "
        f"trainer.accelerator={args.accelerator}; "
        f"{args.repeats} repeat(s) interleaved\n"
    )
    results = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="makemore-bench-") as tmp:
        for r in range(args.repeats):
            for side in SIDES:
                if side.startswith("makemore"):
                    extra = ["--model.hand_backward", "false"] if side == "makemore autograd" else []
                    res = run_makemore(data, steps, val_every_n_steps, Path(tmp), args.accelerator, extra)
                else:
                    res = run_plain(data, len(vocabulary), steps, optim=side == "plain+optim", init=args.init)
                results[side].append(res)
                print(
                    f"  repeat {r + 1}/{args.repeats} {side:12s} {res['us_per_step']:8.1f} µs/step ({res['cpu_us_per_step']:.1f} CPU)  "
                    f"train {res['losses']['train']:.4f} val {res['losses']['val']:.4f}",
                    flush=True,
                )
        if torch.get_num_threads() != threads:
            raise RuntimeError(f"the thread count changed from {threads} to {torch.get_num_threads()}")
        mm = results["makemore"][-1]
        if mm["threads"] != threads:
            raise RuntimeError(f"makemore trained with {mm['threads']} threads, the plain loops with {threads}")

        print(
            f"\nafter the runs: {load_average()} (other processes on the machine skew wall times; "
            f"'best' is the fastest repeat)\n"
        )
        print(
            f"| side | µs/step (median of {args.repeats}) | × plain | all repeats µs/step | best µs/step | best × plain "
            f"| CPU µs/step (median) | CPU × plain | whole call s (median) | train loss | val loss |"
        )
        print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        base = statistics.median(r["us_per_step"] for r in results["plain"])
        cpu_base = statistics.median(r["cpu_us_per_step"] for r in results["plain"])
        best_base = min(r["us_per_step"] for r in results["plain"])
        for side in SIDES:
            us = statistics.median(r["us_per_step"] for r in results[side])
            cpu = statistics.median(r["cpu_us_per_step"] for r in results[side])
            best = min(r["us_per_step"] for r in results[side])
            call = statistics.median(r["call_s"] for r in results[side])
            tr, va = fmt_losses(results[side][-1]["losses"])
            every = ", ".join(f"{r['us_per_step']:.0f}" for r in results[side])
            print(
                f"| {side} | {us:.1f} | {us / base:.2f} | {every} | {best:.1f} | {best / best_base:.2f} "
                f"| {cpu:.1f} | {cpu / cpu_base:.2f} | {call:.2f} "
                f"| {tr} | {va} |"
            )
        val_us = statistics.median(r["val_s"] / steps * 1e6 for r in results["makemore"])
        print(
            f"\nmakemore: whole call = CLI parse + data + sanity check + training + end-of-fit; the training "
            f"part includes {mm['validations']} validation(s) ({val_us:.1f} µs/step of it, median) and "
            f"{mm['checkpoints']} checkpoint file(s). Losses: mean cross-entropy over the whole split after "
            f"training, last repeat. CPU time is the process's, all threads."
        )
        if args.init == "package":  # same initial weights, different random mini-batches: the same loss within noise
            gaps = {
                split: abs(results["makemore"][-1]["losses"][split] - results["plain+optim"][-1]["losses"][split])
                for split in ("train", "val")
            }
            verdict = "yes" if max(gaps.values()) <= LOSS_TOLERANCE else "NO"
            print(
                f"Same loss from the same initial weights (makemore vs plain+optim, |difference| <= {LOSS_TOLERANCE}): "
                f"{verdict} (train {gaps['train']:.4f}, val {gaps['val']:.4f})"
            )
        else:
            print(
                "The plain loops started from the lecture's randn weights, makemore from nn.Embedding/nn.Linear's "
                "init, so their losses differ (--init package compares them from the same weights)."
            )

        print("\n| data | words | examples | read_words s | shuffle+split s | build_examples train/val/test s |")
        print("|---|---:|---:|---:|---:|---:|")
        rows = [("names.txt", default_path())]
        generated = Path(tmp) / "generated.txt"
        names = read_words(default_path())
        generated.write_text("\n".join(generated_words(names, args.generated_words)) + "\n", encoding="utf-8")
        rows.append((f"{args.generated_words:,} generated words", generated))
        for label, path in rows:
            b = time_build(path)
            print(
                f"| {label} | {b['words']:,} | {b['examples']:,} | {b['read_s']:.3f} | {b['split_s']:.3f} "
                f"| {b['build_s']:.3f} |"
            )


def full(args) -> None:
    """The lecture's whole run, 200,000 steps, as two processes: the package's CLI and the plain loop."""
    print(machine_facts(args.threads or torch.get_num_threads()))
    env = dict(os.environ)
    extra = []
    if args.threads:
        extra = ["--threads", str(args.threads)]
    with tempfile.TemporaryDirectory(prefix="makemore-full-") as tmp:
        commands = {
            "makemore": [
                sys.executable,
                "-m",
                "makemore",
                "fit",
                "--config",
                str(CONFIG),
                "--trainer.default_root_dir",
                tmp,
                "--trainer.accelerator",
                args.accelerator,
                "--num_threads",
                str(args.threads or torch.get_num_threads()),
            ],
            "plain": [sys.executable, "-m", "benchmarks.plain_loop", "--steps", "200000", *extra],
        }
        times = {}
        for side, command in commands.items():
            print(f"running {side}: {' '.join(command)}", flush=True)
            log = Path(tmp) / f"{side}.log"
            start = time.perf_counter()
            with open(log, "wb") as out:
                done = subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            times[side] = time.perf_counter() - start
            if done.returncode:
                sys.exit(f"{side} failed (exit {done.returncode}):\n{log.read_text()[-3000:]}")
            if side == "plain":
                print("  " + log.read_text().strip().splitlines()[-1])
            else:  # the run's last validation, as TensorBoard shows it
                step, val_loss = scalars(next(Path(tmp, "lightning_logs").iterdir()), "val_loss")[-1]
                print(f"  last validation: step {step}, val_loss {val_loss:.4f}")
        print("\n| process (200,000 steps) | wall s | × plain |")
        print("|---|---:|---:|")
        for side in ("plain", "makemore"):
            print(f"| {side} | {times[side]:.1f} | {times[side] / times['plain']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="SGD steps per run (default 10000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, interleaved (default 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for every side (makemore's default is 1: more do not help this model)",
    )
    parser.add_argument(
        "--val-every-n-steps",
        type=int,
        default=None,
        help="makemore data.val_every_n_steps (default: configs/mlp.yaml's)",
    )
    parser.add_argument(
        "--accelerator",
        default="cpu",
        help="makemore's trainer.accelerator (default cpu, where the plain loops run; the config says auto)",
    )
    parser.add_argument(
        "--init",
        choices=("lecture", "package"),
        default="package",
        help="plain loops' initial weights: makemore's (default, so the losses compare) or the lecture's randn",
    )
    parser.add_argument("--generated-words", type=int, default=1_000_000, help="size of the generated word list")
    parser.add_argument(
        "--full", action="store_true", help="instead: the lecture's 200,000 steps, CLI process vs plain-loop process"
    )
    args = parser.parse_args()
    if args.steps < 2 or args.repeats < 1:
        parser.error("--steps must be at least 2 and --repeats at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    full(args) if args.full else benchmark(args)


if __name__ == "__main__":
    main()
