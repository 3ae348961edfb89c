"""Drawing words from any makemore network (no Lightning: `makemore sample` starts fast)."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from makemore.text import Vocabulary


@torch.no_grad()
def generate(
    net: nn.Module, block_size: int, num_samples: int, max_length: int, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Sample `num_samples` words in parallel, each until it draws `.` (index 0) or reaches max_length.

    The network sees the last `block_size` tokens (`.` before the word starts) and may return logits for
    the last position only, (b, vocab_size), or for every position, (b, t, vocab_size).
    Returns (num_samples, max_length) token ids; positions after a word's `.` are 0 too.
    """
    device = next(net.parameters()).device
    context = torch.zeros(num_samples, block_size, dtype=torch.long, device=device)
    out = torch.zeros(num_samples, max_length, dtype=torch.long, device=device)
    alive = torch.ones(num_samples, dtype=torch.bool, device=device)
    for t in range(max_length):
        logits, _ = net(context)
        if logits.dim() == 3:  # a sequence model: the prediction after the last position
            logits = logits[:, -1, :]
        probs = F.softmax(logits, dim=-1)  # (num_samples, vocab_size)
        ix = torch.multinomial(probs, 1, generator=generator).squeeze(1) * alive
        out[:, t] = ix
        alive &= ix != 0
        if not alive.any():
            break
        context = torch.cat([context[:, 1:], ix.unsqueeze(1)], dim=1)
    return out


def sample_words(
    net: nn.Module,
    vocabulary: Vocabulary,
    block_size: int,
    num_samples: int,
    max_length: int,
    generator: Optional[torch.Generator] = None,
) -> list[str]:
    """Draw words from the network in eval mode (its training mode is put back afterwards)."""
    was_training = net.training
    net.eval()
    try:
        ids = generate(net, block_size, num_samples, max_length, generator)
    finally:
        net.train(was_training)
    # generate() fills everything from a word's `.` on with 0, so the nonzero ids are the word
    return [vocabulary.decode(row[row != 0].tolist()) for row in ids.cpu()]
