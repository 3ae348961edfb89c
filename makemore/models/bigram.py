"""The bigram of lecture part 1: a table of next-character logits for the previous character."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class Bigram(nn.Module):
    """logits = table[previous character]: a (vocab_size, vocab_size) table of logits, learned by gradient descent.

    Starts at zero (every character equally likely, the loss ln(vocab_size)). `from_counts` builds the
    part-1 counting model in closed form, the anchor the learned table is compared with.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length of the data; the bigram reads only the last character.
    """

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(vocab_size, vocab_size))

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        logits = self.logits[idx[:, -1]]  # (b, vocab_size)
        return logits, None if targets is None else F.cross_entropy(logits, targets)

    @classmethod
    def from_counts(cls, idx: torch.Tensor, targets: torch.Tensor, vocab_size: int, smoothing: float = 1.0) -> "Bigram":
        """Lecture part 1's counting model: log((count(a -> b) + smoothing) / sum over b), from examples (X, Y)."""
        counts = torch.full((vocab_size, vocab_size), float(smoothing), dtype=torch.float64)
        counts.index_put_((idx[:, -1], targets), torch.ones(len(targets), dtype=torch.float64), accumulate=True)
        model = cls(vocab_size, idx.shape[1])
        with torch.no_grad():
            model.logits.copy_((counts / counts.sum(1, keepdim=True)).log())
        return model
