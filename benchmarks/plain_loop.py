"""The lecture's plain training loop ("Building makemore Part 2: MLP"), for speed comparisons.

Used two ways:
  * imported by benchmarks/train_speed.py (sides "plain" and "plain+optim") and step_breakdown.py;
  * run as a process by `train_speed --full` and startup.py:  python -m benchmarks.plain_loop --steps 200000

The data comes from makemore.data (same file, same seed-42 80/10/10 split, same block size) so
the only difference from the package is the training machinery.
"""

import argparse
import sys
import time
from typing import Optional

import torch
import torch.nn.functional as F

from makemore.formats import default_path
from makemore.formats.words import build_examples, read_words, split_words, vocabulary_of_words

BLOCK_SIZE = 3
N_EMBD = 10
N_HIDDEN = 200
BATCH_SIZE = 32


def build_data(path: Optional[str] = None, block_size: int = BLOCK_SIZE, seed: int = 42):
    """{"train"|"val"|"test": (X, Y)} and the vocabulary, exactly as CharDataModule builds them."""
    words = read_words(path or default_path())
    vocabulary = vocabulary_of_words(words)
    splits = split_words(words, 0.8, 0.1, seed)
    data = {name: build_examples(ws, vocabulary, block_size) for name, ws in zip(("train", "val", "test"), splits)}
    return data, vocabulary


def init_params(vocab_size: int, block_size: int = BLOCK_SIZE) -> list[torch.Tensor]:
    """The lecture's parameters: C, W1, b1, W2, b2 drawn with randn from generator 2147483647."""
    g = torch.Generator().manual_seed(2147483647)
    C = torch.randn((vocab_size, N_EMBD), generator=g)
    W1 = torch.randn((block_size * N_EMBD, N_HIDDEN), generator=g)
    b1 = torch.randn(N_HIDDEN, generator=g)
    W2 = torch.randn((N_HIDDEN, vocab_size), generator=g)
    b2 = torch.randn(vocab_size, generator=g)
    parameters = [C, W1, b1, W2, b2]
    for p in parameters:
        p.requires_grad = True
    return parameters


def logits_of(parameters: list[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    C, W1, b1, W2, b2 = parameters
    emb = C[X]
    h = torch.tanh(emb.view(-1, W1.shape[0]) @ W1 + b1)
    return h @ W2 + b2


def train(
    parameters: list[torch.Tensor],
    Xtr: torch.Tensor,
    Ytr: torch.Tensor,
    steps: int,
    optim: bool = False,
    seed: int = 42,
    batch_size: int = BATCH_SIZE,
) -> float:
    """`steps` SGD steps, lr 0.1 then 0.01 from step steps // 2 on (the lecture's 100,000 of 200,000).

    optim=False: the notebook's `p.grad = None; loss.backward(); p.data += -lr * p.grad`.
    optim=True:  the same with torch.optim.SGD (zero_grad/step) and MultiStepLR([steps // 2], 0.1).
    Returns the last mini-batch loss.
    """
    torch.manual_seed(seed)  # torch.randint below draws from the global generator, as in the lecture
    C, W1, b1, W2, b2 = parameters
    n = Xtr.shape[0]
    loss = None
    if not optim:
        for i in range(steps):
            ix = torch.randint(0, n, (batch_size,))
            emb = C[Xtr[ix]]
            h = torch.tanh(emb.view(-1, W1.shape[0]) @ W1 + b1)
            logits = h @ W2 + b2
            loss = F.cross_entropy(logits, Ytr[ix])
            for p in parameters:
                p.grad = None
            loss.backward()
            lr = 0.1 if i < steps // 2 else 0.01
            for p in parameters:
                p.data += -lr * p.grad
    else:
        optimizer = torch.optim.SGD(parameters, lr=0.1)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[steps // 2], gamma=0.1)
        for _ in range(steps):
            ix = torch.randint(0, n, (batch_size,))
            emb = C[Xtr[ix]]
            h = torch.tanh(emb.view(-1, W1.shape[0]) @ W1 + b1)
            logits = h @ W2 + b2
            loss = F.cross_entropy(logits, Ytr[ix])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    return float(loss.item()) if loss is not None else float("nan")


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--optim", action="store_true", help="torch.optim.SGD + MultiStepLR instead of p.data +=")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data, vocabulary = build_data()
    parameters = init_params(len(vocabulary))
    t0 = time.perf_counter()
    train(parameters, *data["train"], args.steps, optim=args.optim)
    t1 = time.perf_counter()
    with torch.no_grad():
        losses = {
            split: F.cross_entropy(logits_of(parameters, data[split][0]), data[split][1]).item()
            for split in ("train", "val")
        }
    print(
        f"steps={args.steps} threads={torch.get_num_threads()} train_loop_s={t1 - t0:.2f} "
        f"us_per_step={(t1 - t0) / max(args.steps, 1) * 1e6:.1f} train_loss={losses['train']:.4f} "
        f"val_loss={losses['val']:.4f} total_s={time.perf_counter() - start:.2f}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
