"""Per SGD step, every ladder config (or any config): makemore's fit against a plain torch loop of the same network,
or against the same fit with one option more (--against).

For each config, in one process, the sides interleaved (A B A B ...), same threads, same batch size:

  plain     the network class and options of the config, its optimizer (torch.optim) and schedule, on the
            same training pool (whole words for data.train_on words), batches drawn with torch.randint:
            forward, zero_grad, backward, gradient clipping when the config clips, step, scheduler step;
            nothing else. On a text, windows are gathered from the split's token ids as nanoGPT's get_batch
            gathers them.
  makemore  `python -m makemore fit --config configs/MODEL.yaml` in-process as a user runs it (logger,
            progress bar to a log file, a validation and checkpoint at the end); µs/step of training from
            the StepTimer callback (first training batch to on_train_end, less the validation). The plain MLP
            trains with the hand-written step (the hand-written backward), as its config does by default.
            The validation's own cost is reported apart, per SGD step at the config's interval
            (data.val_every_n_steps): the plain loop does not validate at all.

`--against one` compares makemore's fit with its batches (up to data.max_steps_per_batch SGD steps each) with the
same fit at `--data.max_steps_per_batch 1`: one SGD step per Lightning batch, what a callback that acts on every
batch costs (makemore/lightning_features.py). `--against max_time` and `--against ema` compare it with the fit under
`--trainer.max_time`, EMAWeightAveraging or LearningRateMonitor, which keep the large batches (makemore checks the
clock, updates the average and reads the rates between SGD steps).

    nice python -m benchmarks.ladder_speed                    # every ladder config, 2,000 steps, 3 repeats
    python -m benchmarks.ladder_speed --models mlp wavenet --steps 300 --repeats 1
    python -m benchmarks.ladder_speed --configs configs/shakespeare/gpt_cpu.yaml --steps 300
    nice python -m benchmarks.ladder_speed --models mlp --steps 30000 --against max_time
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import CONFIGS, machine_facts, timed_fit
from makemore.checkpoint import bound_class, network_builder
from makemore.data import CharDataModule
from makemore.runs import LADDER, load_yaml

# The other side of --against: the options added to the config's fit, and the table's name for that side.
AGAINST = {
    "one": (("--data.max_steps_per_batch", "1"), "one step a batch"),
    "max_time": (("--trainer.max_time", "00:01:00:00"), "with max_time"),  # an hour: it never stops these fits
    "ema": (("--trainer.callbacks+=EMAWeightAveraging",), "with EMA"),
    "lr_monitor": (("--trainer.callbacks+=LearningRateMonitor",), "with LearningRateMonitor"),
}


def build(spec: dict, *args, **kwargs):
    """An object from a {class_path, init_args} entry of a config."""
    return bound_class({"class_path": spec["class_path"], "init_args": spec.get("init_args") or {}})(*args, **kwargs)


def run_plain(config: dict, steps: int) -> float:
    """µs per SGD step of the plain loop."""
    data = CharDataModule(**config.get("data", {}))
    data.setup("fit")
    block_size = data.hparams.block_size
    if data.format.passage:  # a stream of characters: nanoGPT's get_batch: block_size characters before a random one
        ids = data.examples["train"].ids
        back = torch.arange(-block_size, 0)

        def draw(batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
            ix = torch.randint(block_size, len(ids), (batch_size,))
            return ids[ix.unsqueeze(1) + back].long(), ids[ix].long()
    else:
        X, Y = data.train_pool().tensors()  # the pool makemore draws from (whole words for data.train_on words)

        def draw(batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
            ix = torch.randint(0, len(Y), (batch_size,))
            return X[ix], Y[ix]

    model = config["model"]
    clip = model.get("gradient_clip_val")
    torch.manual_seed(0)
    net = network_builder({"init_args": {}, **model["net"]})(len(data.vocabulary), data.hparams.block_size)
    optimizer = build(model["optimizer"], net.parameters(), lr=model["learning_rate"])
    scheduler = build(model["lr_scheduler"], optimizer) if model.get("lr_scheduler") else None
    batch_size = data.hparams.batch_size
    net.train()
    start = time.perf_counter()
    for _ in range(steps):
        _, loss = net(*draw(batch_size))
        optimizer.zero_grad()
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return (time.perf_counter() - start) / steps * 1e6


def run_makemore(config_path: Path, steps: int, workdir: Path, *options: str) -> tuple[float, float]:
    """µs per SGD step of training, and seconds of one validation (`options`: more CLI options)."""
    _, timer = timed_fit(config_path, steps, workdir, "--data.val_every_n_steps", str(steps), *options)
    if timer.validations != 1:
        raise RuntimeError(f"{config_path.name}: {timer.validations} validations, expected 1")
    return (timer.train_s - timer.val_s) / steps * 1e6, timer.val_s


def against_plain(paths: list[Path], names: list[str], args: argparse.Namespace, workdir: Path) -> None:
    rows = []
    for path, model in zip(paths, names):
        config = load_yaml(path)
        times = {"plain": [], "makemore": [], "validation": []}
        for repeat in range(args.repeats):
            times["plain"].append(run_plain(config, args.steps))
            training, validation = run_makemore(path, args.steps, workdir)
            times["makemore"].append(training)
            times["validation"].append(validation)
            print(
                f"  {model} repeat {repeat + 1}: plain {times['plain'][-1]:.0f} µs/step,"
                f" makemore {times['makemore'][-1]:.0f} µs/step",
                flush=True,
            )
        plain, makemore, validation = (statistics.median(times[side]) for side in times)
        data = config.get("data", {})
        every = data.get("val_every_n_steps") or args.steps
        rows.append((model, data.get("batch_size", 32), plain, makemore, validation / every * 1e6, every))
    print(
        f"\n| model | batch | plain loop µs/step (median of {args.repeats}) | makemore µs/step | × plain"
        " | + validation µs/step (every N steps) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for model, batch, plain, makemore, validation, every in rows:
        print(
            f"| {model} | {batch} | {plain:.0f} | {makemore:.0f} | {makemore / plain:.2f}"
            f" | {validation:.0f} (every {every:,}) |"
        )


def against_option(paths: list[Path], names: list[str], args: argparse.Namespace, workdir: Path) -> None:
    options, other = AGAINST[args.against]
    sides = {"many": (), other: options}
    rows = []
    for path, model in zip(paths, names):
        times = {side: [] for side in sides}
        for repeat in range(args.repeats):
            for side, extra in sides.items():
                times[side].append(run_makemore(path, args.steps, workdir, *extra)[0])
            print(f"  {model} repeat {repeat + 1}: " + ", ".join(f"{s} {t[-1]:.0f} µs/step" for s, t in times.items()))
        rows.append((model, *(statistics.median(times[side]) for side in sides)))
    print(f"\n| model | µs/step, many steps a batch (median of {args.repeats}) | {other} | × |")
    print("|---|---:|---:|---:|")
    for model, many, one in rows:
        print(f"| {model} | {many:.0f} | {one:.0f} | {one / many:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(LADDER), choices=list(LADDER))
    parser.add_argument("--configs", nargs="+", type=Path, default=[], help="config files instead of --models")
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument(
        "--against",
        choices=["plain", *AGAINST],
        default="plain",
        help="the other side: the plain loop (default), or makemore's fit with one step a batch, max_time, EMA or"
        " LearningRateMonitor",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_facts(args.threads))
    print(f"{args.steps} SGD steps per run, {args.repeats} repeat(s) interleaved, CPU\n")
    paths = args.configs or [CONFIGS / f"{model}.yaml" for model in args.models]
    names = [str(path) for path in args.configs] or args.models
    with tempfile.TemporaryDirectory(prefix="makemore-ladder-") as tmp:
        (against_plain if args.against == "plain" else against_option)(paths, names, args, Path(tmp))


if __name__ == "__main__":
    main()
