"""A small GPT (makemore.py's Transformer): causal self-attention blocks over the context."""

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from makemore.models.base import DropoutRate, PositiveInt, embed_from_word_start, sequence_loss, window_positions


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.ln_1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (b, nh, t, hs)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)  # (b, nh, t, hs)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """makemore.py's Transformer: token and position embeddings, n_layer causal blocks, a final LayerNorm, logits.

    Returns logits for every position, (b, t, vocab_size); with targets, the loss of every real prediction
    of the window (makemore.models.base.sequence_loss). Train it on whole words (data.train_on: words);
    evaluation scores the last position, as for every model.

    Args:
        vocab_size: number of tokens, `.` included.
        block_size: context length: positions with a learned embedding, the longest context it can take.
        n_layer: transformer blocks.
        n_head: attention heads per block (n_embd must divide by it).
        n_embd: width of the residual stream.
        dropout: dropout on the embeddings, attention and block outputs (0 disables it).
    """

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: PositiveInt = 4,
        n_head: PositiveInt = 4,
        n_embd: PositiveInt = 64,
        dropout: DropoutRate = 0.0,
    ) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"Transformer: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.block_size = block_size
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.position = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(
        self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        t = idx.shape[1]
        x, shift = embed_from_word_start(idx, self.embedding, self.position)  # (b, width, n_embd): width <= t
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        logits = window_positions(self.head(self.ln_f(x)), shift, t)  # (b, t, vocab_size)
        return logits, None if targets is None else sequence_loss(logits, idx, targets)
