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
        self.embedding = nn.Embedding(vocab_size, n_embd)
        layers: list[nn.Module] = []
        width = block_size * n_embd
        for _ in range(n_layers):
            layers.append(nn.Linear(width, n_hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(n_hidden))
            layers.append(nn.Tanh())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = n_hidden
        layers.append(nn.Linear(width, vocab_size))
        self.layers = nn.Sequential(*layers)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (b, block_size) int64 -> logits (b, vocab_size), and the mean cross-entropy if targets are given."""
        emb = self.embedding(idx)  # (b, block_size, n_embd)
        logits = self.layers(emb.flatten(1))  # (b, vocab_size)
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
