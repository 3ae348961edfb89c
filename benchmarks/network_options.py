"""Per SGD step, a config's network with other options: what an option costs in compute, each against the config.

The plain torch loop of benchmarks/ladder_speed.py (the config's network, optimizer and schedule on its training
pool: forward, backward, step; nothing else), the config first and then each option set, alternated in one process
(A B C A B C ...) so that a busy machine slows every side alike; per side the median of the repeats, and the median
of its ratios to the config's run of the same repeat.

    python -m benchmarks.network_options --config configs/transformer.yaml \\
        --options position=rope qk_norm=true activation=relu2 "zero_init_proj=true,zero_init_head=true"
    python -m benchmarks.network_options --config configs/shakespeare/gpt_cpu.yaml --options position=rope
"""

import argparse
import copy
import statistics
from pathlib import Path

import torch
import yaml

from benchmarks.common import machine_facts
from benchmarks.ladder_speed import run_plain
from makemore.runs import load_yaml


def with_options(config: dict, options: str) -> dict:
    """The config with `options` ("key=value,key=value": values in YAML) among its network's init_args."""
    changed = copy.deepcopy(config)
    init_args = changed["model"]["net"].setdefault("init_args", {})
    for option in filter(None, options.split(",")):
        key, _, value = option.partition("=")
        init_args[key.strip()] = yaml.safe_load(value)
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the config whose network is measured")
    parser.add_argument("--options", nargs="+", required=True, help='option sets, each "key=value,key=value"')
    parser.add_argument("--steps", type=int, default=300, help="SGD steps per run (default 300)")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each side, alternated (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_facts(args.threads))
    print(f"{args.config}: {args.steps} SGD steps per run, {args.repeats} repeat(s) alternated, CPU\n")
    config = load_yaml(args.config)
    sides = {"(the config)": config} | {options: with_options(config, options) for options in args.options}
    times: dict[str, list[float]] = {name: [] for name in sides}
    for repeat in range(args.repeats):
        for name, side in sides.items():
            times[name].append(run_plain(side, args.steps))
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{name} {t[-1]:.0f}" for name, t in times.items()), flush=True)
    base = times["(the config)"]
    print(f"\n| network options | µs/step (median of {args.repeats}) | × the config (median of the repeats' ratios) |")
    print("|---|---:|---:|")
    for name, measured in times.items():
        ratio = statistics.median(side / config for side, config in zip(measured, base))
        print(f"| {name} | {statistics.median(measured):.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
