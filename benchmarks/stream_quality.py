"""What `makemore sample --stream` reads, scored: a text's val split read as one stream, against the window metric.

The window metric (val_loss, what every fit logs) predicts each character from the block_size characters before it.
A network that reads streams (makemore.models.base.reads_streams) samples with --stream from the whole passage so
far: a recurrent network's state carries all of it, and each block of a rotary Transformer attends to the block_size
positions before each position, so its deeper blocks see further back. This scores each character of the val split
as --stream reads it: the split as one stream after the start token, every character from all the ones before it
(a recurrent network: one forward over the whole split; a Transformer: its forward over consecutive chunks, each
with the n_layer x (block_size - 1) characters before it that the chunk's first position can reach, so every
character is scored as the whole stream would score it). The mean negative log-likelihood in nats per character.

    python -m benchmarks.stream_quality --ckpt_path CHECKPOINT [--chunk 1024]
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from makemore.checkpoint import read_checkpoint
from makemore.models import Transformer
from makemore.models.base import eval_mode, reads_streams
from makemore.module import load_checkpoint
from makemore.runs import datamodule_for, split_loss


def stream_nll(net: torch.nn.Module, ids: torch.Tensor, chunk: int) -> float:
    """The mean NLL of ids (N,) read as one stream after the start token, each from every id before it."""
    full = torch.cat([ids.new_zeros(1), ids]).long().unsqueeze(0)  # (1, N + 1): position i predicts id i + 1
    n = full.shape[1] - 1
    with eval_mode(net), torch.no_grad():
        if not isinstance(net, Transformer):  # a recurrent network: its state carries the whole split
            logits, _ = net(full[:, :-1])
            return F.cross_entropy(logits[0], full[0, 1:], reduction="mean").item()
        # how far back the first position of a chunk reaches: every block the block_size - 1 positions before
        reach, total = len(net.blocks) * (net.block_size - 1), 0.0
        for start in range(0, n, chunk):
            end = min(start + chunk, n)
            logits, _ = net(full[:, max(0, start - reach) : end])
            total += F.cross_entropy(logits[0, -(end - start) :], full[0, start + 1 : end + 1], reduction="sum").item()
    return total / n


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt_path", type=Path, required=True, help="a text checkpoint of a network that streams")
    parser.add_argument("--chunk", type=int, default=1024, help="characters scored per forward (a Transformer)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = read_checkpoint(str(args.ckpt_path))
    net = load_checkpoint(str(args.ckpt_path)).net
    if not reads_streams(net):
        sys.exit(f"{args.ckpt_path}: its {type(net).__name__} reads a window, not a stream (nothing to compare)")
    data = datamodule_for(checkpoint)
    window = split_loss(net, data, "val")
    stream = stream_nll(net, data.examples["val"].ids, args.chunk)
    print(f"{args.ckpt_path} (step {checkpoint['global_step']}), val split, nats per character:")
    print(f"  window (val_loss, block_size {data.hparams.block_size}): {window:.4f}")
    print(f"  stream (--stream's reading):      {stream:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
