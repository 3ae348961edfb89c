"""The embedding-MLP of Bengio et al. (2003), as in the makemore lecture: a plain nn.Module."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    """Embed each of the `block_size` context characters, concatenate, hidden layer(s), logits.

    With the defaults (one hidden layer, no normalisation, no dropout) this is exactly the lecture's
    model: C (vocab_size, n_embd), W1/b1 (block_size * n_embd, n_hidden), tanh, W2/b2 (n_hidden, vocab_size).

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length in characters.
        n_embd: embedding dimensions per character.
        n_hidden: width of each hidden layer.
        n_layers: number of tanh hidden layers.
        batch_norm: put a BatchNorm1d before each tanh.
        dropout: dropout probability after each tanh (0 disables it).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_embd: int,
        n_hidden: int,
        n_layers: int = 1,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.dropout = dropout
        self.embedding = nn.Embedding(vocab_size, n_embd)
        widths = [block_size * n_embd] + [n_hidden] * n_layers
        # BatchNorm has its own shift, so the linear layer before it needs no bias.
        self.hidden = nn.ModuleList(nn.Linear(a, b, bias=not batch_norm) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(n_hidden) for _ in range(n_layers)) if batch_norm else None
        self.out = nn.Linear(widths[-1], vocab_size)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (b, block_size) int64 -> logits (b, vocab_size), and the mean cross-entropy if targets are given."""
        # Written with torch.nn.functional: at batch 32 a module call costs about what its maths does.
        x = F.embedding(idx, self.embedding.weight).flatten(1)  # (b, block_size * n_embd)
        for i, linear in enumerate(self.hidden):
            x = F.linear(x, linear.weight, linear.bias)  # (b, n_hidden)
            if self.norms is not None:
                x = self.norms[i](x)
            x = torch.tanh(x)
            if self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
        logits = F.linear(x, self.out.weight, self.out.bias)  # (b, vocab_size)
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss

    @torch.no_grad()
    def generate(self, num_samples: int, max_length: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Sample `num_samples` words in parallel, each until it draws `.` (index 0) or reaches max_length.

        Returns (num_samples, max_length) token ids; positions after a word's `.` are 0 too.
        """
        device = self.embedding.weight.device
        context = torch.zeros(num_samples, self.block_size, dtype=torch.long, device=device)
        out = torch.zeros(num_samples, max_length, dtype=torch.long, device=device)
        alive = torch.ones(num_samples, dtype=torch.bool, device=device)
        for t in range(max_length):
            logits, _ = self(context)
            probs = F.softmax(logits, dim=-1)  # (num_samples, vocab_size)
            ix = torch.multinomial(probs, 1, generator=generator).squeeze(1) * alive
            out[:, t] = ix
            alive &= ix != 0
            if not alive.any():
                break
            context = torch.cat([context[:, 1:], ix.unsqueeze(1)], dim=1)
        return out
