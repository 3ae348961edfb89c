"""Per SGD step, every ladder config (or any config): makemore's fit against a plain torch loop of the same network.

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

    nice python benchmarks/ladder_speed.py                    # every ladder config, 2,000 steps, 3 repeats
    python benchmarks/ladder_speed.py --models mlp wavenet --steps 300 --repeats 1
    python benchmarks/ladder_speed.py --configs configs/shakespeare/gpt_cpu.yaml --steps 300
"""

import argparse
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

from makemore.checkpoint import import_class, network_builder  # noqa: E402
from makemore.cli import run_cli as makemore_main  # noqa: E402
from makemore.data import CharDataModule  # noqa: E402
from makemore.runs import LADDER, load_yaml  # noqa: E402  the ladder's order


def build(spec: dict, *args, **kwargs):
    """An object from a {class_path, init_args} entry of a config."""
    return import_class(spec["class_path"])(*args, **kwargs, **(spec.get("init_args") or {}))


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
    root = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    args = ["fit", "--config", str(config_path), "--trainer.max_steps", str(steps), *options]
    args += ["--data.val_every_n_steps", str(steps), "--trainer.default_root_dir", str(root)]
    args += ["--trainer.accelerator", "cpu", "--trainer.callbacks+=step_timer.StepTimer"]
    args += ["--num_threads", str(torch.get_num_threads())]
    with output_to(root / "output.log"):
        cli = makemore_main(args)
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, StepTimer))
    if timer.steps != steps:
        raise RuntimeError(f"{config_path.name}: the makemore run took {timer.steps} steps, expected {steps}")
    if timer.validations != 1:
        raise RuntimeError(f"{config_path.name}: {timer.validations} validations, expected 1")
    return (timer.train_s - timer.val_s) / steps * 1e6, timer.val_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(LADDER), choices=list(LADDER))
    parser.add_argument("--configs", nargs="+", type=Path, default=[], help="config files instead of --models")
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side, interleaved (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_facts(args.threads))
    print(f"{args.steps} SGD steps per run, {args.repeats} repeat(s) interleaved, CPU\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="makemore-ladder-") as tmp:
        paths = args.configs or [ROOT / "configs" / f"{model}.yaml" for model in args.models]
        for path in paths:
            model = path.stem if not args.configs else str(path)
            config = load_yaml(path)
            times = {"plain": [], "makemore": [], "validation": []}
            for repeat in range(args.repeats):
                times["plain"].append(run_plain(config, args.steps))
                training, validation = run_makemore(path, args.steps, Path(tmp))
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


if __name__ == "__main__":
    main()
