"""A step of configs/speedrun/names_long.yaml's network (96 wide, 32 words of block 16, AdamW, one thread) eager,
under `torch.compile` and under bf16 autocast, in alternated rounds of one process: ms a step and the ratio to eager.

    python -m benchmarks.compile_bf16 --rounds 4 --steps 50
"""

import argparse
import statistics
import time
from typing import Callable

import torch

from makemore.models import Transformer

KINDS = ("eager", "compile", "bf16")
VOCAB, BLOCK, BATCH, WARMUP_STEPS = 27, 16, 32, 5


def make_step(kind: str) -> Callable[[], None]:
    """One SGD step of a fresh network (seed 0) on a fixed random batch, as `kind` runs it."""
    torch.manual_seed(0)
    net = Transformer(VOCAB, BLOCK, n_layer=4, n_head=4, n_embd=96, dropout=0.2, activation="relu2")
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.1)
    forward = torch.compile(net) if kind == "compile" else net
    x, y = torch.randint(0, VOCAB, (BATCH, BLOCK)), torch.randint(0, VOCAB, (BATCH,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind == "bf16"):
            _, loss = forward(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50, help="timed steps a round")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, times = {}, {kind: [] for kind in KINDS}
    for kind in KINDS:
        start = time.perf_counter()
        steps[kind] = make_step(kind)
        for _ in range(WARMUP_STEPS):  # compiling happens here
            steps[kind]()
        print(f"{kind}: warm-up {time.perf_counter() - start:.1f} s", flush=True)
    for _ in range(args.rounds):
        for kind in KINDS:
            start = time.perf_counter()
            for _ in range(args.steps):
                steps[kind]()
            times[kind].append((time.perf_counter() - start) / args.steps * 1000)
    eager = statistics.median(times["eager"])
    for kind in KINDS:
        rounds = ", ".join(f"{t:.1f}" for t in times[kind])
        median = statistics.median(times[kind])
        print(f"{kind}: {median:.1f} ms a step (rounds {rounds}), {median / eager:.2f}x eager")


if __name__ == "__main__":
    main()
